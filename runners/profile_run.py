"""The lane's side of `guardrail run --profile`: one more fresh process after a workload's timed repeats
(runners.profile_capture), its aggregates put into the result's `extra.profile` and its chrome trace written
beside the result file, named there by a relative path. A profile that fails is recorded as
`extra.profile.error`; the timed result stands either way."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from guardrail.schema import Result
from runners.process import run_logged
from runners.spec import WorkloadSpec


def trace_path(result_file: Path) -> Path:
    """`<result>.json` -> `<result>.trace.json.gz`, beside it."""
    return result_file.with_name(result_file.name.removesuffix(".json") + ".trace.json.gz")


def profile_workload(
    path: Path,
    spec: WorkloadSpec,
    result: Result,
    *,
    scale: str,
    device: str,
    result_file: Path,
    ui: Any = None,
    steps: int | None = None,
) -> Result:
    """Run the profiled process for one workload; returns the result with `extra.profile` set."""
    trace = trace_path(result_file)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
        out_json = Path(tf.name)
    cmd = [sys.executable, "-m", "runners.profile_capture", str(path), "--scale", scale, "--device", device,
           "--out", str(out_json), "--trace", str(trace)]  # fmt: skip
    if steps is not None:
        cmd += ["--steps", str(steps)]
    log = result_file.parent / "logs" / f"{spec.name}.profile.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    label = f"{spec.name} profile"
    status = ui.status(label) if ui is not None else None
    try:
        if status is not None:
            with status as st:

                def on_line(msg: str) -> None:
                    if st is not None:
                        st.update(f"{label}: {msg}")

                done = run_logged(cmd, log, timeout_s=spec.timeout_s, on_line=on_line)
        else:
            done = run_logged(cmd, log, timeout_s=spec.timeout_s)
        try:
            profile: dict[str, Any] = json.loads(out_json.read_text())
        except (OSError, ValueError):
            why = "timed out" if done.timed_out else f"exit code {done.returncode}"
            profile = {"error": f"profiler process left no aggregates ({why}); see {log}"}
    finally:
        out_json.unlink(missing_ok=True)
    if "error" not in profile and trace.exists():
        profile["trace"] = trace.name  # relative to the result file's directory
        profile["trace_bytes"] = trace.stat().st_size
    profile["process_wall_s"] = round(done.wall_s, 3)
    if ui is not None:
        what = f"failed: {profile['error'][:200]}" if "error" in profile else "ok"
        ui.line(f"{label}: {what} in {done.wall_s:.1f} s")
    return result.model_copy(update={"extra": {**result.extra, "profile": profile}})
