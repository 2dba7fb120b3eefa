"""Build a pipeline's components from a workload spec: seeded synthetic weights at the spec's
architecture (tiny or full), or the real pipeline from local weights."""

from __future__ import annotations

import contextlib
from typing import Any

from runners import synthetic
from runners.spec import Component, WorkloadSpec, resolve_model_path

DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, DTYPES[name])


@contextlib.contextmanager
def _default_dtype(dtype: Any):
    # Parameters are created directly in the run's dtype on the device: a 20B-parameter transformer
    # would not fit in float32 first.
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _synthetic(name: str, comp: Component, comps: dict[str, Component]) -> Any:
    if comp.cls == "qwen2vl-processor":
        tok_cfg = comps["tokenizer"].config if "tokenizer" in comps else {}
        return synthetic.qwen2vl_processor(synthetic.qwen2_tokenizer(**tok_cfg), comp.config.get("image_processor"))
    if comp.cls not in synthetic.SYNTHETIC:
        raise ValueError(f"component {name!r}: unknown synthetic class {comp.cls!r}")
    return synthetic.SYNTHETIC[comp.cls](**comp.config)


def _is_model(cls: Any) -> bool:
    import torch

    return isinstance(cls, type) and issubclass(cls, torch.nn.Module)


def build_synthetic(spec: WorkloadSpec, scale: str, device: str, seed: int = 0) -> dict[str, Any]:
    """Every component at the spec's architecture with seeded random weights, created on `device`."""
    import diffusers
    import torch
    import transformers

    comps = spec.components_at(scale)
    default = torch_dtype(spec.dtype_at(scale))
    out: dict[str, Any] = {}
    for i, (name, comp) in enumerate(sorted(comps.items())):
        torch.manual_seed(seed + i)  # each component's weights depend on the seed and its name order only
        if comp.kind == "value":
            out[name] = comp.value
        elif comp.kind == "synthetic":
            out[name] = _synthetic(name, comp, comps)
        elif comp.kind == "diffusers":
            cls = getattr(diffusers, comp.cls or "")
            if not _is_model(cls):  # schedulers, guiders: configs, no weights
                out[name] = cls.from_config(comp.config)
                continue
            dtype = torch_dtype(comp.dtype) if comp.dtype else default
            with torch.device(device), _default_dtype(dtype):
                out[name] = cls.from_config(comp.config).eval()
        else:  # transformers
            cls = getattr(transformers, comp.cls or "")
            cfg = getattr(transformers, comp.config_class or "")(**comp.config)
            dtype = torch_dtype(comp.dtype) if comp.dtype else default
            with torch.device(device), _default_dtype(dtype):
                out[name] = cls(cfg).eval()
    return out


def import_classes(spec: WorkloadSpec, scale: str) -> None:
    """Resolve the (lazily imported) classes up front, so that load_time measures building only."""
    import diffusers
    import transformers

    getattr(diffusers, spec.pipeline or "")
    for comp in spec.components_at(scale).values():
        if comp.kind == "diffusers":
            getattr(diffusers, comp.cls or "")
        elif comp.kind == "transformers":
            getattr(transformers, comp.cls or "")
            getattr(transformers, comp.config_class or "")


def local_weights_path(spec: WorkloadSpec) -> str | None:
    import os

    if spec.model is None:
        return None
    if spec.model.path:
        return str(resolve_model_path(spec.model.path))
    root = os.environ.get("GUARDRAIL_MODEL_ROOT")
    if root:
        cand = os.path.join(root, spec.model.repo_id)
        if os.path.isdir(cand):
            return cand
    return None


def weights_digest(path: str) -> str:
    """A digest of a local model directory that changes when its weights or configs do, without reading
    gigabytes: every file's relative path and size; the content of small files (configs, tokenizers); for a
    ``.safetensors`` file its header (every tensor's name, dtype, shape and offsets). Symbolic links (a hub
    cache's snapshot) are followed."""
    import hashlib
    from pathlib import Path

    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        size = f.stat().st_size
        h.update(f"{f.relative_to(root).as_posix()}\0{size}\0".encode())
        with f.open("rb") as fh:
            if size <= 4 << 20:
                h.update(fh.read())
            elif f.suffix == ".safetensors":
                n = int.from_bytes(fh.read(8), "little")
                h.update(fh.read(min(n, 100 << 20)))
    return "sha256:" + h.hexdigest()


def build_pipeline(spec: WorkloadSpec, scale: str, device: str, seed: int = 0) -> tuple[Any, str]:
    """(pipeline on device, weights source: 'synthetic' or the local path)."""
    import diffusers

    cls = getattr(diffusers, spec.pipeline or "")
    path = local_weights_path(spec) if scale == "full" else None
    if path:
        # local_files_only: never the hub, even when the directory is incomplete
        pipe = cls.from_pretrained(path, torch_dtype=torch_dtype(spec.dtype), local_files_only=True)
        return pipe.to(device), path
    comps = build_synthetic(spec, scale, device, seed)
    pipe = cls(**comps)
    pipe.to(device)
    return pipe, "synthetic"
