"""Run a lane: validate every selected workload first, then run each one as N fresh processes and
write one `guardrail.result/v1` file per workload execution."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from guardrail import clock
from guardrail.errors import InputError
from guardrail.schema import Source
from runners.fingerprint import environment
from runners.measurements import WORKER_OUTPUT, WorkerFailure, WorkerOk
from runners.process import run_logged
from runners.result import build_result
from runners.spec import SCALES
from runners.telemetry import Sampler, physical_index
from runners.workloads import select


class _Progress:
    """One status line per running process on stderr (rich), with the worker's last progress line."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._console = None
        if enabled:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)

    def line(self, msg: str) -> None:
        if self._console is not None:
            self._console.print(msg, markup=False)

    def status(self, msg: str):
        if self._console is None:
            import contextlib

            return contextlib.nullcontext()
        return self._console.status(msg)


def _run_process(
    path: Path, scale: str, device: str, timeout_s: float, log: Path, on_line: Any, seed: int
) -> tuple[WorkerOk | WorkerFailure, float]:
    """Run one worker; returns (its output, or a synthesised failure, wall seconds)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
        out_json = Path(tf.name)
    cmd = [
        sys.executable,
        "-m",
        "runners.worker",
        str(path),
        "--scale",
        scale,
        "--device",
        device,
        "--out",
        str(out_json),
        "--seed",
        str(seed),
    ]
    done = run_logged(cmd, log, timeout_s=timeout_s, on_line=on_line)  # SIGKILL past the timeout
    timed_out, wall = done.timed_out, done.wall_s
    try:
        if timed_out:
            message = f"no result within the workload's timeout of {timeout_s:g} s"
            return WorkerFailure(status="timeout", kind="timeout", message=message), wall
        try:
            return WORKER_OUTPUT.validate_json(out_json.read_bytes()), wall
        except (OSError, ValidationError):  # nothing written, or cut short: the worker died on its way
            rc = done.returncode
            why = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
            message = f"worker died without a result ({why}); see {log}"
            return WorkerFailure(status="error", kind="crash", message=message), wall
    finally:
        out_json.unlink(missing_ok=True)


def run_lane(
    lane: str,
    *,
    names: list[str] | None = None,
    device: str = "auto",
    scale: str = "tiny",
    repeats: int | None = None,
    planned_repeats: dict[tuple[str, str], int] | None = None,
    out_dir: str | Path,
    progress: bool = True,
    source: Source | None = None,
    workloads_dir: str | Path | None = None,
    profile: bool = False,
    oversubscribe: bool = False,
) -> list[Path]:
    """Run the lane's workloads; returns the result files written (one per workload execution).

    `planned_repeats`: (workload, hardware) -> repeats (`guardrail plan-repeats`), used where `repeats` is None.
    `profile`: after a workload's timed repeats, one more fresh process profiles it (runners.profile_run); its
    aggregates go into the result's `extra.profile`, its trace beside the result file.
    `oversubscribe` (cpu only): a parallel job may start more ranks than cores (runners.parallel.device_slots);
    such a job's result validates the picture and carries no scaling metrics.

    Bad input (unknown lane/workload, invalid spec, --device npu without torch_npu) raises InputError
    before anything runs. A workload that fails still gets a result file (infra_error / timeout).
    """
    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}", field="--scale")
    if repeats is not None and repeats < 1:
        raise InputError("must be at least 1", field="--repeats")
    chosen = select(lane, names, workloads_dir)
    from runners.device import resolve

    needs_device = any(spec.engine == "diffusers" for _, spec in chosen)
    dev = resolve(device) if needs_device else device
    if oversubscribe and dev != "cpu":
        raise InputError(f"ranks share cores on cpu only; this run's device is {dev}", field="--oversubscribe")
    from runners.options import check_attention, check_cache
    from runners.parallel import check_workload

    for path, spec in chosen:  # a workload that cannot run here is refused before anything runs
        check_workload(path, spec, scale, dev, oversubscribe=oversubscribe)
        if spec.engine == "diffusers":
            check_attention(path, spec.options_at(scale), dev, scale)
            comps = spec.components_at(scale)
            transformer = comps["transformer"].config if "transformer" in comps else {}
            check_cache(path, spec.options_at(scale), transformer, scale)
    if source is None:
        from guardrail.ci_env import source_from_env

        source = source_from_env()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    env = environment(dev) if needs_device else None
    ui = _Progress(progress)
    ui.line(f"lane {lane}: {len(chosen)} workload(s) on {dev} ({env.hardware if env else 'external'}), scale {scale}")
    written = []
    # One invocation is one run: every result carries the lane's start time, so that without a CI run id the
    # store still groups them (guardrail.store.writer.run_key).
    lane_started = clock.now()
    served: set[str] = set()  # vllm-omni-serve workloads already run with their case's server
    for wi, (path, spec) in enumerate(chosen, 1):
        if spec.engine == "command":
            from runners.engines import command

            assert spec.command is not None  # the spec requires it for this engine
            with ui.status(f"[{wi}/{len(chosen)}] {spec.name}: {' '.join(spec.command.argv)[:80]}"):
                files = command.run(spec, lane, source, out, hardware=env.hardware if env else None)
            ui.line(f"[{wi}/{len(chosen)}] {spec.name}: {len(files)} result file(s)")
            written.extend(files)
            continue
        if spec.engine == "vllm-omni-serve":
            from runners.engines import vllm_omni_serve

            if spec.name in served:
                continue  # ran with an earlier workload of its case, against the same server
            key = vllm_omni_serve.server_key(spec)
            group = [s for _, s in chosen if s.engine == spec.engine and vllm_omni_serve.server_key(s) == key]
            served.update(s.name for s in group)
            assert spec.vllm_omni is not None  # the spec requires it for this engine
            label = f"[{wi}/{len(chosen)}] {spec.name}: vllm serve {spec.vllm_omni.model} --omni"
            with ui.status(label + (f" (shared by {len(group)} workloads)" if len(group) > 1 else "")):
                files = vllm_omni_serve.run_group(
                    group, lane, source, out, hardware=env.hardware if env else None, lane_started=lane_started
                )
            ui.line(f"{label}: {len(files)} result file(s)")
            written.extend(files)
            continue
        assert env is not None
        # --repeats wins; else the stored history's plan for this workload on this hardware; else its file's.
        n = repeats or (planned_repeats or {}).get((spec.name, env.hardware)) or spec.repeats_for(lane)
        if spec.parallel is not None:  # one torch.distributed job per repeat (runners.launch)
            from runners.launch import run_workload
            from runners.parallel import oversubscribed

            shared = f", ranks sharing {os.cpu_count()} cores" if oversubscribed(spec.parallel.world, dev) else ""
            label = f"[{wi}/{len(chosen)}] {spec.name} (parallel, world {spec.parallel.world}{shared})"
            written.append(
                run_workload(
                    path,
                    spec,
                    scale=scale,
                    device=dev,
                    lane=lane,
                    lane_started=lane_started,
                    source=source,
                    env=env,
                    repeats=n,
                    out=out,
                    ui=ui,
                    label=label,
                )
            )
            continue
        started = clock.now()
        runs: list[WorkerOk | WorkerFailure] = []
        walls: list[float] = []
        telemetry: list[dict[str, Any]] = []
        for i in range(n):
            label = f"[{wi}/{len(chosen)}] {spec.name} process {i + 1}/{n}"
            with ui.status(label) as st:

                def on_line(msg: str, _st: Any = st, _label: str = label) -> None:
                    if _st is not None:
                        _st.update(f"{_label}: {msg}")

                log = out / "logs" / f"{spec.name}.{i + 1}.log"
                with Sampler(dev, physical_index(dev)) as tel:  # the device, sampled from here while it runs
                    data, wall = _run_process(path, scale, dev, spec.timeout_s, log, on_line, seed=0)
            runs.append(data)
            telemetry.append(tel.summary)
            walls.append(wall)
            why = f" ({data.kind}: {data.message[:200]})" if isinstance(data, WorkerFailure) else ""
            ui.line(f"{label}: {data.status} in {wall:.1f} s{why}")
            if data.status == "timeout":
                break  # the next process would time out the same way; the lane moves on
        result = build_result(spec, scale, lane, lane_started, source, env, runs, walls, n, telemetry=telemetry)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        f = out / f"{spec.name}.{scale}.{dev}.{stamp}.json"
        if profile and result.status == "ok":  # never among the timed repeats: its own process, after them
            from runners.profile_run import profile_workload

            result = profile_workload(path, spec, result, scale=scale, device=dev, result_file=f, ui=ui)
        f.write_text(result.to_json())
        written.append(f)
    return written
