"""Parallel workloads: a workload's `parallel:` mapping, its checks before launch, and applying it to a built
pipeline through the libraries that implement each strategy.

Vocabulary (shared with `guardrail matrix`): integer degrees `ulysses`, `ring`, `cfg`, `tp`, `vae_patch` (1 each
by default) and `hsdp` (false); the world size is the product of the transformer's degrees (ulysses, ring, cfg,
tp), or the VAE's patches where those need more ranks: VAE patches and hsdp spread over the same ranks, as in
vLLM-Omni (ulysses2+cfg2+vae_patch4 runs on 4 devices).

Who implements what (read from the sources of diffusers 0.42.1 and cache-dit 1.5.3, 2026-12-02):

- ulysses / ring, Wan2.2 and Qwen-Image: diffusers context parallelism, `ContextParallelConfig(ulysses_degree=,
  ring_degree=)` through `ModelMixin.enable_parallelism` and the model's `_cp_plan`.
- ulysses / ring / tp, HunyuanImage-2.1, and tp for Wan2.2: cache-dit's
  `ParallelismConfig(ulysses_size=, ring_size=, tp_size=)` (its planners `HunyuanImage`, `Wan`) through
  `cache_dit.enable_cache(pipe, parallelism_config=...)`. Its Wan tp asserts a non-CPU device (refused on cpu).
- tp, Qwen-Image: cache-dit 1.5.3 has a planner, but it and diffusers 0.42.1 disagree on `attn.heads` under tp
  (`_QWEN_TP`) -> refused as unsupported on every device.
- cfg (conditional and unconditional branch on separate ranks): neither library implements it for any of the
  three families -> refused.
- vae_patch, Wan2.2 and Qwen-Image: cache-dit's data-parallel tiled decode (`cache_dit.distributed.autoencoders.
  parallelize_autoencoder`, planners for AutoencoderKLWan and AutoencoderKLQwenImage): the VAE's tiles are
  decoded round-robin over every rank of the job and blended on rank 0. So vae_patch must equal the job's world
  size. The single-device reference decodes with the same tiles (tiling changes the picture; parallelism must
  not). HunyuanImage's VAE has no planner -> refused.
- hsdp (weight sharding over the job's ranks): neither diffusers nor cache-dit wires it into these pipelines;
  torch's own FSDP2 (`torch.distributed.fsdp.fully_shard`, per transformer block and then the whole model, over
  one mesh of all the job's ranks) does, and composes with diffusers' context parallelism (the all-gather of a
  block's weights runs before its forward, the Ulysses all-to-alls inside it). With cache-dit's parallelism
  (tp, and everything on HunyuanImage) it is refused: cache-dit shards with DTensor on its own mesh, and the two
  are not combined.

CPU accommodation (the only one, in `cpu_accelerator`): diffusers' `_resolve_parallel_config` computes the rank's
device as `rank % torch.accelerator.device_count()`, which is 0 on a CPU-only host (ZeroDivisionError), and
cache-dit's meshes are built on `torch.accelerator.current_accelerator().type` (None there); while
`enable_parallelism` / `enable_cache(parallelism_config=)` / `parallelize_autoencoder` run on CPU the count reads 1
and the accelerator `cpu`, so every rank's device is `cpu`. Nothing else is changed.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEGREES = ("ulysses", "ring", "cfg", "tp", "vae_patch")
STRATEGIES = (*DEGREES, "hsdp")
MULTIPLIED = ("ulysses", "ring", "cfg", "tp")  # the transformer's degrees: VAE patches and hsdp reuse their ranks
BACKENDS = {"cuda": "nccl", "npu": "hccl", "cpu": "gloo"}
# diffusers 0.42.1 backends whose attention returns the log-sum-exp that ring attention merges partial results with
# (native and _native_npu raise on return_lse=True); all are CUDA kernels, so ring has no CPU or Ascend backend here
RING_BACKENDS = ("flash", "flash_hub", "_flash_3_hub", "_native_cudnn", "_native_flash", "sage", "sage_hub")


class Parallel(BaseModel):
    """A workload's `parallel:` mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ulysses: int = Field(default=1, ge=1)
    ring: int = Field(default=1, ge=1)
    cfg: int = Field(default=1, ge=1)
    tp: int = Field(default=1, ge=1)
    vae_patch: int = Field(default=1, ge=1)
    hsdp: bool = False

    @property
    def world(self) -> int:
        return max(math.prod(getattr(self, d) for d in MULTIPLIED), self.vae_patch)

    def asked(self) -> list[str]:
        """The strategies this mapping turns on."""
        return [d for d in DEGREES if getattr(self, d) > 1] + (["hsdp"] if self.hsdp else [])


@dataclass(frozen=True)
class Support:
    library: str | None = None  # "diffusers" or "cache-dit"
    api: str | None = None
    unsupported: str | None = None  # why no library does it for this family


_VAE_PATCH = Support(
    "cache-dit", "cache_dit.distributed.autoencoders.parallelize_autoencoder (data-parallel tiled decode)"
)


_HSDP_WITH_CACHE_DIT = (
    "hsdp: torch FSDP2 with cache-dit's parallelism (tp, and every HunyuanImage strategy) is not combined: "
    "cache-dit shards with DTensor on a mesh of its own"
)


# Measured on CPU 2026-12-03 (gloo, tiny): the two libraries disagree on what attn.heads means under tp, on any device
_QWEN_TP = (
    "tp: cache-dit 1.5.3's QwenImage planner divides attn.heads by tp, but diffusers 0.42.1's processor derives "
    "head_dim = inner_dim // attn.heads from the unsharded count (transformer_qwenimage.py), so head_dim doubles "
    "and norm_q fails on the shape"
)


def _support(family: str) -> dict[str, Support]:
    name = {"wan": "WanPipeline", "qwen-image": "QwenImageEdit*Pipeline", "hunyuanimage": "HunyuanImagePipeline"}
    cfg = Support(
        unsupported=f"cfg: neither diffusers 0.42.1 nor cache-dit 1.5 implements CFG-parallel for {name[family]}"
    )
    hsdp = Support("torch", "torch.distributed.fsdp.fully_shard (FSDP2) per transformer block, then the model")
    cp = Support(
        "diffusers", "ModelMixin.enable_parallelism(config=ContextParallelConfig(ulysses_degree, ring_degree))"
    )
    cd = Support("cache-dit", "cache_dit.enable_cache(pipe, parallelism_config=ParallelismConfig(...))")
    if family == "hunyuanimage":
        vae = Support(unsupported="vae_patch: cache-dit 1.5 has no VAE parallel planner for AutoencoderKLHunyuanImage")
        hsdp = Support(unsupported=_HSDP_WITH_CACHE_DIT)
        return {"ulysses": cd, "ring": cd, "tp": cd, "cfg": cfg, "vae_patch": vae, "hsdp": hsdp}
    tp = cd
    if family == "qwen-image":
        tp = Support(unsupported=_QWEN_TP)
    return {"ulysses": cp, "ring": cp, "tp": tp, "cfg": cfg, "vae_patch": _VAE_PATCH, "hsdp": hsdp}


def family_of(pipeline: str) -> str:
    if pipeline.startswith("Wan"):
        return "wan"
    if pipeline.startswith("QwenImage"):
        return "qwen-image"
    if pipeline.startswith("HunyuanImage"):
        return "hunyuanimage"
    raise ValueError(f"no parallel support table for pipeline {pipeline!r}")


SUPPORT: dict[str, dict[str, Support]] = {f: _support(f) for f in ("wan", "qwen-image", "hunyuanimage")}


class ParallelInputError(ValueError):
    """A parallel mapping that cannot run: `field` is the workload field (e.g. `parallel.cfg`)."""

    def __init__(self, field: str, message: str, *, unsupported: bool = False):
        super().__init__(message)
        self.field = field
        self.message = message
        self.unsupported = unsupported  # no library implements it (the matrix shows it as `unsupported`)


# measured 2026-12-04 (bench/cache_dit_relay.py): cache-dit 1.5.3's tiled encode/decode hands rank 0's result down
# a chain, and each middle rank queues its receive from r-1 and its send to r+1 in one batch, so the send reads the
# buffer before the receive fills it. With 2 ranks there is no middle rank; from 3 on, ranks 2.. get unfilled
# tensors (Qwen-Image-Edit's condition latents under ulysses4+vae_patch4: the picture changed from run to run)
VAE_RELAY_RACE = (
    "vae_patch: cache-dit 1.5.3's tiled VAE relays rank 0's result rank to rank, sending from each middle rank "
    "before its receive has filled the buffer: ranks 2 and above get an unfilled tensor, so vae_patch > 2 is "
    "unsupported (bench/cache_dit_relay.py)"
)


# measured 2026-12-04 (wan2.2-i2v ...+hsdp+compile_inductor on gloo): infra_error at apply
HSDP_WITH_COMPILE = (
    "hsdp: regional compile (diffusers 0.42.1's compile_repeated_blocks) finds the blocks by class name, and torch "
    "FSDP2's fully_shard renames each block's class (FSDPWanTransformerBlock): 'classes are not found in the model'"
)


def unsupported_reason(pipeline: str, par: Parallel, compile: str | None = "none") -> str | None:
    """Why no library runs this combination for the pipeline (None: every asked strategy has one); `compile` is
    the workload's compile option."""
    table = SUPPORT[family_of(pipeline)]
    for s in par.asked():
        if table[s].unsupported:
            return table[s].unsupported
    if par.hsdp and plan(pipeline, par) == "cache-dit":
        return _HSDP_WITH_CACHE_DIT
    transformer_ranks = math.prod(getattr(par, d) for d in MULTIPLIED)
    if 1 < transformer_ranks < par.vae_patch:
        return (
            f"vae_patch: {par.vae_patch} VAE ranks around a transformer parallelised over {transformer_ranks}: the "
            "libraries' transformer meshes span the whole job (measured: diffusers' 2-rank mesh in a 4-rank job "
            "fails on the ranks outside it)"
        )
    if par.vae_patch > 1 and par.vae_patch != par.world:
        return (
            f"vae_patch: cache-dit 1.5 decodes the VAE's tiles over every rank of the job: vae_patch "
            f"{par.vae_patch} must equal the world size {par.world}"
        )
    if par.vae_patch > 2:
        return VAE_RELAY_RACE
    if par.hsdp and compile not in (None, "none"):
        return HSDP_WITH_COMPILE
    return None


def plan(pipeline: str, par: Parallel) -> str | None:
    """Which library parallelises the transformer: 'diffusers' (context parallel only), 'cache-dit', or None when
    no transformer degree is above 1 (vae_patch or hsdp alone: every rank runs the whole denoising loop); hsdp
    (torch FSDP2) and vae_patch (cache-dit's VAE planner) are applied on top, by `apply`."""
    table = SUPPORT[family_of(pipeline)]
    libs = {table[s].library for s in par.asked() if s not in ("hsdp", "vae_patch")}
    if not libs:
        return None
    return "cache-dit" if "cache-dit" in libs else "diffusers"


# `--oversubscribe` (CPU only): ranks per core a job may start. 4 lets a 2-core machine run the matrices' largest
# cells (8 ranks); the ranks then share cores, so such a run validates the picture, not the speed-up.
OVERSUBSCRIBE_PER_CORE = 4


def device_slots(device_type: str, *, oversubscribe: bool = False) -> int:
    """Devices one job may use: accelerators on npu/cuda; on CPU each rank is a process, so the cores (times
    OVERSUBSCRIBE_PER_CORE with `oversubscribe`)."""
    if device_type == "cpu":
        return (os.cpu_count() or 1) * (OVERSUBSCRIBE_PER_CORE if oversubscribe else 1)
    from runners.device import Device

    return Device(device_type).count()


def check(
    par: Parallel,
    *,
    pipeline: str,
    transformer_config: dict[str, Any],
    vae_config: dict[str, Any],
    generation: Any,
    device_type: str,
    devices: int,
    attention_backend: str | None = None,
    cache: str = "none",
    compile: str = "none",
) -> None:
    """Everything that can be known before launch; raises ParallelInputError naming the field."""
    reason = unsupported_reason(pipeline, par, compile)
    if reason is not None:
        field = reason.split(":", 1)[0]
        raise ParallelInputError(f"parallel.{field}", f"unsupported: {reason.split(': ', 1)[1]}", unsupported=True)
    if par.world > devices:
        hint = " (on cpu, --oversubscribe lets ranks share cores: the picture is validated, not the speed-up)"
        raise ParallelInputError(
            "parallel",
            f"world size {par.world} (the product of ulysses, ring, cfg and tp, or vae_patch) exceeds the "
            f"{devices} device(s) available on {device_type}" + (hint if device_type == "cpu" else ""),
        )
    lib = plan(pipeline, par)
    if lib == "cache-dit" and device_type == "cpu" and par.tp > 1 and family_of(pipeline) == "wan":
        raise ParallelInputError(
            "parallel.tp",
            "cache-dit 1.5.3's tensor-parallel RMSNorm for Wan asserts that its input is not on cpu "
            "(cache_dit/distributed/transformers/wan.py); Wan tp runs on cuda/npu",
        )
    if lib == "cache-dit" and device_type == "cpu" and par.ring > 1:
        raise ParallelInputError(
            "parallel.ring",
            "cache-dit 1.5.3's ring attention on cpu runs torch's flash attention with the log-sum-exp, which takes "
            "no attn_mask, and HunyuanImage passes one (ValueError, measured 2026-12-03); ring runs on cuda/npu",
        )
    if lib == "diffusers" and par.ring > 1:
        if device_type == "cpu":
            raise ParallelInputError(
                "parallel.ring",
                "diffusers' ring attention needs an attention backend that returns the log-sum-exp "
                f"({', '.join(RING_BACKENDS)}); none runs on cpu (native raises on return_lse=True)",
            )
        if attention_backend not in RING_BACKENDS:
            raise ParallelInputError(
                "parallel.ring",
                f"diffusers' ring attention needs options.attention_backend in {', '.join(RING_BACKENDS)} "
                f"(the log-sum-exp); this workload's is {attention_backend or 'the default (native)'}",
            )
    heads = transformer_config.get("num_attention_heads")
    if isinstance(heads, int):
        for name in ("ulysses", "tp"):
            d = getattr(par, name)
            if d > 1 and heads % d:
                raise ParallelInputError(
                    f"parallel.{name}", f"{name}={d} must divide the transformer's num_attention_heads ({heads})"
                )
        if lib == "cache-dit" and par.ulysses > 1 and par.tp > 1 and heads % par.tp == 0:
            # cache-dit's Ulysses splits the heads each tp rank holds, padding them to a multiple of ulysses only
            # while the padding is below the padded heads per rank (_maybe_pad_qkv_head asserts it)
            local = heads // par.tp
            pad = -local % par.ulysses
            if pad and pad >= (local + pad) // par.ulysses:
                raise ParallelInputError(
                    "parallel.ulysses",
                    f"ulysses={par.ulysses} splits the {local} head(s) each tp={par.tp} rank holds; cache-dit pads "
                    f"them only while the padding ({pad}) is below the padded heads per rank "
                    f"({(local + pad) // par.ulysses})",
                )
    cp = par.ulysses * par.ring
    if cp > 1:
        seq = image_tokens(pipeline, transformer_config, vae_config, generation)
        frames = f"x{generation.num_frames}" if generation.num_frames else ""
        if seq is not None and seq % cp:
            raise ParallelInputError(
                "parallel",
                f"ulysses x ring = {cp} must divide the image sequence length ({seq} tokens at "
                f"{generation.width}x{generation.height}{frames})",
            )


def image_tokens(pipeline: str, tcfg: dict[str, Any], vcfg: dict[str, Any], gen: Any) -> int | None:
    """Tokens of the generated picture in the transformer's sequence (what context parallelism splits)."""
    patch = tcfg.get("patch_size", 2)
    if pipeline.startswith("Wan"):
        spatial = int(vcfg.get("scale_factor_spatial", 8))
        temporal = int(vcfg.get("scale_factor_temporal", 4))
        pt, ph, pw = patch if isinstance(patch, list) else (1, patch, patch)
        frames = ((gen.num_frames or 1) - 1) // temporal + 1
        return (frames // pt) * (gen.height // spatial // ph) * (gen.width // spatial // pw)
    if pipeline.startswith("QwenImage"):
        return (gen.height // 8 // patch) * (gen.width // 8 // patch)
    return None


def transformers_of(pipe: Any) -> list[Any]:
    """The pipeline's denoisers (Wan2.2 A14B has two experts); as runners.options has it, which imports runners.spec,
    which imports this module."""
    return [t for n in ("transformer", "transformer_2") if (t := getattr(pipe, n, None)) is not None]


# --- applying it, inside a rank of a torch.distributed job ------------------------------------------------------
_ACCOMMODATION = "torch.accelerator device_count() read as 1 and current_accelerator() as cpu in the library call"


@contextlib.contextmanager
def cpu_accelerator() -> Iterator[None]:
    """The CPU accommodation (module doc): on a CPU-only host torch.accelerator.device_count() reads 1 instead of 0
    and current_accelerator() the cpu device instead of None, for the duration of the library call only (with an
    accelerator present, nothing changes)."""
    import torch

    if torch.accelerator.device_count() > 0:
        yield
        return
    count, current = torch.accelerator.device_count, torch.accelerator.current_accelerator
    torch.accelerator.device_count = lambda: 1
    torch.accelerator.current_accelerator = lambda *a, **k: torch.device("cpu")
    try:
        yield
    finally:
        torch.accelerator.device_count, torch.accelerator.current_accelerator = count, current


def tile_vae(pipe: Any, scale: str, generation: Any) -> dict[str, Any]:
    """The VAE decodes in tiles (what vae_patch spreads over the ranks; the single-device reference tiles the same
    way). Full scale: the VAE's own tile sizes. Tiny scale: tiles of half the picture with a quarter's overlap,
    so that there are tiles to spread (the defaults are larger than a tiny picture)."""
    vae = pipe.vae
    if scale == "tiny":
        vae.tile_sample_min_height, vae.tile_sample_min_width = generation.height // 2, generation.width // 2
        vae.tile_sample_stride_height = generation.height * 3 // 8
        vae.tile_sample_stride_width = generation.width * 3 // 8
    vae.enable_tiling()
    return {
        "tile": [vae.tile_sample_min_height, vae.tile_sample_min_width],
        "stride": [vae.tile_sample_stride_height, vae.tile_sample_stride_width],
    }


# cache-dit takes its cache and its parallelism in one enable_cache call: with both asked, `apply` leaves the
# ParallelismConfig here and runners.options.apply_cache passes it with the cache (after the engine's no-cache
# reference generation, which so runs dense and whole on every rank)
DEFERRED_PARALLELISM = "_guardrail_cache_dit_parallelism"


def apply(pipe: Any, par: Parallel, pipeline: str, device_type: str, cache: str = "none") -> dict[str, Any]:
    """Apply the mapping to the built pipeline (the process group is up); returns what was applied."""
    import torch.distributed as dist

    lib = plan(pipeline, par)  # None: no transformer strategy (the 1-rank job, or vae_patch/hsdp alone)
    applied: dict[str, Any] = {
        **par.model_dump(),
        "world": par.world,
        "backend": dist.get_backend(),
        "library": lib,
    }
    if lib is None:
        pass
    elif lib == "diffusers":
        import diffusers
        from diffusers import ContextParallelConfig

        names = []
        for t in transformers_of(pipe):
            # one config per model: enable_parallelism records it (and its mesh) on the model
            config = ContextParallelConfig(ulysses_degree=par.ulysses, ring_degree=par.ring)
            with cpu_accelerator():
                t.enable_parallelism(config=config)
            names.append(type(t).__name__)
        applied.update(
            library_version=diffusers.__version__,
            api="ContextParallelConfig + ModelMixin.enable_parallelism",
            models=names,
            cpu_accommodation=_ACCOMMODATION if device_type == "cpu" else None,
        )
    else:
        import cache_dit
        from cache_dit import ParallelismConfig

        config = ParallelismConfig(
            ulysses_size=par.ulysses if par.ulysses > 1 else None,
            ring_size=par.ring if par.ring > 1 else None,
            tp_size=par.tp if par.tp > 1 else None,
        )
        if cache == "cache_dit":
            setattr(pipe, DEFERRED_PARALLELISM, config)
        else:
            with cpu_accelerator():
                cache_dit.enable_cache(pipe, parallelism_config=config)
        applied.update(
            library_version=getattr(cache_dit, "__version__", None),
            api="cache_dit.enable_cache(parallelism_config=ParallelismConfig)"
            + (", with the cache_config in the same call" if cache == "cache_dit" else ""),
            cache_dit_backend=str(getattr(config, "backend", None)),
            cpu_accommodation=_ACCOMMODATION if device_type == "cpu" else None,
        )
    if par.vae_patch > 1:
        import cache_dit
        from cache_dit import ParallelismConfig
        from cache_dit.distributed.autoencoders import parallelize_autoencoder

        # a config of its own: cache-dit sizes the VAE's ranks from the config's degrees, and they span the world
        with cpu_accelerator():
            parallelize_autoencoder(pipe.vae, ParallelismConfig(ulysses_size=par.world))
        applied["vae_patch_applied"] = {
            "library": "cache-dit",
            "library_version": getattr(cache_dit, "__version__", None),
            "api": "cache_dit.distributed.autoencoders.parallelize_autoencoder",
            "vae": type(pipe.vae).__name__,
            "ranks": par.world,
            "cpu_accommodation": _ACCOMMODATION if device_type == "cpu" else None,
        }
    if par.hsdp:
        applied["hsdp_applied"] = shard_weights(pipe, device_type, par.world)
    applied["attention_backend"] = _attention_backends(pipe)
    return applied


BLOCK_LISTS = ("blocks", "transformer_blocks", "single_transformer_blocks")  # Wan, Qwen-Image, HunyuanImage


def shard_weights(pipe: Any, device_type: str, world: int) -> dict[str, Any]:
    """hsdp: torch FSDP2 over one mesh of all the job's ranks, each transformer block a unit, then the model (its
    remaining weights). Inference only: weights are gathered before a block's forward and freed after it."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device_type, (world,))
    units = 0
    total = local = 0
    for t in transformers_of(pipe):
        for name in BLOCK_LISTS:
            for block in getattr(t, name, None) or []:
                fully_shard(block, mesh=mesh, reshard_after_forward=True)
                units += 1
        fully_shard(t, mesh=mesh, reshard_after_forward=True)
        units += 1
        for p in t.parameters():
            total += p.numel()
            local += p.to_local().numel() if hasattr(p, "to_local") else p.numel()
    return {
        "library": "torch",
        "library_version": torch.__version__,
        "api": "torch.distributed.fsdp.fully_shard",
        "mesh": [world],
        "units": units,
        "local_weight_fraction": round(local / total, 4) if total else None,
    }


def _attention_backends(pipe: Any) -> list[str]:
    """The backend every attention processor runs (a processor without its own runs diffusers' active one)."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    active = _AttentionBackendRegistry.get_active_backend()[0]
    seen: set[str] = set()
    for t in transformers_of(pipe):
        for m in t.modules():
            proc = getattr(m, "processor", None)
            if proc is not None and hasattr(proc, "_attention_backend"):
                b = proc._attention_backend
                seen.add(str(getattr(b or active, "value", b or active)))
    return sorted(seen)


def oversubscribed(world: int, device_type: str) -> bool:
    """A CPU job with more ranks than cores (allowed by --oversubscribe): its timings do not measure scaling."""
    return device_type == "cpu" and world > (os.cpu_count() or 1)


def check_workload(
    path: Any, spec: Any, scale: str, device_type: str, devices: int | None = None, *, oversubscribe: bool = False
) -> None:
    """runners.lane, before anything runs: a parallel workload that cannot run here at this scale is bad input
    (exit 2), one line naming the file and the field."""
    from guardrail.errors import InputError

    par = spec.parallel
    if par is None:
        return
    if spec.engine != "diffusers":
        raise InputError("parallel runs need engine: diffusers", file=str(path), field="parallel")
    comps = spec.components_at(scale)
    try:
        check(
            par,
            pipeline=spec.pipeline or "",
            transformer_config=comps["transformer"].config if "transformer" in comps else {},
            vae_config=comps["vae"].config if "vae" in comps else {},
            generation=spec.generation_at(scale),
            device_type=device_type,
            devices=device_slots(device_type, oversubscribe=oversubscribe) if devices is None else devices,
            attention_backend=spec.options_at(scale).attention_backend,
            cache=spec.options_at(scale).cache,
            compile=spec.options_at(scale).compile,
        )
    except ParallelInputError as exc:
        raise InputError(f"{exc.message} ({scale} scale)", file=str(path), field=exc.field) from None
