"""What resolutions and frame counts a pipeline can take, from its components' architecture configs."""

from __future__ import annotations

from runners.spec import Component, WorkloadSpec


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
