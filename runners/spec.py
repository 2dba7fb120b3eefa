"""Workload specification: what one workload YAML file may say (pydantic), and what it runs at a scale.

The models refuse an unknown key, a missing pipeline class, an unknown lane/metric/compile/cache option
or a local weights path that does not exist; runners.workloads reads the files and adds the geometry
checks (runners.geometry).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guardrail.adapters import FORMATS
from guardrail.adapters.identity import digest
from guardrail.schema import Workload
from runners.measurements import DEFAULT_METRICS, METRICS
from runners.parallel import Parallel

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


class VllmOmniSeries(_Strict):
    """A series the case's record continues (the adapter's identity), one per sweep step."""

    name: str
    digest: str
    step: int = 0


class VllmOmni(_Strict):
    """Engine `vllm-omni-serve`: one benchmark config of a vLLM-Omni perf case (guardrail.vllm_omni_cases writes
    these), run against a `vllm serve MODEL --omni` server started for it (runners.engines.vllm_omni_serve)."""

    test_name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    serve_args: dict[str, Any] = {}
    benchmark_params: dict[str, Any]
    hardware_marks: dict[str, str] = {}  # device type -> hardware the case is pinned to ({"cuda": "H100"})
    num_cards: int = Field(default=1, ge=1)
    marks: list[str] = []
    baseline: dict[str, Any] = {}  # the case's own numbers; cold-start references live in baselines/reference/
    source: dict[str, str | None] = {}  # repo, path, commit of the case file
    series: list[VllmOmniSeries] = []
    # Commands: overridden by $GUARDRAIL_VLLM_OMNI_SERVER / $GUARDRAIL_VLLM_OMNI_CLIENT (shell words).
    server: list[str] = Field(default_factory=lambda: ["vllm", "serve"], min_length=1)
    client: list[str] = Field(
        default_factory=lambda: ["python", "benchmarks/diffusion/diffusion_benchmark_serving.py"], min_length=1
    )
    health_timeout_s: float = Field(default=1200, gt=0)  # run_diffusion_benchmark.py waits as long
    term_grace_s: float = Field(default=30, ge=0)


class WorkloadSpec(_Strict):
    # a workload file's name, or a parallel-matrix cell's BASE@TAG (runners.workloads.cell_workload)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*(@[a-z0-9_+]+)?$")
    family: str
    description: str | None = None
    lanes: list[str] = Field(min_length=1)
    engine: Literal["diffusers", "command", "vllm-omni-serve"] = "diffusers"
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
    parallel: Parallel | None = None  # degrees of a multi-device run (runners.parallel); absent: one device
    command: Command | None = None
    vllm_omni: VllmOmni | None = None

    @field_validator("lanes")
    @classmethod
    def _known_lanes(cls, v: list[str]) -> list[str]:
        _known("lane", v, LANES)
        return v

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        _known("metric", v, METRICS)
        return v

    @field_validator("repeats")
    @classmethod
    def _repeat_lanes(cls, v: dict[str, int]) -> dict[str, int]:
        _known("lane", v, LANES)
        for lane, n in v.items():
            if n < 1:
                raise ValueError(f"repeats for {lane!r} must be at least 1")
        return v

    @model_validator(mode="after")
    def _engine_fields(self) -> WorkloadSpec:
        if self.engine == "command":
            if self.command is None:
                raise FieldError("command", "engine 'command' needs a 'command' section")
            if self.command.adapter not in FORMATS:
                raise FieldError(
                    "command.adapter", f"unknown adapter {self.command.adapter!r}; known: {', '.join(FORMATS)}"
                )
            return self
        if self.engine == "vllm-omni-serve":
            if self.vllm_omni is None:
                raise FieldError("vllm_omni", "engine 'vllm-omni-serve' needs a 'vllm_omni' section")
            return self
        for key in ("pipeline", "model", "generation"):
            if getattr(self, key) is None:
                raise FieldError(key, "required field is missing")
        if self.pipeline not in PIPELINES:
            raise FieldError("pipeline", f"unknown pipeline class {self.pipeline!r}; known: {', '.join(PIPELINES)}")
        if not self.components:
            raise FieldError("components", "required field is missing")
        for name in self.tiny.components:
            if name not in self.components:
                raise FieldError(f"tiny.components.{name}", f"no component {name!r} at full scale to shrink")
        for name, comp in self.components.items():
            if comp.kind in ("diffusers", "transformers") and not comp.source:
                raise FieldError(f"components.{name}.source", "full architecture configs must cite their source")
        if self.model is not None and self.model.path is not None:
            p = resolve_model_path(self.model.path)
            if not p.exists():
                raise FieldError("model.path", f"local weights path does not exist: {p}")
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


def _known(what: str, names: Iterable[str], known: Sequence[str]) -> None:
    for name in names:
        if name not in known:
            raise ValueError(f"unknown {what} {name!r}; known: {', '.join(known)}")


class FieldError(ValueError):
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


# --- identity -------------------------------------------------------------------------------------
def effective_spec(spec: WorkloadSpec, scale: str) -> dict[str, Any]:
    """What actually runs at this scale: the series identity (digest) is a hash of this."""
    d = spec.model_dump(mode="json", by_alias=True, exclude={"tiny", "repeats", "lanes", "description"})
    if spec.parallel is None:  # absent, as before the field existed: single-device digests stay as they were
        d.pop("parallel", None)
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


def workload_of(spec: WorkloadSpec, scale: str) -> Workload:
    """The result's workload: the spec as it runs at this scale, identified by its digest."""
    eff = effective_spec(spec, scale)
    return Workload(name=spec.name, family=spec.family, digest=digest(eff), spec=eff)
