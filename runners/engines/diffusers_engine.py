"""The diffusers engine: build the real pipeline, run it, time it on the device.

Per process: load (build + move to device), warm-up generation(s), then the measured generation.
Step boundaries come from the pipeline's own `callback_on_step_end`; the loop start is the first
transformer forward of the generation; stage times come from forward hooks on the text encoders and
a wrapper around `vae.decode`. All marks are device events (wall clock on CPU), read after one
synchronize at the end, so the instrumentation adds no device synchronisation inside the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from runners.device import Device, Mark
from runners.measurements import CPU_TIME, EQUIVALENCE, METRICS, WHEN_APPLIED, Measurements, Warmup, WorkerOk
from runners.spec import WorkloadSpec

TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "image_encoder")


class Probe:
    """Marks for one generation."""

    def __init__(self, device: Device):
        self.device = device
        # runners.calibration: a fixed kernel run after every step (CPU only), its time kept apart from the step's
        self.calibrate: Callable[[], float] | None = None
        self.reset()

    def reset(self) -> None:
        self.loop_start: Mark | None = None
        self.step_ends: list[Mark] = []
        self.forwards: list[tuple[int, Mark, Mark | None]] = []  # (step index, pre, post)
        self.text: list[tuple[Mark, Mark | None]] = []
        self.decode: list[tuple[Mark, Mark | None]] = []
        self.comms: list[tuple[int, Mark, Mark]] = []  # (step index, before, after): runners.collectives
        self.keep_inputs = False
        self.captured: list[tuple[Any, tuple, dict]] = []
        self.gaps: list[tuple[Mark, Mark]] = []  # (step end, resume): the calibration after each step
        self.cal_ms: list[float] = []  # its CPU milliseconds, one per step

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

    def comm(self, pre: Mark, post: Mark) -> None:
        """One collective of a parallel job (runners.collectives), counted in the step it happened in."""
        self.comms.append((len(self.step_ends), pre, post))

    def step_end(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        end = self.device.event()
        self.step_ends.append(end)
        if self.calibrate is not None:
            self.cal_ms.append(self.calibrate())
            self.gaps.append((end, self.device.event()))
        return callback_kwargs

    # results -------------------------------------------------------------------------------
    def _steps(self) -> list[tuple[Mark, Mark]]:
        """(start, end) of each step: the loop start, then where the previous step ended (or its calibration)."""
        if self.loop_start is None:  # no transformer forward ran, so no step did either
            return []
        resumes = [self.gaps[i][1] if i < len(self.gaps) else m for i, m in enumerate(self.step_ends)]
        return list(zip([self.loop_start, *resumes], self.step_ends, strict=False))

    def step_ms(self) -> list[float]:
        return [a.ms_until(b) for a, b in self._steps()]

    def step_cpu_ms(self) -> list[float]:
        """Process CPU time of each step (the same boundaries as step_ms); [] off CPU."""
        if self.loop_start is None or self.loop_start.cpu is None:
            return []
        return [a.cpu_ms_until(b) or 0.0 for a, b in self._steps()]

    def gap_ms(self, before: int | None = None) -> tuple[float, float]:
        """Wall and CPU milliseconds spent calibrating (after the first `before` steps only, when given): taken
        out of the spans that contain them, so the stage and e2e metrics do not carry the calibration."""
        gaps = self.gaps[:before]
        return sum(a.ms_until(b) for a, b in gaps), sum(a.cpu_ms_until(b) or 0.0 for a, b in gaps)

    def forward_ms_per_step(self) -> list[float]:
        return self._per_step(self.forwards)

    def comm_ms_per_step(self) -> list[float]:
        return self._per_step(self.comms)

    def _per_step(self, spans: list[tuple[int, Mark, Mark]] | list[tuple[int, Mark, Mark | None]]) -> list[float]:
        """The time of the (step index, before, after) spans summed per step; 0 for a step without one."""
        per: dict[int, float] = {}
        for step, pre, post in spans:
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
    from runners.options import OptionError, apply_attention, apply_cache, apply_compile, is_compile_failure

    options = spec.options_at(scale)
    applied: dict[str, Any] = apply_attention(pipe, options, device.type)
    reference = None
    if options.cache != "none" and any(m in spec.metrics for m in EQUIVALENCE):
        # the same seed through the same pipeline before the cache is on: what the cache's output is held to
        say("no-cache reference generation")
        with torch.inference_mode():
            reference = _output_of(pipe(**call_kwargs(spec, scale, pipe)))
        device.synchronize()
    applied.update(apply_cache(pipe, options))
    applied.update(apply_compile(pipe, options, device.type))
    applied.update(shrunk)
    if device.type == "cpu":  # what the worker pinned (runners.device.pin_cpu_threads), as in effect now
        from runners.device import thread_settings

        applied["cpu_threads"] = thread_settings()
    compiling = applied["compile"] != "none"
    probe = Probe(device)
    _instrument(pipe, probe)
    from runners import collectives

    timing_comms = collectives.installed()  # a rank of a parallel job (runners.launch)
    collectives.attach(probe.comm if timing_comms else None)

    def generate(kwargs: dict[str, Any]) -> Any:
        try:
            with torch.inference_mode():
                return pipe(**kwargs, callback_on_step_end=probe.step_end)
        except Exception as exc:
            if compiling and is_compile_failure(exc):
                raise OptionError(
                    "compile_error", f"compile: {options.compile} failed: {type(exc).__name__}: {exc}"
                ) from exc
            raise

    warm_times: list[float] = []
    warm_gen_steps: list[float] = []  # step latencies of the warm-up generations (compile happens in the first)
    for i in range(warm_gens):
        say(f"warm-up generation {i + 1}/{warm_gens}")
        steps = min(gen.num_inference_steps, max(2, warm_steps + 1))
        t = time.perf_counter()
        generate(call_kwargs(spec, scale, pipe, steps))
        device.synchronize()
        warm_times.append(time.perf_counter() - t)
        warm_gen_steps.extend(probe.step_ms())
        probe.reset()

    if device.type == "cpu" and not timing_comms:
        # not in a parallel job's ranks: a rank calibrating would stall the others at the next collective
        from runners.calibration import Calibration

        probe.calibrate = Calibration()
        probe.calibrate()  # its first call pays one-off allocation
        applied["calibration"] = probe.calibrate.describe()
    say(f"measured generation ({gen.num_inference_steps} steps)")
    device.reset_peak()
    probe.keep_inputs = keep_inputs
    kwargs = call_kwargs(spec, scale, pipe)
    device.synchronize()
    start = device.event()
    t = time.perf_counter()
    result = generate(kwargs)
    end = device.event()
    device.synchronize()
    wall_s = time.perf_counter() - t
    output = _output_of(result)

    collectives.attach(None)
    steps_ms = probe.step_ms()
    steps_cpu_ms = probe.step_cpu_ms()
    comm_ms = probe.comm_ms_per_step() if probe.comms else []
    gap_wall, gap_cpu = probe.gap_ms()
    e2e_ms = start.ms_until(end) - gap_wall
    e2e_cpu_ms = start.cpu_ms_until(end)
    if e2e_cpu_ms is not None:
        e2e_cpu_ms -= gap_cpu
    loop_start = probe.loop_start
    denoise_ms = 0.0
    if loop_start is not None and probe.step_ends:
        denoise_ms = loop_start.ms_until(probe.step_ends[-1]) - probe.gap_ms(len(probe.step_ends) - 1)[0]
    from runners.calibration import relative

    steps_relative = relative(steps_cpu_ms, probe.cal_ms)
    if probe.calibrate is not None:  # the machine's speed step by step, beside the ratio it made
        applied["calibration"]["cpu_ms"] = [round(v, 3) for v in probe.cal_ms]
    n_out = _count_outputs(output)
    steady = steps_ms[warm_steps:] or steps_ms
    compile_info = compile_time(warm_gen_steps + steps_ms[:warm_steps], steady) if compiling else None
    if compile_info is not None:
        from runners.options import compile_counters

        compile_info["dynamo"] = compile_counters()
    cache_info = None
    cache_metrics: dict[str, list[float] | None] = {}
    if applied.get("cache") == "cache_dit":
        from runners.options import cache_stats

        cache_info = cache_stats(pipe)
        if cache_info is not None:
            cache_metrics = {
                "cache_cached_steps": [float(cache_info["cached_steps"])],
                "cache_computed_steps": [float(cache_info["computed_steps"])],
                "cache_residual_diff": list(cache_info["residual_diffs"].values()) or None,
            }
        if reference is not None:
            eq = equivalence(reference, output)
            cache_info = {**(cache_info or {}), "equivalence": eq}
            cache_metrics.update(
                cache_psnr=[eq["psnr_db"]], cache_ssim=[eq["ssim"]], cache_max_abs_diff=[eq["max_abs_diff"]]
            )
    measured = Measurements(
        denoise_step_latency=steady,
        e2e_latency=[e2e_ms],
        text_encode_latency=[Probe._sum(probe.text)],
        denoise_latency=[denoise_ms],
        vae_decode_latency=[Probe._sum(probe.decode)],
        peak_memory=[device.peak_mib()],
        reserved_memory=[device.reserved_mib()],
        load_time=[load_s],
        warmup_time=[sum(warm_times) if warm_times else sum(steps_ms[:warm_steps]) / 1000.0],
        compile_time=None if compile_info is None else [compile_info["compile_time_s"]],
        throughput=[n_out / (e2e_ms / 1000.0)] if e2e_ms > 0 else [0.0],
        denoise_step_cpu_time=(steps_cpu_ms[warm_steps:] or steps_cpu_ms) or None,
        e2e_cpu_time=None if e2e_cpu_ms is None else [e2e_cpu_ms],
        denoise_step_relative=(steps_relative[warm_steps:] or steps_relative) or None,
        denoise_step_comm_time=(comm_ms[warm_steps:] or comm_ms) or None,
        **cache_metrics,
    )
    # the metrics the workload asks for, plus those recorded whenever their option applied
    unasked = {m: None for m in METRICS if m not in spec.metrics and m not in WHEN_APPLIED + CPU_TIME}
    if device.type == "cpu" and "peak_memory" not in unasked:
        # A dense pipeline allocates the same in every step, so a few show its peak; a cache's state changes
        # from step to step (warm-up, computed, cached), so a cache run's pass takes every step.
        steps = gen.num_inference_steps if applied.get("cache") == "cache_dit" else min(gen.num_inference_steps, 3)
        say(f"memory pass ({steps} steps, untimed)")
        peak, weights_mib = cpu_peak_pass(pipe, call_kwargs(spec, scale, pipe, steps))
        measured = measured.model_copy(update={"peak_memory": [peak]})
        applied["cpu_peak_memory"] = {
            "method": "tensor bytes: weights + torch.profiler allocation peak, untimed pass",
            "weights_mib": round(weights_mib, 3),
        }
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
        overhead=bare_forward_check(device, probe, steady) if keep_inputs and probe.captured else None,
        cache=cache_info,
        compile=compile_info,
    )


def cpu_peak_pass(pipe: Any, kwargs: dict[str, Any]) -> tuple[float, float]:
    """The CPU's peak memory in tensor bytes, the counterpart of CUDA's max_memory_allocated: the pipeline's
    weights plus the peak of the allocations torch's profiler records over one more generation (`kwargs`: fresh
    call_kwargs, the same seed), after the timed one, so the profiler costs the timings nothing. The resident set
    (VmHWM) is not used: glibc's heap fragments differently from process to process (tiny Qwen-Image-Edit: 513-557
    MiB between processes on a 2-core VM; docs/runners.md, "CPU peak memory"). Returns (peak MiB, weights MiB)."""
    import itertools

    import torch
    from torch.profiler import ProfilerActivity, profile

    storages: dict[int, int] = {}
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            for t in itertools.chain(module.parameters(), module.buffers()):
                st = getattr(t, "_local_tensor", t).untyped_storage()  # a DTensor's shard (tp, hsdp)
                storages[st.data_ptr()] = st.nbytes()
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        pipe(**kwargs)
    events = prof.profiler.kineto_results.events() if prof.profiler is not None else []
    allocs = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in allocs:
        live += nbytes
        peak = max(peak, live)
    weights = sum(storages.values()) / 2**20
    return weights + peak / 2**20, weights


def compile_time(warm_ms: list[float], steady_ms: list[float]) -> dict[str, Any]:
    """Compile time as the excess of the warm-up steps (every step before the measured ones: the warm-up
    generations' and the measured generation's first `warmup_steps`) over a steady step: torch.compile
    compiles lazily, inside the first forwards, so that excess is the compiling (and any recompiles)."""
    import statistics

    med = statistics.median(steady_ms) if steady_ms else 0.0
    excess = sum(max(0.0, s - med) for s in warm_ms)
    return {
        "compile_time_s": excess / 1000.0,
        "warmup_steps_ms": [round(s, 3) for s in warm_ms],
        "steady_step_median_ms": round(med, 3),
        "method": "sum over warm-up steps of (step - steady median)",
    }


def _ssim_2d(a: Any, b: Any, win: int = 7) -> float:
    """Mean SSIM (Wang et al. 2004) of two [0, 1] images with a win x win uniform window."""
    import numpy as np

    c1, c2 = 0.01**2, 0.03**2

    def box(x: Any) -> Any:  # mean over every win x win window, by 2-D cumulative sums
        s = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        return (s[win:, win:] - s[:-win, win:] - s[win:, :-win] + s[:-win, :-win]) / (win * win)

    if min(a.shape) < win:
        win = min(a.shape)
    mu_a, mu_b = box(a), box(b)
    va = box(a * a) - mu_a**2
    vb = box(b * b) - mu_b**2
    cov = box(a * b) - mu_a * mu_b
    n = win * win
    va, vb, cov = va * n / (n - 1), vb * n / (n - 1), cov * n / (n - 1)  # sample statistics
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (va + vb + c2)
    return float((num / den).mean())


def equivalence(reference: Any, output: Any) -> dict[str, Any]:
    """PSNR, SSIM (mean over pictures and channels) and max abs difference of two [0, 1] outputs.
    PSNR of identical outputs is reported as 100 dB (a cap: the value is infinite)."""
    import math

    import numpy as np

    a = np.clip(np.nan_to_num(np.asarray(reference, dtype=np.float64), nan=0.0), 0, 1)
    b = np.clip(np.nan_to_num(np.asarray(output, dtype=np.float64), nan=0.0), 0, 1)
    if a.shape != b.shape:
        raise ValueError(f"cache equivalence: output shape {b.shape} differs from the reference {a.shape}")
    mse = float(((a - b) ** 2).mean())
    psnr = 100.0 if mse == 0 else min(100.0, 10 * math.log10(1.0 / mse))
    pa = a.reshape((-1,) + a.shape[-3:])
    pb = b.reshape((-1,) + b.shape[-3:])
    ssims = [_ssim_2d(pa[i, :, :, c], pb[i, :, :, c]) for i in range(pa.shape[0]) for c in range(pa.shape[-1])]
    return {
        "psnr_db": psnr,
        "ssim": float(np.mean(ssims)),
        "max_abs_diff": float(np.abs(a - b).max()),
        "mse": mse,
        "pictures": int(pa.shape[0]),
        "guard": {"ssim_min": 0.90, "psnr_min_db": 30.0},
        "within_guard": bool(float(np.mean(ssims)) >= 0.90 and psnr >= 30.0),
    }


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
