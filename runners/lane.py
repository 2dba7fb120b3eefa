"""Run a lane: validate every selected workload first, then run each one as N fresh processes and
write one `guardrail.result/v1` file per workload execution."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from guardrail import clock
from guardrail.errors import InputError
from guardrail.schema import Environment, ErrorInfo, Metric, Result, RunInfo, Source, Workload
from runners.spec import SCALES, WorkloadSpec, digest, effective_spec, select

UNITS = {
    "denoise_step_latency": "ms",
    "e2e_latency": "ms",
    "text_encode_latency": "ms",
    "denoise_latency": "ms",
    "vae_decode_latency": "ms",
    "peak_memory": "MiB",
    "reserved_memory": "MiB",
    "load_time": "s",
    "warmup_time": "s",
    "compile_time": "s",
    "throughput": "outputs/s",
}
HIGHER_IS_BETTER = {"throughput"}


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
) -> tuple[dict[str, Any], float]:
    """Run one worker; returns (its JSON, or a synthesised error, wall seconds)."""
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
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)

        def pump() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                logf.write(raw)
                logf.flush()
                if raw.startswith("progress: "):
                    on_line(raw[len("progress: ") :].strip())

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's own process group only
            proc.wait()
        reader.join(timeout=5)
    wall = time.perf_counter() - t0
    try:
        if timed_out:
            return {
                "status": "timeout",
                "kind": "timeout",
                "message": f"no result within the workload's timeout of {timeout_s:g} s",
            }, wall
        try:
            data = json.loads(out_json.read_text())
        except (OSError, ValueError):
            data = None
        if not data:
            rc = proc.returncode
            why = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
            return {
                "status": "error",
                "kind": "crash",
                "message": f"worker died without a result ({why}); see {log}",
            }, wall
        return data, wall
    finally:
        out_json.unlink(missing_ok=True)


def environment(device: str) -> Environment:
    from runners.device import Device
    from runners.fingerprint import environment_extra, software

    d = Device(device)
    sw = software(d)
    return Environment(
        hardware=sw["device_model"] or device,
        device_type=device,
        device_count=d.count(),
        software=sw,
        extra=environment_extra(d),
    )


def build_result(
    spec: WorkloadSpec,
    scale: str,
    lane: str,
    started: datetime,
    source: Source,
    env: Environment,
    runs: list[dict[str, Any]],
    walls: list[float],
    repeats: int,
) -> Result:
    eff = effective_spec(spec, scale)
    ok = [r for r in runs if r.get("status") == "ok"]
    bad = [r for r in runs if r.get("status") != "ok"]
    weights = ok[0].get("weights_digest") if ok else None
    if weights:  # local weights are part of what was measured: a change of them shows like a software change
        env = env.model_copy(update={"software": {**env.software, "model_weights": weights}})
    metrics = []
    if ok:
        names = [m for m in UNITS if all(m in r["metrics"] and r["metrics"][m] for r in ok)]
        for name in names:
            metrics.append(
                Metric(
                    name=name,
                    unit=UNITS[name],
                    direction="higher_is_better" if name in HIGHER_IS_BETTER else "lower_is_better",
                    repeats=[[float(x) for x in r["metrics"][name]] for r in ok],
                )
            )
    status, error = "ok", None
    if bad:
        first = bad[0]
        status = "timeout" if first.get("status") == "timeout" else "infra_error"
        error = ErrorInfo(
            kind=first.get("kind", "exception"),
            message=f"{len(bad)} of {len(runs)} processes failed; first: {first.get('message', '')}"[:4000],
        )
    extra: dict[str, Any] = {
        "scale": scale,
        "repeats_requested": repeats,
        "process_wall_s": [round(w, 3) for w in walls],
        "output_fingerprint": [r.get("fingerprint") for r in ok],
        "applied": ok[0].get("applied") if ok else None,
        "weights": ok[0].get("weights") if ok else None,
        "weights_digest": weights,
        "warmup": [r.get("warmup") for r in ok],
        "transformer_forward_ms_per_step": [r.get("forward_ms_per_step") for r in ok],
        "outputs_per_generation": ok[0].get("outputs") if ok else None,
    }
    if any("overhead" in r for r in ok):
        extra["overhead_check"] = [r.get("overhead") for r in ok]
    return Result(
        schema="guardrail.result/v1",
        run=RunInfo(lane=lane, started_at=started, source=source),
        environment=env,
        workload=Workload(name=spec.name, family=spec.family, digest=digest(eff), spec=eff),
        status=status,
        error=error,
        metrics=metrics,
        extra=extra,
    )


def run_lane(
    lane: str,
    *,
    names: list[str] | None = None,
    device: str = "auto",
    scale: str = "tiny",
    repeats: int | None = None,
    out_dir: str | Path,
    progress: bool = True,
    source: Source | None = None,
    workloads_dir: str | Path | None = None,
) -> list[Path]:
    """Run the lane's workloads; returns the result files written (one per workload execution).

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
    for wi, (path, spec) in enumerate(chosen, 1):
        if spec.engine == "command":
            from runners.engines import command

            with ui.status(f"[{wi}/{len(chosen)}] {spec.name}: {' '.join(spec.command.argv)[:80]}"):
                files = command.run(spec, lane, source, out, hardware=env.hardware if env else None)
            ui.line(f"[{wi}/{len(chosen)}] {spec.name}: {len(files)} result file(s)")
            written.extend(files)
            continue
        assert env is not None
        n = repeats or spec.repeats_for(lane)
        started = clock.now()
        runs, walls = [], []
        for i in range(n):
            label = f"[{wi}/{len(chosen)}] {spec.name} process {i + 1}/{n}"
            with ui.status(label) as st:

                def on_line(msg: str, _st: Any = st, _label: str = label) -> None:
                    if _st is not None:
                        _st.update(f"{_label}: {msg}")

                log = out / "logs" / f"{spec.name}.{i + 1}.log"
                data, wall = _run_process(path, scale, dev, spec.timeout_s, log, on_line, seed=0)
            runs.append(data)
            walls.append(wall)
            ui.line(
                f"{label}: {data.get('status')} in {wall:.1f} s"
                + (f" ({data.get('kind')}: {data.get('message', '')[:200]})" if data.get("status") != "ok" else "")
            )
            if data.get("status") == "timeout":
                break  # the next process would time out the same way; the lane moves on
        result = build_result(spec, scale, lane, lane_started, source, env, runs, walls, n)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        f = out / f"{spec.name}.{scale}.{dev}.{stamp}.json"
        f.write_text(result.to_json())
        written.append(f)
    return written
