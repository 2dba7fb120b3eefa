"""External-command engine: run a benchmark command (e.g. vLLM-Omni's diffusion serving benchmark
against a running server) and read the file it writes through an adapter.

The command runs in a fresh working directory under the output directory; its output file is adapted
into `guardrail.result/v1` results (guardrail.adapters), which are written next to the others.
A command that fails or runs past the workload's timeout becomes an infra_error / timeout result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from guardrail import clock
from guardrail.adapters import AdaptDefaults, adapt
from guardrail.ci_env import pr_details
from guardrail.schema import Environment, ErrorInfo, Result, RunInfo, Source, Status
from runners.spec import WorkloadSpec, workload_of

# (status, error kind, message) of a command that produced no result file
Failure = tuple[Status, str, str]


def _failure(
    spec: WorkloadSpec,
    lane: str,
    started: datetime,
    source: Source,
    failure: Failure,
    extra: dict[str, Any],
) -> Result:
    status, kind, message = failure
    return Result(
        schema="guardrail.result/v1",
        run=RunInfo(lane=lane, started_at=started, source=source),
        # the command never said what it ran on; "external" keeps the failure out of any device series
        environment=Environment(hardware="external", device_type="external"),
        workload=workload_of(spec, "full"),
        status=status,
        error=ErrorInfo(kind=kind, message=message[:4000]),
        extra=extra,
    )


def run(spec: WorkloadSpec, lane: str, source: Source, out_dir: Path, hardware: str | None = None) -> list[Path]:
    assert spec.command is not None
    cmd = spec.command
    started = clock.now()
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    work = out_dir / "work" / f"{spec.name}.{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    log = out_dir / "logs" / f"{spec.name}.command.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"engine": "command", "argv": cmd.argv, "adapter": cmd.adapter, "log": str(log)}
    t0 = time.perf_counter()
    status: Failure | None = None
    with open(log, "w") as logf:
        proc = subprocess.Popen(
            cmd.argv,
            cwd=work,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, **cmd.env},
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=spec.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the command's own process group only
            proc.wait()
            status = ("timeout", "timeout", f"command ran past the workload's timeout of {spec.timeout_s:g} s")
    extra["wall_s"] = round(time.perf_counter() - t0, 3)
    out_file = work / cmd.output
    if status is None and rc != 0:
        status = ("infra_error", "command_failed", f"command exited with {rc}; see {log}")
    if status is None and not out_file.is_file():
        status = ("infra_error", "no_output", f"command exited 0 but wrote no {cmd.output}")
    results: list[Result]
    if status is not None:
        results = [_failure(spec, lane, started, source, status, extra)]
    else:
        data = json.loads(out_file.read_text())
        adapted = adapt(
            out_file, cmd.adapter, data, defaults=AdaptDefaults(lane=lane, hardware=hardware, source=source)
        )
        pr = {"pr": details} if source.pr and (details := pr_details()) else {}
        results = [r.model_copy(update={"extra": {**r.extra, "command": extra, **pr}}) for r in adapted]
    if out_file.is_file():
        # Kept for a person to read, under a name `guardrail ingest OUT/` does not pick up: ingested as it is, the
        # command's own file would be stored beside the results adapted from it (twice the same measurement).
        out_file.rename(out_file.with_name(out_file.name + ".raw"))
    written = []
    for i, r in enumerate(results):
        f = out_dir / f"{spec.name}.{i}.{stamp}.json"
        f.write_text(r.to_json())
        written.append(f)
    return written
