"""The profiled process: `python -m runners.profile_capture WORKLOAD.yaml --scale S --device D --out F --trace T`.

One extra fresh process after a workload's timed repeats (runners.lane, `guardrail run --profile`), so that no
timed sample carries profiler overhead. It builds the same pipeline with the same options, runs the workload's
warm-up, then one generation of warm-up steps plus a few measured steps under the profiler (torch.profiler with
CPU and CUDA activities; torch_npu.profiler on Ascend), with `record_function` ranges for each denoising step,
the pipeline stages and every transformer block. It writes the compact aggregates (runners.profile_aggregate)
to --out and the full chrome trace to --trace.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from runners.device import Device
from runners.profile_aggregate import BLOCK, STAGE, STEP
from runners.spec import WorkloadSpec

# Steps profiled after the warm-up steps: enough for a median per op, few enough for a small trace.
DEFAULT_STEPS = 5
BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks", "blocks", "noise_refiner", "context_refiner")


class Ranges:
    """`record_function` ranges opened and closed from hooks: steps (callback to callback, as the timed
    runner counts them), stages (text encoders, VAE decode) and transformer blocks."""

    def __init__(self) -> None:
        self.step = 0
        self._open_step: Any = None
        self._pending = True  # the next transformer forward starts a step
        self.blocks: list[Any] = []

    @staticmethod
    def _enter(name: str) -> Any:
        from torch.autograd.profiler import record_function

        rf = record_function(name)
        rf.__enter__()
        return rf

    def transformer_pre(self, module: Any, args: tuple) -> None:
        if self._pending:
            self._open_step = self._enter(f"{STEP}{self.step}")
            self._pending = False

    def step_end(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        if self._open_step is not None:
            self._open_step.__exit__(None, None, None)
            self._open_step = None
        self.step += 1
        self._pending = True
        return callback_kwargs

    def wrap_block(self, name: str) -> tuple[Any, Any]:
        stack: list[Any] = []

        def pre(module: Any, args: tuple) -> None:
            stack.append(self._enter(f"{BLOCK}{name}"))

        def post(module: Any, args: tuple, output: Any) -> None:
            if stack:
                stack.pop().__exit__(None, None, None)

        return pre, post

    def wrap_stage(self, name: str, fn: Any) -> Any:
        def staged(*args: Any, **kwargs: Any) -> Any:
            rf = self._enter(f"{STAGE}{name}")
            try:
                return fn(*args, **kwargs)
            finally:
                rf.__exit__(None, None, None)

        return staged


def instrument(pipe: Any, ranges: Ranges, *, blocks: bool) -> list[str]:
    """Hooks for the ranges; returns the block names found. `blocks=False` (a compiled transformer) leaves the
    blocks unhooked: a hook inside a compiled graph would break it and change what is measured."""
    from runners.engines.diffusers_engine import TEXT_ENCODERS
    from runners.options import transformers_of

    names: list[str] = []
    for ti, t in enumerate(transformers_of(pipe)):
        t.register_forward_pre_hook(ranges.transformer_pre)
        if not blocks:
            continue
        prefix = "" if ti == 0 else f"t{ti + 1}."
        for attr in BLOCK_LISTS:
            mods = getattr(t, attr, None)
            if mods is None or not hasattr(mods, "__len__"):
                continue
            for i, blk in enumerate(mods):
                name = f"{prefix}{attr}.{i}"
                pre, post = ranges.wrap_block(name)
                blk.register_forward_pre_hook(pre)
                blk.register_forward_hook(post)
                names.append(name)
    for enc_name in TEXT_ENCODERS:
        enc = getattr(pipe, enc_name, None)
        if enc is not None and hasattr(enc, "forward"):
            enc.forward = ranges.wrap_stage("text_encode", enc.forward)
    pipe.vae.decode = ranges.wrap_stage("vae_decode", pipe.vae.decode)
    return names


def _torch_profiler(device: Device) -> Any:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    return profile(activities=activities, record_shapes=False, with_stack=False)


def _npu_profiler(out_dir: Path, wait: int, active: int) -> Any:
    """torch_npu.profiler (Ascend), per its published API: CPU + NPU activities, Level1 (operator and kernel
    details), text export, a schedule whose active window is the measured steps (kernel_details.csv then has a
    Step Id per kernel), written by tensorboard_trace_handler into out_dir."""
    import torch_npu

    p = torch_npu.profiler
    config = p._ExperimentalConfig(
        profiler_level=p.ProfilerLevel.Level1,
        aic_metrics=p.AiCMetrics.PipeUtilization,
        export_type=[p.ExportType.Text],
    )
    return p.profile(
        activities=[p.ProfilerActivity.CPU, p.ProfilerActivity.NPU],
        schedule=p.schedule(wait=wait, warmup=0, active=active, repeat=1),
        on_trace_ready=p.tensorboard_trace_handler(str(out_dir)),
        record_shapes=False,
        with_stack=False,
        experimental_config=config,
    )


def capture(
    spec: WorkloadSpec,
    scale: str,
    device: Device,
    *,
    trace: Path,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, Any]:
    """Build, warm up, profile one short generation; returns the aggregates (trace written to `trace`)."""
    import torch

    from runners.components import build_pipeline, import_classes
    from runners.engines.diffusers_engine import call_kwargs, shrink_edit_targets
    from runners.options import apply_attention, apply_cache, apply_compile
    from runners.profile_aggregate import from_npu_kernels, from_torch_events

    say = progress or (lambda msg: None)
    gen = spec.generation_at(scale)
    warm_gens, warm_steps = spec.warmup_at(scale)
    import_classes(spec, scale)
    shrink_edit_targets(spec, scale)
    say("profile: building pipeline")
    with torch.inference_mode():
        pipe, _weights = build_pipeline(spec, scale, device.torch_device, seed)
    pipe.set_progress_bar_config(disable=True)
    options = spec.options_at(scale)
    applied: dict[str, Any] = apply_attention(pipe, options, device.type)
    applied.update(apply_cache(pipe, options))
    applied.update(apply_compile(pipe, options, device.type))
    compiled = applied.get("compile", "none") != "none"
    ranges = Ranges()
    block_names = instrument(pipe, ranges, blocks=not compiled)
    total_steps = min(gen.num_inference_steps, warm_steps + steps)
    counted = list(range(min(warm_steps, total_steps - 1), total_steps))  # the steps the aggregates read

    with torch.inference_mode():
        for i in range(warm_gens):  # the timed runner's warm-up, unprofiled
            say(f"profile: warm-up generation {i + 1}/{warm_gens}")
            pipe(**call_kwargs(spec, scale, pipe, min(gen.num_inference_steps, max(2, warm_steps + 1))))
        device.synchronize()
        ranges.step = 0
        say(f"profile: profiled generation ({total_steps} steps, {len(counted)} counted)")
        kwargs = call_kwargs(spec, scale, pipe, total_steps)
        t0 = time.perf_counter()
        if device.type == "npu":
            with tempfile.TemporaryDirectory() as tmp:
                prof = _npu_profiler(Path(tmp), wait=counted[0], active=len(counted))

                def npu_step(p: Any, step: int, ts: Any, cb: dict) -> dict:
                    out = ranges.step_end(p, step, ts, cb)
                    prof.step()
                    return out

                with prof:
                    pipe(**kwargs, callback_on_step_end=npu_step)
                    device.synchronize()
                wall = time.perf_counter() - t0
                agg = from_npu_kernels(_npu_file(Path(tmp), "kernel_details.csv"), counted)
                _copy_trace(_npu_file(Path(tmp), "trace_view.json"), trace)
        else:
            prof = _torch_profiler(device)
            with prof:
                pipe(**kwargs, callback_on_step_end=ranges.step_end)
                device.synchronize()
            wall = time.perf_counter() - t0
            agg = from_torch_events(prof.events(), counted, device_time=device.type == "cuda")
            prof.export_chrome_trace(str(trace))
    agg.update(
        device=device.type,
        profiler="torch_npu.profiler" if device.type == "npu" else "torch.profiler",
        steps_profiled=total_steps,
        warmup_steps=len(range(total_steps)) - len(counted),
        blocks_instrumented=len(block_names),
        compiled=compiled,
        profiled_wall_s=round(wall, 3),
    )
    return agg


def _npu_file(root: Path, name: str) -> Path:
    found = sorted(root.rglob(f"ASCEND_PROFILER_OUTPUT/{name}"))
    if not found:
        raise RuntimeError(f"torch_npu.profiler wrote no {name} under {root}")
    return found[-1]


def _copy_trace(src: Path, dst: Path) -> None:
    if dst.name.endswith(".gz"):
        with open(src, "rb") as fin, gzip.open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    else:
        shutil.copyfile(src, dst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="runners.profile_capture")
    ap.add_argument("workload")
    ap.add_argument("--scale", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--trace", required=True)
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    def say(msg: str) -> None:
        print(f"progress: {msg}", file=sys.stderr, flush=True)

    try:
        import runners.device as device_mod

        pin = getattr(device_mod, "pin_cpu_threads", None)
        if args.device == "cpu" and pin is not None:  # the timed worker's CPU threads, set before torch loads
            pin()
        from runners.workloads import load_workload

        spec = load_workload(args.workload)
        out: dict[str, Any] = capture(
            spec, args.scale, Device(args.device), trace=Path(args.trace), steps=args.steps, seed=args.seed,
            progress=say,
        )  # fmt: skip
        rc = 0
    except BaseException as exc:  # the profile is an extra: its failure is recorded, never the run's
        print(traceback.format_exc(limit=8), file=sys.stderr, flush=True)
        out = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        rc = 1
    Path(args.out).write_text(json.dumps(out))
    return rc


if __name__ == "__main__":
    sys.exit(main())
