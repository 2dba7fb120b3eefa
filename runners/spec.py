"""Workload specification: one YAML file per workload, validated once here (pydantic).

Validation happens before anything runs: an unknown key, a missing pipeline class, a resolution or
frame count the model cannot take, an unknown lane/compile/cache option or a local weights path that
does not exist is refused with one line naming the file and the field (InputError, exit code 2).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from guardrail.errors import InputError

LANES = ("presubmit", "nightly", "extended", "release")
# Fresh processes per workload execution when neither the workload nor --repeats says otherwise.
DEFAULT_REPEATS = {"presubmit": 2, "nightly": 3, "extended": 3, "release": 5}
SCALES = ("tiny", "full")

# The pipelines this runner knows how to drive (checked without importing diffusers).
PIPELINES = {
    "WanPipeline": "wan2.2",
    "WanImageToVideoPipeline": "wan2.2",
    "HunyuanImagePipeline": "hunyuanimage-2.1",
    "QwenImageEditPipeline": "qwen-image-edit",
    "QwenImageEditPlusPipeline": "qwen-image-edit",
}
METRICS = (
    "denoise_step_latency",
    "e2e_latency",
    "text_encode_latency",
    "denoise_latency",
    "vae_decode_latency",
    "peak_memory",
    "reserved_memory",
    "load_time",
    "warmup_time",
    "compile_time",
    "throughput",
)
DEFAULT_METRICS = [m for m in METRICS if m != "compile_time"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Component(_Strict):
    """One pipeline component: a diffusers/transformers class and its architecture config.

    `kind: synthetic` components (tokenizers, processors) are built in code by runners.synthetic;
    `kind: value` passes `value` straight to the pipeline constructor (boundary_ratio, ...).
    """

    kind: Literal["diffusers", "transformers", "synthetic", "value"] = "diffusers"
    cls: str | None = Field(default=None, alias="class")
    config_class: str | None = None  # transformers: the *Config class the config dict builds
    config: dict[str, Any] = {}
    dtype: Literal["bfloat16", "float16", "float32"] | None = None  # else the workload's dtype
    value: Any = None
    source: str | None = None  # where the config was taken from (URL); required for full configs

    @model_validator(mode="after")
    def _need_class(self) -> Component:
        if self.kind != "value" and not self.cls:
            raise ValueError(f"a {self.kind} component needs 'class'")
        if self.kind == "transformers" and not self.config_class:
            raise ValueError("a transformers component needs 'config_class'")
        return self


class ComponentOverride(_Strict):
    """A component at tiny scale: the same class, a replacement config."""

    config: dict[str, Any]
    dtype: Literal["bfloat16", "float16", "float32"] | None = None


class Generation(_Strict):
    prompt: str = "A red fox walking through fresh snow at dawn, cinematic lighting"
    negative_prompt: str | None = "blurry, low quality"
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    num_frames: int | None = Field(default=None, gt=0)
    num_inference_steps: int = Field(gt=0)
    guidance_scale: float | None = None  # Wan: guidance_scale; Qwen: true_cfg_scale; Hunyuan: guider
    guidance_scale_2: float | None = None
    seed: int = 0
    # Edit / image-to-video pipelines take a condition image; it is synthetic (seeded noise) here.
    image_height: int | None = Field(default=None, gt=0)
    image_width: int | None = Field(default=None, gt=0)
    max_sequence_length: int | None = Field(default=None, gt=0)
    num_images: int = Field(default=1, ge=1)  # condition images (Qwen-Image-Edit-Plus takes several)


class Options(_Strict):
    compile: Literal["none", "inductor", "mindiesd"] = "none"
    compile_mode: str | None = None
    attention_backend: str | None = None  # diffusers' attention-backend API name, e.g. "flash", "_native_npu"
    cache: Literal["none", "cache_dit"] = "none"
    cache_config: dict[str, Any] = {}


class Scaled(_Strict):
    """What changes at one scale: the component configs and (optionally) generation parameters."""

    dtype: Literal["bfloat16", "float16", "float32"] | None = None
    components: dict[str, ComponentOverride] = {}
    generation: dict[str, Any] = {}
    warmup_generations: int | None = Field(default=None, ge=0)
    warmup_steps: int | None = Field(default=None, ge=0)
    options: Options | None = None  # e.g. a cache config that fits the tiny transformer's 2 blocks


class Model(_Strict):
    repo_id: str
    revision: str
    path: str | None = None  # local weights (absolute, or relative to $GUARDRAIL_MODEL_ROOT)


class Command(_Strict):
    """External-command engine: run a benchmark command, read its output through an adapter (guardrail.adapters)."""

    argv: list[str] = Field(min_length=1)
    output: str  # file the command writes, relative to its working directory
    adapter: str  # adapter name (guardrail.adapters)
    env: dict[str, str] = {}


class WorkloadSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    family: str
    description: str | None = None
    lanes: list[str] = Field(min_length=1)
    engine: Literal["diffusers", "command"] = "diffusers"
    pipeline: str | None = None
    model: Model | None = None
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    components: dict[str, Component] = {}
    generation: Generation | None = None
    tiny: Scaled = Scaled()
    options: Options = Options()
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    warmup_generations: int = Field(default=1, ge=0)
    warmup_steps: int = Field(default=1, ge=0)
    repeats: dict[str, int] = {}
    timeout_s: float = Field(default=1800, gt=0)
    command: Command | None = None

    @field_validator("lanes")
    @classmethod
    def _known_lanes(cls, v: list[str]) -> list[str]:
        for lane in v:
            if lane not in LANES:
                raise ValueError(f"unknown lane {lane!r}; known: {', '.join(LANES)}")
        return v

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        for m in v:
            if m not in METRICS:
                raise ValueError(f"unknown metric {m!r}; known: {', '.join(METRICS)}")
        return v

    @field_validator("repeats")
    @classmethod
    def _repeat_lanes(cls, v: dict[str, int]) -> dict[str, int]:
        for lane, n in v.items():
            if lane not in LANES:
                raise ValueError(f"unknown lane {lane!r}; known: {', '.join(LANES)}")
            if n < 1:
                raise ValueError(f"repeats for {lane!r} must be at least 1")
        return v

    @model_validator(mode="after")
    def _engine_fields(self) -> WorkloadSpec:
        if self.engine == "command":
            if self.command is None:
                raise _FieldError("command", "engine 'command' needs a 'command' section")
            from guardrail.adapters import FORMATS

            if self.command.adapter not in FORMATS:
                raise _FieldError(
                    "command.adapter", f"unknown adapter {self.command.adapter!r}; known: {', '.join(FORMATS)}"
                )
            return self
        for key in ("pipeline", "model", "generation"):
            if getattr(self, key) is None:
                raise _FieldError(key, "required field is missing")
        if self.pipeline not in PIPELINES:
            raise _FieldError("pipeline", f"unknown pipeline class {self.pipeline!r}; known: {', '.join(PIPELINES)}")
        if not self.components:
            raise _FieldError("components", "required field is missing")
        for name in self.tiny.components:
            if name not in self.components:
                raise _FieldError(f"tiny.components.{name}", f"no component {name!r} at full scale to shrink")
        for name, comp in self.components.items():
            if comp.kind in ("diffusers", "transformers") and not comp.source:
                raise _FieldError(f"components.{name}.source", "full architecture configs must cite their source")
        if self.model is not None and self.model.path is not None:
            p = resolve_model_path(self.model.path)
            if not p.exists():
                raise _FieldError("model.path", f"local weights path does not exist: {p}")
        return self

    # --- views at one scale -------------------------------------------------------------------
    def components_at(self, scale: str) -> dict[str, Component]:
        if scale == "full":
            return dict(self.components)
        out = dict(self.components)
        for name, tiny in self.tiny.components.items():
            out[name] = out[name].model_copy(update=tiny.model_dump(exclude_unset=True))
        return out

    def generation_at(self, scale: str) -> Generation:
        assert self.generation is not None
        if scale == "full" or not self.tiny.generation:
            return self.generation
        return Generation(**{**self.generation.model_dump(), **self.tiny.generation})

    def options_at(self, scale: str) -> Options:
        return self.tiny.options if scale == "tiny" and self.tiny.options is not None else self.options

    def dtype_at(self, scale: str) -> str:
        return (self.tiny.dtype or self.dtype) if scale == "tiny" else self.dtype

    def warmup_at(self, scale: str) -> tuple[int, int]:
        if scale == "tiny":
            g = self.tiny.warmup_generations
            s = self.tiny.warmup_steps
            return (self.warmup_generations if g is None else g, self.warmup_steps if s is None else s)
        return self.warmup_generations, self.warmup_steps

    def repeats_for(self, lane: str) -> int:
        return self.repeats.get(lane, DEFAULT_REPEATS.get(lane, 2))


class _FieldError(ValueError):
    """A model-level check that knows which field it is about."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def resolve_model_path(path: str) -> Path:
    p = Path(path)
    if not p.is_absolute() and os.environ.get("GUARDRAIL_MODEL_ROOT"):
        p = Path(os.environ["GUARDRAIL_MODEL_ROOT"]) / p
    return p


# --- geometry: what resolutions / frame counts a pipeline can take --------------------------------
def spatial_multiple(pipeline: str, comps: dict[str, Component]) -> int:
    """Height and width must be multiples of this (VAE downsampling x transformer patch / packing)."""
    vae = comps.get("vae")
    tr = comps.get("transformer") or comps.get("transformer_2")
    vcfg = vae.config if vae else {}
    tcfg = tr.config if tr else {}
    if pipeline.startswith("Wan"):
        patch = tcfg.get("patch_size", [1, 2, 2])
        return int(vcfg.get("scale_factor_spatial", 8)) * int(patch[1])
    if pipeline.startswith("QwenImage"):
        return 2 ** len(vcfg.get("temperal_downsample", [False, True, True])) * 2
    if pipeline == "HunyuanImagePipeline":
        # the pipeline itself checks against 2x the VAE's compression
        return int(vcfg.get("spatial_compression_ratio", 32)) * 2
    return 1


def temporal_multiple(pipeline: str, comps: dict[str, Component]) -> int | None:
    if not pipeline.startswith("Wan"):
        return None
    vae = comps.get("vae")
    return int((vae.config if vae else {}).get("scale_factor_temporal", 4))


def check_geometry(spec: WorkloadSpec, scale: str) -> list[tuple[str, str]]:
    """[(field, message)] for generation parameters the model cannot take at this scale."""
    if spec.engine != "diffusers":
        return []
    comps = spec.components_at(scale)
    gen = spec.generation_at(scale)
    prefix = "generation" if scale == "full" else "tiny.generation"
    errors = []
    m = spatial_multiple(spec.pipeline or "", comps)
    for key in ("height", "width"):
        v = getattr(gen, key)
        if v % m:
            errors.append((f"{prefix}.{key}", f"{v} is not a multiple of {m} (VAE x patch factor of the model)"))
    t = temporal_multiple(spec.pipeline or "", comps)
    if t is not None:
        if gen.num_frames is None:
            errors.append((f"{prefix}.num_frames", "a video pipeline needs num_frames"))
        elif (gen.num_frames - 1) % t:
            errors.append(
                (f"{prefix}.num_frames", f"{gen.num_frames} frames: num_frames - 1 must be a multiple of {t}")
            )
    return errors


# --- loading --------------------------------------------------------------------------------------
def _field_of(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "$"


def load_workload(path: str | Path) -> WorkloadSpec:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise InputError(f"cannot read workload ({exc.strerror})", file=str(p)) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML ({str(exc).splitlines()[0]})", file=str(p)) from None
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top level", file=str(p))
    if "tiny" in data and isinstance(data["tiny"], dict) and isinstance(data["tiny"].get("generation"), dict):
        # tiny.generation is a partial override: check its keys against the full model here
        for key in data["tiny"]["generation"]:
            if key not in Generation.model_fields:
                raise InputError("unknown key", file=str(p), field=f"tiny.generation.{key}")
    try:
        spec = WorkloadSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _FieldError):
            raise InputError(ctx_err.message, file=str(p), field=ctx_err.field) from None
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        msg = {"extra_forbidden": "unknown key", "missing": "required field is missing"}.get(err["type"], err["msg"])
        raise InputError(msg.removeprefix("Value error, "), file=str(p), field=_field_of(loc)) from None
    if spec.name != p.stem:
        raise InputError(f"name {spec.name!r} differs from the file name {p.stem!r}", file=str(p), field="name")
    for scale in SCALES:
        for field, msg in check_geometry(spec, scale):
            raise InputError(msg, file=str(p), field=field)
    return spec


def default_workloads_dir() -> Path:
    env = os.environ.get("GUARDRAIL_WORKLOADS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "workloads"


def load_all(directory: str | Path | None = None) -> dict[str, tuple[Path, WorkloadSpec]]:
    """Every workload file in the directory, all validated (the first bad one raises)."""
    d = Path(directory) if directory else default_workloads_dir()
    if not d.is_dir():
        raise InputError("workloads directory does not exist", file=str(d))
    out: dict[str, tuple[Path, WorkloadSpec]] = {}
    for f in sorted(d.glob("*.yaml")):
        spec = load_workload(f)
        out[spec.name] = (f, spec)
    return out


def select(
    lane: str, names: list[str] | None = None, directory: str | Path | None = None
) -> list[tuple[Path, WorkloadSpec]]:
    if lane not in LANES:
        raise InputError(f"unknown lane {lane!r}; known: {', '.join(LANES)}", field="--lane")
    allw = load_all(directory)
    if names:
        missing = [n for n in names if n not in allw]
        if missing:
            raise InputError(f"unknown workload {missing[0]!r}; known: {', '.join(allw)}", field="--workload")
        return [allw[n] for n in names]
    chosen = [v for v in allw.values() if lane in v[1].lanes]
    if not chosen:
        raise InputError(f"no workload is in lane {lane!r}", field="--lane")
    return chosen


# --- identity -------------------------------------------------------------------------------------
def effective_spec(spec: WorkloadSpec, scale: str) -> dict[str, Any]:
    """What actually runs at this scale: the series identity (digest) is a hash of this."""
    d = spec.model_dump(mode="json", by_alias=True, exclude={"tiny", "repeats", "lanes", "description"})
    if spec.engine == "diffusers":
        d["components"] = {
            k: v.model_dump(mode="json", by_alias=True, exclude={"source"})
            for k, v in spec.components_at(scale).items()
        }
        d["generation"] = spec.generation_at(scale).model_dump(mode="json")
        d["dtype"] = spec.dtype_at(scale)
        d["options"] = spec.options_at(scale).model_dump(mode="json")
        d["warmup_generations"], d["warmup_steps"] = spec.warmup_at(scale)
    d["scale"] = scale
    return d


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(obj: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(obj).encode()).hexdigest()
