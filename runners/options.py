"""Optimisations as workload options, applied through the real libraries; returns what was applied.

Order (runners.engines.diffusers_engine): attention backend, then (after an optional no-cache reference
generation) cache, then compile. Compile is regional — diffusers' `ModelMixin.compile_repeated_blocks`,
the way diffusers recommends — so the transformer's outer forward, where the timing hooks sit, is never
traced by Dynamo. Every optional package (cache-dit, mindiesd, torch_npu) is imported lazily.
"""

from __future__ import annotations

from typing import Any

from runners.spec import Options

TRANSFORMER_NAMES = ("transformer", "transformer_2")
# diffusers' _native_npu (torch_npu.npu_fusion_attention), cache-dit's _npu_fia (npu_fused_infer_attention_score)
# and _mindiesd_laser (mindiesd.layers.attention_forward): Ascend only
NPU_BACKENDS = ("_native_npu", "_npu_fia", "_mindiesd_laser")


class OptionError(RuntimeError):
    """An option that cannot be applied or failed while running; `guardrail_kind` is the result's error kind
    (runners.worker.classify reads it): compile_error, option_unavailable."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.guardrail_kind = kind


def transformers_of(pipe: Any) -> list[Any]:
    return [t for n in TRANSFORMER_NAMES if (t := getattr(pipe, n, None)) is not None]


def apply(pipe: Any, options: Options, device_type: str) -> dict[str, Any]:
    """All options at once (attention, cache, compile), for callers that need no reference generation."""
    applied = apply_attention(pipe, options, device_type)
    applied.update(apply_cache(pipe, options))
    applied.update(apply_compile(pipe, options, device_type))
    return applied


# --- attention ------------------------------------------------------------------------------------
def _diffusers_backends() -> set[str]:
    from diffusers.models.attention_dispatch import AttentionBackendName

    return {b.value for b in AttentionBackendName}


def _cache_dit_backends() -> set[str]:
    try:
        from cache_dit.attention.backends.register import _AttnBackend
    except ImportError:
        return set()
    return {b.value for b in _AttnBackend}


def _probe_backend(name: str, device: str, dtype: Any, via: str = "diffusers") -> None:
    """Run the backend once on small tensors on the device: a backend that cannot run here (a missing
    package, a kernel this GPU lacks, an NPU kernel on CUDA) is refused before the measurement starts."""
    import torch

    q = torch.randn(1, 64, 2, 64, device=device, dtype=dtype)  # (batch, seq, heads, head_dim)
    with torch.inference_mode():
        if via == "diffusers":
            from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

            out = dispatch_attention_fn(q, q, q, backend=AttentionBackendName(name))
        else:
            from cache_dit.attention.backends.register import _AttnBackend, _AttnBackendRegistry

            fn = _AttnBackendRegistry._backends.get(_AttnBackend(name))
            if fn is None:  # its module did not register it: the package it needs is missing
                raise RuntimeError(f"cache-dit registered no {name} backend (its package is not importable)")
            out = fn(query=q, key=q, value=q)
    if tuple(out.shape) != tuple(q.shape):
        raise RuntimeError(f"backend returned shape {tuple(out.shape)} for {tuple(q.shape)}")


def _backends_set(pipe: Any) -> dict[str, int]:
    """Attention processors per backend name, as the modules now carry them (what will run)."""
    counts: dict[str, int] = {}
    for t in transformers_of(pipe):
        for m in t.modules():
            proc = getattr(m, "processor", None)
            if proc is not None and hasattr(proc, "_attention_backend"):
                b = proc._attention_backend
                key = getattr(b, "value", b) or "default"
                counts[str(key)] = counts.get(str(key), 0) + 1
    return counts


def check_attention(path: Any, options: Options, device_type: str, scale: str) -> None:
    """runners.lane, before anything runs: an attention backend no installed library knows, or an Ascend kernel
    asked of another device, is bad input (exit 2) naming the file and field — not a failed run (exit 3) after
    the model was built. Whether a known backend really runs here is still found when it is applied."""
    from guardrail.errors import InputError

    name = options.attention_backend
    if not name:
        return
    field = "options.attention_backend"
    if name in NPU_BACKENDS and device_type != "npu":
        raise InputError(
            f"{name} is an Ascend NPU kernel; this run's device is {device_type} ({scale} scale)", file=str(path),
            field=field,
        )  # fmt: skip
    known = _diffusers_backends() | _cache_dit_backends() | set(NPU_BACKENDS)
    if name not in known:
        raise InputError(f"unknown backend {name!r}; known: {', '.join(sorted(known))}", file=str(path), field=field)


# cache-dit 1.5's DBCache computes the first Fn blocks of every step and needs at least one block after them
# (`Fn_compute_blocks must be >= 1`, `... must be less than the number of transformer blocks`); its default Fn is 8.
CACHE_DIT_DEFAULT_FN = 8
BLOCK_COUNTS = ("num_layers", "num_single_layers")  # the transformer configs' block lists (HunyuanImage has two)


def check_cache(path: Any, options: Options, transformer_config: dict[str, Any], scale: str) -> None:
    """runners.lane, before anything runs: a cache-dit schedule that cannot fit the transformer's blocks at this
    scale is bad input (exit 2), not a failed run after the model was built."""
    from guardrail.errors import InputError

    if options.cache != "cache_dit":
        return
    fn = options.cache_config.get("Fn_compute_blocks", CACHE_DIT_DEFAULT_FN)
    blocks = [int(transformer_config[k]) for k in BLOCK_COUNTS if isinstance(transformer_config.get(k), int)]
    if not blocks or (isinstance(fn, int) and 1 <= fn < min(blocks)):
        return
    field = ("tiny." if scale == "tiny" else "") + "options.cache_config.Fn_compute_blocks"
    raise InputError(
        f"cache-dit needs 1 <= Fn_compute_blocks ({fn}) < the transformer's blocks ({min(blocks)}) ({scale} scale)",
        file=str(path),
        field=field,
    )


def apply_attention(pipe: Any, options: Options, device_type: str) -> dict[str, Any]:
    applied: dict[str, Any] = {"attention_backend": None}
    name = options.attention_backend
    if not name:
        return applied
    if name in NPU_BACKENDS and device_type != "npu":
        raise OptionError(
            "option_unavailable",
            f"attention_backend: {name} is an Ascend NPU kernel; this run's device is {device_type}",
        )
    ts = transformers_of(pipe)
    device = str(ts[0].device) if ts else device_type
    dtype = ts[0].dtype if ts else None
    if name in _diffusers_backends():
        via = "diffusers"
        try:
            for t in ts:
                # diffusers' attention-backend API; it checks the backend's package itself
                t.set_attention_backend(name)
            _probe_backend(name, device, dtype)
        except Exception as exc:
            raise OptionError(
                "option_unavailable",
                f"attention_backend: {name} cannot run on this {device_type} device: {type(exc).__name__}: {exc}",
            ) from exc
    elif name in _cache_dit_backends():
        # cache-dit's own backends (_npu_fia: torch_npu's fused infer attention; _mindiesd_laser; ...)
        via = "cache_dit"
        try:
            import cache_dit

            cache_dit.set_attn_backend(pipe, attention_backend=name)
            _probe_backend(name, device, dtype, via="cache_dit")
        except Exception as exc:
            raise OptionError(
                "option_unavailable",
                f"attention_backend: {name} (cache-dit) cannot run on this {device_type} device: "
                f"{type(exc).__name__}: {exc}",
            ) from exc
    else:
        known = sorted(_diffusers_backends() | _cache_dit_backends())
        raise OptionError(
            "option_unavailable", f"attention_backend: unknown backend {name!r}; known: {', '.join(known)}"
        )
    set_on = _backends_set(pipe)
    if set_on.get(name, 0) == 0:
        raise OptionError("option_unavailable", f"attention_backend: {name} was set but no attention module carries it")
    applied.update(attention_backend=name, attention_backend_via=via, attention_processors=set_on)
    return applied


# --- cache ----------------------------------------------------------------------------------------
def apply_cache(pipe: Any, options: Options) -> dict[str, Any]:
    if options.cache != "cache_dit":
        return {"cache": "none"}
    try:
        import cache_dit
    except ImportError:
        raise OptionError(
            "option_unavailable", "workload asks for cache: cache_dit but the cache-dit package is not installed"
        ) from None
    # the workload's cache_config is cache-dit's DBCacheConfig (Fn/Bn compute blocks, thresholds, ...)
    config = cache_dit.DBCacheConfig(**options.cache_config) if options.cache_config else None
    from runners.parallel import DEFERRED_PARALLELISM, cpu_accelerator

    parallelism = getattr(pipe, DEFERRED_PARALLELISM, None)  # a cache-dit parallel strategy, in the same call
    if parallelism is None:
        cache_dit.enable_cache(pipe, cache_config=config)
    else:
        import torch

        # inference mode, as when the pipeline was built: cache-dit's tp redistributes the (inference) weights
        with cpu_accelerator(), torch.inference_mode():
            cache_dit.enable_cache(pipe, cache_config=config, parallelism_config=parallelism)
    return {
        "cache": "cache_dit",
        "cache_config": options.cache_config,
        "cache_dit_version": getattr(cache_dit, "__version__", None),
        "with_parallelism": parallelism is not None,
    }


def cache_stats(pipe: Any) -> dict[str, Any] | None:
    """cache-dit's own counters for the last generation (its stats reset at each pipeline call):
    cached / computed steps of the conditional and the CFG branch, and the residual diff per step."""
    import cache_dit

    stats = [s for s in cache_dit.summary(pipe, details=False, logging=False) if s.cache_options]
    if not stats:
        return None
    s = stats[0]  # the first cached block group of the transformer

    def diffs(d: dict) -> dict[str, float]:
        out = {}
        for k, v in d.items():
            vals = v if isinstance(v, list) else [v]
            out[str(k)] = float(sum(float(x) for x in vals) / len(vals)) if vals else 0.0
        return out

    executed = int(s.accumulated_executed_steps)
    return {
        "cached_steps": int(s.accumulated_cached_steps),
        "computed_steps": executed - int(s.accumulated_cached_steps),
        "executed_steps": executed,
        "transformer_forwards": int(s.accumulated_transformer_executed_steps),
        "cached_step_indices": [int(x) for x in s.cached_steps],
        "cfg_cached_steps": int(s.cfg_accumulated_cached_steps),
        "cfg_cached_step_indices": [int(x) for x in s.cfg_cached_steps],
        "residual_diffs": diffs(s.residual_diffs),
        "cfg_residual_diffs": diffs(s.cfg_residual_diffs),
        "groups": len(stats),
    }


# --- compile --------------------------------------------------------------------------------------
def apply_compile(pipe: Any, options: Options, device_type: str) -> dict[str, Any]:
    if options.compile == "none":
        return {"compile": "none"}
    kwargs: dict[str, Any] = {}
    if options.compile == "inductor":
        if options.compile_mode:
            kwargs["mode"] = options.compile_mode
    elif options.compile == "mindiesd":
        if device_type != "npu":
            raise OptionError("option_unavailable", "compile: mindiesd needs an Ascend NPU (device npu)")
        try:
            # MindIE-SD's torch.compile backend, where mindiesd 3.x keeps it (mindiesd/compilation/__init__.py)
            from mindiesd.compilation import MindieSDBackend
        except ImportError as exc:
            raise OptionError(
                "option_unavailable", f"compile: mindiesd asked for but mindiesd.compilation is not importable: {exc}"
            ) from None
        kwargs["backend"] = MindieSDBackend()
    blocks = 0
    try:
        for t in transformers_of(pipe):
            # regional compile: each repeated block (t._repeated_blocks) gets torch.compile; the blocks share
            # one compiled graph, and the outer forward (with the timing hooks) stays eager
            t.compile_repeated_blocks(**kwargs)
            names = set(getattr(t, "_repeated_blocks", ()))
            blocks += sum(1 for m in t.modules() if type(m).__name__ in names)
    except Exception as exc:
        raise OptionError(
            "compile_error", f"compile: {options.compile} failed to apply: {type(exc).__name__}: {exc}"
        ) from exc
    return {
        "compile": options.compile,
        "compile_scope": "regional",
        "compile_mode": options.compile_mode,
        "compiled_blocks": blocks,
    }


def is_compile_failure(exc: BaseException) -> bool:
    """An exception raised by Dynamo/Inductor (or a backend) while compiling, as opposed to an error of
    the model itself (an OOM inside compiled code stays an OOM)."""
    if "out of memory" in str(exc).lower():
        return False
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        mod = type(e).__module__ or ""
        if mod.startswith(("torch._dynamo", "torch._inductor", "mindiesd")):
            return True
        tb = e.__traceback__
        while tb is not None:
            f = tb.tb_frame.f_code.co_filename.replace("\\", "/")
            if f.endswith("torch/_dynamo/convert_frame.py") or "/torch/_inductor/compile_fx" in f:
                return True
            tb = tb.tb_next
        e = e.__cause__ or e.__context__
    return False


def compile_counters() -> dict[str, Any]:
    """Dynamo's own counts (graphs compiled, frames): a recompile in the measured run shows here."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return {}
    return {k: dict(v) for k, v in counters.items() if k in ("stats", "frames", "recompiles") and v}
