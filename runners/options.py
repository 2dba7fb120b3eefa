"""Optimisations as workload options, applied through the real libraries; returns what was applied."""

from __future__ import annotations

from typing import Any

from runners.spec import Options

TRANSFORMER_NAMES = ("transformer", "transformer_2")


def transformers_of(pipe: Any) -> list[Any]:
    return [t for n in TRANSFORMER_NAMES if (t := getattr(pipe, n, None)) is not None]


def apply(pipe: Any, options: Options, device_type: str) -> dict[str, Any]:
    applied: dict[str, Any] = {"compile": "none", "attention_backend": None, "cache": "none"}
    if options.attention_backend:
        for t in transformers_of(pipe):
            # diffusers' attention-backend API (ModelMixin.set_attention_backend)
            t.set_attention_backend(options.attention_backend)
        applied["attention_backend"] = options.attention_backend
    if options.cache == "cache_dit":
        try:
            import cache_dit
        except ImportError:
            raise RuntimeError(
                "workload asks for cache: cache_dit but the cache-dit package is not installed"
            ) from None
        # the workload's cache_config is cache-dit's DBCacheConfig (Fn/Bn compute blocks, thresholds, ...)
        config = cache_dit.DBCacheConfig(**options.cache_config) if options.cache_config else None
        cache_dit.enable_cache(pipe, cache_config=config)
        applied["cache"] = "cache_dit"
        applied["cache_config"] = options.cache_config
        applied["cache_dit_version"] = getattr(cache_dit, "__version__", None)
    if options.compile == "inductor":
        for t in transformers_of(pipe):
            t.compile(mode=options.compile_mode) if options.compile_mode else t.compile()
        applied["compile"] = "inductor"
        applied["compile_mode"] = options.compile_mode
    elif options.compile == "mindiesd":
        if device_type != "npu":
            raise RuntimeError("compile: mindiesd needs an Ascend NPU (device npu)")
        try:
            import mindiesd
        except ImportError:
            raise RuntimeError("workload asks for compile: mindiesd but mindiesd is not installed") from None
        # MindIE-SD exposes a torch.compile backend for NPU graphs; written against its documented
        # API but never run here (no NPU in this project's CI): fail loudly if the name moved.
        backend = getattr(mindiesd, "MindieSDBackend", None)
        if backend is None:
            raise RuntimeError("mindiesd is installed but has no MindieSDBackend; check its version")
        for t in transformers_of(pipe):
            t.compile(backend=backend())
        applied["compile"] = "mindiesd"
    return applied
