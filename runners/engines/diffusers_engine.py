"""The diffusers engine: build the real pipeline, run it, time it on the device.

Per process: load (build + move to device), warm-up generation(s), then the measured generation.
Step boundaries come from the pipeline's own `callback_on_step_end`; the loop start is the first
transformer forward of the generation; stage times come from forward hooks on the text encoders and
a wrapper around `vae.decode`. All marks are device events (wall clock on CPU), read after one
synchronize at the end, so the instrumentation adds no device synchronisation inside the loop.
"""

from __future__ import annotations

import time
from typing import Any

from runners.device import Device, Mark
from runners.measurements import METRICS, Measurements, Warmup, WorkerOk
from runners.spec import WorkloadSpec

TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "image_encoder")


class Probe:
    """Marks for one generation."""

    def __init__(self, device: Device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loop_start: Mark | None = None
        self.step_ends: list[Mark] = []
        self.forwards: list[tuple[int, Mark, Mark | None]] = []  # (step index, pre, post)
        self.text: list[tuple[Mark, Mark | None]] = []
        self.decode: list[tuple[Mark, Mark | None]] = []
        self.keep_inputs = False
        self.captured: list[tuple[Any, tuple, dict]] = []

    # hooks ---------------------------------------------------------------------------------
    def transformer_pre(self, module: Any, args: tuple, kwargs: dict) -> None:
        m = self.device.event()
        if self.loop_start is None:
            self.loop_start = m
        self.forwards.append((len(self.step_ends), m, None))
        if self.keep_inputs and len(self.step_ends) == 1:  # the inputs of one steady-state step
            self.captured.append((module, args, kwargs))

    def transformer_post(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        step, pre, _ = self.forwards[-1]
        self.forwards[-1] = (step, pre, self.device.event())

    def text_pre(self, module: Any, args: tuple, kwargs: dict) -> None:
        self.text.append((self.device.event(), None))

    def text_post(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        self.text[-1] = (self.text[-1][0], self.device.event())

    def step_end(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        self.step_ends.append(self.device.event())
        return callback_kwargs

    # results -------------------------------------------------------------------------------
    def step_ms(self) -> list[float]:
        if self.loop_start is None:  # no transformer forward ran, so no step did either
            return []
        out = []
        prev = self.loop_start
        for m in self.step_ends:
            out.append(prev.ms_until(m))
            prev = m
        return out

    def forward_ms_per_step(self) -> list[float]:
        per: dict[int, float] = {}
        for step, pre, post in self.forwards:
            if post is not None:
                per[step] = per.get(step, 0.0) + pre.ms_until(post)
        return [per.get(i, 0.0) for i in range(len(self.step_ends))]

    @staticmethod
    def _sum(pairs: list[tuple[Mark, Mark | None]]) -> float:
        return sum(a.ms_until(b) for a, b in pairs if b is not None)


def _instrument(pipe: Any, probe: Probe) -> None:
    from runners.options import transformers_of

    for t in transformers_of(pipe):
        t.register_forward_pre_hook(probe.transformer_pre, with_kwargs=True)
        t.register_forward_hook(probe.transformer_post, with_kwargs=True)
    for name in TEXT_ENCODERS:
        enc = getattr(pipe, name, None)
        if enc is not None and hasattr(enc, "register_forward_pre_hook"):
            enc.register_forward_pre_hook(probe.text_pre, with_kwargs=True)
            enc.register_forward_hook(probe.text_post, with_kwargs=True)
    vae = pipe.vae
    decode = vae.decode

    def timed_decode(*args: Any, **kwargs: Any) -> Any:
        start = probe.device.event()
        out = decode(*args, **kwargs)
        probe.decode.append((start, probe.device.event()))
        return out

    vae.decode = timed_decode


def condition_images(spec_gen: Any, seed: int) -> list[Any]:
    """Seeded noise images standing in for the user's condition image(s)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    h = spec_gen.image_height or spec_gen.height
    w = spec_gen.image_width or spec_gen.width
    return [
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB") for _ in range(spec_gen.num_images)
    ]


def call_kwargs(spec: WorkloadSpec, scale: str, pipe: Any, steps: int | None = None) -> dict[str, Any]:
    import torch

    gen = spec.generation_at(scale)
    p = spec.pipeline or ""
    kw: dict[str, Any] = {
        "prompt": gen.prompt,
        "negative_prompt": gen.negative_prompt,
        "height": gen.height,
        "width": gen.width,
        "num_inference_steps": steps or gen.num_inference_steps,
        # a CPU generator makes the initial noise identical on every device (output fingerprint)
        "generator": torch.Generator(device="cpu").manual_seed(gen.seed),
        "output_type": "np",
    }
    if gen.max_sequence_length:
        kw["max_sequence_length"] = gen.max_sequence_length
    if p.startswith("Wan"):
        kw["num_frames"] = gen.num_frames
        if gen.guidance_scale is not None:
            kw["guidance_scale"] = gen.guidance_scale
        if gen.guidance_scale_2 is not None and getattr(pipe, "transformer_2", None) is not None:
            kw["guidance_scale_2"] = gen.guidance_scale_2
        if p == "WanImageToVideoPipeline":
            kw["image"] = condition_images(gen, gen.seed)[0]
    elif p.startswith("QwenImageEdit"):
        if gen.guidance_scale is not None:
            kw["true_cfg_scale"] = gen.guidance_scale
        imgs = condition_images(gen, gen.seed)
        kw["image"] = imgs if p == "QwenImageEditPlusPipeline" else imgs[0]
    return kw


def fingerprint(output: Any) -> dict[str, Any]:
    """Downsampled output and statistics, so that drift under a fixed seed is caught beside speed."""
    import hashlib

    import numpy as np

    arr = np.asarray(output, dtype=np.float32)
    finite = np.isfinite(arr)
    vals = arr[finite]
    # frames/images -> one 8x8 RGB thumbnail of the first and of the last picture
    pics = arr.reshape((-1,) + arr.shape[-3:]) if arr.ndim >= 3 else arr[None]

    def thumb(pic: Any) -> list:
        h, w = pic.shape[0], pic.shape[1]
        ys = np.linspace(0, h - 1, 8).astype(int)
        xs = np.linspace(0, w - 1, 8).astype(int)
        t = np.nan_to_num(pic[np.ix_(ys, xs)], nan=-1.0)
        return np.round(t, 3).tolist()

    q = np.clip(np.nan_to_num(arr, nan=0.0), 0, 1)
    return {
        "shape": list(arr.shape),
        "mean": float(vals.mean()) if vals.size else None,
        "std": float(vals.std()) if vals.size else None,
        "min": float(vals.min()) if vals.size else None,
        "max": float(vals.max()) if vals.size else None,
        "nonfinite": int((~finite).sum()),
        "sha256_u8": hashlib.sha256((q * 255).round().astype(np.uint8).tobytes()).hexdigest(),
        "thumb_first": thumb(pics[0]),
        "thumb_last": thumb(pics[-1]),
    }


def _output_of(result: Any) -> Any:
    for attr in ("frames", "images"):
        if hasattr(result, attr):
            return getattr(result, attr)
    return result[0]


def shrink_edit_targets(spec: WorkloadSpec, scale: str) -> dict[str, Any]:
    """At tiny scale only: cap the edit pipelines' fixed 1024x1024 condition-image area at the tiny
    condition image's area (else a tiny CPU run spends minutes encoding a 1024x1024 image)."""
    if scale != "tiny" or not (spec.pipeline or "").startswith("QwenImageEdit"):
        return {}
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as base
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as plus

    gen = spec.generation_at(scale)
    area = (gen.image_height or gen.height) * (gen.image_width or gen.width)
    modules: tuple[Any, ...] = (base, plus)  # patched at run time: typed as what they are, open modules
    for mod in modules:
        original = getattr(mod, "_guardrail_original_calculate_dimensions", mod.calculate_dimensions)
        mod._guardrail_original_calculate_dimensions = original
        mod.calculate_dimensions = lambda target_area, ratio, _f=original: _f(min(target_area, area), ratio)
    return {"tiny_condition_area": area}


def run(
    spec: WorkloadSpec,
    scale: str,
    device: Device,
    *,
    progress: Any = None,
    keep_inputs: bool = False,
    seed: int = 0,
) -> WorkerOk:
    """One process's measurements for one workload (see the module doc)."""
    import torch

    from runners.components import build_pipeline, weights_digest
    from runners.options import apply

    say = progress or (lambda msg: None)
    gen = spec.generation_at(scale)
    warm_gens, warm_steps = spec.warmup_at(scale)

    import diffusers  # noqa: F401  (imported before the clock starts: load_time is building, not importing)
    import transformers  # noqa: F401  (likewise)

    from runners.components import import_classes

    import_classes(spec, scale)
    shrunk = shrink_edit_targets(spec, scale)
    say("building pipeline")
    device.reset_peak()
    t0 = time.perf_counter()
    with torch.inference_mode():
        pipe, weights = build_pipeline(spec, scale, device.torch_device, seed)
    device.synchronize()
    load_s = time.perf_counter() - t0
    pipe.set_progress_bar_config(disable=True)
    applied = {**apply(pipe, spec.options_at(scale), device.type), **shrunk}
    probe = Probe(device)
    _instrument(pipe, probe)

    warm_times: list[float] = []
    compile_s = None
    for i in range(warm_gens):
        say(f"warm-up generation {i + 1}/{warm_gens}")
        steps = min(gen.num_inference_steps, max(2, warm_steps + 1))
        t = time.perf_counter()
        with torch.inference_mode():
            pipe(**call_kwargs(spec, scale, pipe, steps), callback_on_step_end=probe.step_end)
        device.synchronize()
        warm_times.append(time.perf_counter() - t)
        if i == 0 and applied["compile"] != "none":
            compile_s = warm_times[0]
        probe.reset()

    say(f"measured generation ({gen.num_inference_steps} steps)")
    device.reset_peak()
    probe.keep_inputs = keep_inputs
    kwargs = call_kwargs(spec, scale, pipe)
    device.synchronize()
    start = device.event()
    t = time.perf_counter()
    with torch.inference_mode():
        result = pipe(**kwargs, callback_on_step_end=probe.step_end)
    end = device.event()
    device.synchronize()
    wall_s = time.perf_counter() - t
    output = _output_of(result)

    steps_ms = probe.step_ms()
    e2e_ms = start.ms_until(end)
    loop_start = probe.loop_start
    denoise_ms = loop_start.ms_until(probe.step_ends[-1]) if loop_start is not None and probe.step_ends else 0.0
    n_out = _count_outputs(output)
    measured = Measurements(
        denoise_step_latency=steps_ms[warm_steps:] or steps_ms,
        e2e_latency=[e2e_ms],
        text_encode_latency=[Probe._sum(probe.text)],
        denoise_latency=[denoise_ms],
        vae_decode_latency=[Probe._sum(probe.decode)],
        peak_memory=[device.peak_mib()],
        reserved_memory=[device.reserved_mib()],
        load_time=[load_s],
        warmup_time=[sum(warm_times) if warm_times else sum(steps_ms[:warm_steps]) / 1000.0],
        compile_time=None if compile_s is None else [compile_s],
        throughput=[n_out / (e2e_ms / 1000.0)] if e2e_ms > 0 else [0.0],
    )
    # the metrics the workload asks for; compile_time whenever something compiled
    unasked = {m: None for m in METRICS if m not in spec.metrics and m != "compile_time"}
    return WorkerOk(
        metrics=measured.model_copy(update=unasked),
        warmup=Warmup(generations=warm_gens, times_s=warm_times, step_latency_ms=steps_ms[:warm_steps]),
        applied=applied,
        weights=weights,
        # computed after the measured generation: it reads the small files of the model directory
        weights_digest=None if weights == "synthetic" else weights_digest(weights),
        fingerprint=fingerprint(output),
        forward_ms_per_step=probe.forward_ms_per_step(),
        wall_e2e_s=wall_s,
        outputs=n_out,
        overhead=bare_forward_check(device, probe, steps_ms[warm_steps:] or steps_ms)
        if keep_inputs and probe.captured
        else None,
    )


def bare_forward_check(device: Device, probe: Probe, steps_ms: list[float], reps: int = 5) -> dict[str, Any]:
    """Replay the transformer forwards of one steady-state step with nothing around them: the
    runner's per-step latency minus this sum is the harness overhead (scheduler step, CFG combine,
    hooks, callback)."""
    import statistics

    import torch

    captured, probe.keep_inputs = list(probe.captured), False
    bare = []
    with torch.inference_mode():
        for _ in range(reps):
            start = device.event()
            for module, args, kwargs in captured:
                module(*args, **kwargs)
            end = device.event()
            device.synchronize()
            bare.append(start.ms_until(end))
    step_med = statistics.median(steps_ms)
    bare_med = statistics.median(bare)
    return {
        "forwards_per_step": len(captured),
        "bare_step_ms": bare,
        "runner_step_median_ms": step_med,
        "bare_step_median_ms": bare_med,
        "overhead_fraction": step_med / bare_med - 1.0 if bare_med > 0 else None,
    }


def _count_outputs(output: Any) -> int:
    """Images, or video frames, produced by one generation."""
    import numpy as np

    arr = np.asarray(output)
    return int(np.prod(arr.shape[:-3])) if arr.ndim >= 4 else 1
