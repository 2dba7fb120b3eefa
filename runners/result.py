"""One workload execution's result: the outputs of its fresh processes -> one `guardrail.result/v1`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from guardrail.ci_env import pr_details
from guardrail.schema import Environment, ErrorInfo, Metric, Result, RunInfo, Source, Status
from runners.measurements import CATALOGUE, WorkerFailure, WorkerOk
from runners.spec import WorkloadSpec, workload_of
from runners.telemetry import result_telemetry


def build_result(
    spec: WorkloadSpec,
    scale: str,
    lane: str,
    started: datetime,
    source: Source,
    env: Environment,
    runs: list[WorkerOk | WorkerFailure],
    walls: list[float],
    repeats: int,
    *,
    telemetry: list[dict[str, Any]] | None = None,
) -> Result:
    ok = [r for r in runs if isinstance(r, WorkerOk)]
    bad = [r for r in runs if isinstance(r, WorkerFailure)]
    weights = ok[0].weights_digest if ok else None
    if weights:  # local weights are part of what was measured: a change of them shows like a software change
        env = env.model_copy(update={"software": {**env.software, "model_weights": weights}})
    metrics = []
    if ok:
        # a metric every process measured; one repeat per process
        for name, info in CATALOGUE.items():
            if all(r.metrics.samples(name) for r in ok):
                repeats_ = [r.metrics.samples(name) for r in ok]
                metrics.append(Metric(name=name, unit=info.unit, direction=info.direction, repeats=repeats_))
    status: Status = "ok"
    error = None
    if bad:
        first = bad[0]
        status = "timeout" if first.status == "timeout" else "infra_error"
        error = ErrorInfo(
            kind=first.kind,
            message=f"{len(bad)} of {len(runs)} processes failed; first: {first.message}"[:4000],
        )
    extra: dict[str, Any] = {
        "scale": scale,
        "repeats_requested": repeats,
        "process_wall_s": [round(w, 3) for w in walls],
        "output_fingerprint": [r.fingerprint for r in ok],
        "applied": ok[0].applied if ok else None,
        "weights": ok[0].weights if ok else None,
        "weights_digest": weights,
        "warmup": [r.warmup.model_dump() for r in ok],
        "transformer_forward_ms_per_step": [r.forward_ms_per_step for r in ok],
        "outputs_per_generation": ok[0].outputs if ok else None,
    }
    if any(r.overhead is not None for r in ok):
        extra["overhead_check"] = [r.overhead for r in ok]
    if any(r.cache is not None for r in ok):  # cache-dit's counters per process: whether it cached at all
        extra["cache"] = [r.cache for r in ok]
    if any(r.compile is not None for r in ok):
        extra["compile"] = [r.compile for r in ok]
    if telemetry is not None:  # the device sampled beside each measured process (runners.telemetry)
        extra["telemetry"] = result_telemetry(telemetry)
    if source.pr and (pr := pr_details()):  # the PR's title and author, for the dashboard's PR list
        extra["pr"] = pr
    return Result(
        schema="guardrail.result/v1",
        run=RunInfo(lane=lane, started_at=started, source=source),
        environment=env,
        workload=workload_of(spec, scale),
        status=status,
        error=error,
        metrics=metrics,
        extra=extra,
    )
