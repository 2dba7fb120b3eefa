"""`guardrail compare`: the judgement of `check`, on result files, with no database.

A series is (workload digest, metric, hardware). Each baseline file is one baseline run (newest first by its
run's start, the policy's window of them compared against, its noise history of them for the noise); the
candidate files of one workload on one hardware are its looks and pool their repeats, as several results of a
workload in one run do in `check`. A series no baseline file has starts from its pinned reference value
(cold start) where the policy allows it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from guardrail.analysis.judgement import Repeats, SeriesInput, judge
from guardrail.errors import InputError
from guardrail.ingest.reference import load_reference_yaml
from guardrail.policy import ColdStart, Policy
from guardrail.rerun_policy.yaml_file import load_rerun_policy
from guardrail.schema import Metric, Result, load_result
from guardrail.verdicts import BaselineInfo, VerdictsDoc, WorkloadError

COLD_START = ColdStart(load_reference_yaml)

SeriesKey = tuple[str, str, str]  # workload digest, metric, hardware


def _errors(results: Sequence[Result]) -> list[WorkloadError]:
    return [
        WorkloadError(
            workload=r.workload.name,
            hardware=r.environment.hardware,
            status=r.status,
            kind=r.error.kind if r.error else None,
            message=r.error.message if r.error else None,
        )
        for r in results
        if r.status != "ok"
    ]


def compare_results(baseline: Sequence[Result], candidate: Sequence[Result], policy: Policy) -> VerdictsDoc:
    base_runs: dict[SeriesKey, list[Repeats]] = defaultdict(list)
    for r in sorted((r for r in baseline if r.status == "ok"), key=lambda r: r.run.started_at, reverse=True):
        for metric in r.metrics:
            base_runs[(r.workload.digest, metric.name, r.environment.hardware)].append(metric.repeats)
    looks: dict[tuple[str, str], int] = defaultdict(int)  # (workload digest, hardware) -> candidate results
    cand: dict[SeriesKey, tuple[Result, Metric, Repeats]] = {}
    for r in candidate:
        if r.status != "ok":
            continue
        looks[(r.workload.digest, r.environment.hardware)] += 1
        for metric in r.metrics:
            key = (r.workload.digest, metric.name, r.environment.hardware)
            cand.setdefault(key, (r, metric, []))[2].extend(metric.repeats)

    inputs: list[SeriesInput] = []
    used_references = False
    window, history_n = policy.baseline.window, policy.baseline.noise_history
    for key, (r, metric, repeats) in cand.items():
        runs = base_runs.get(key, [])[:history_n]
        reference = None
        if not runs:
            reference = COLD_START.value(
                policy, workload=r.workload.name, spec=r.workload.spec, metric=metric.name, hardware=key[2]
            )
        used_references |= reference is not None
        inputs.append(
            SeriesInput(
                workload=r.workload.name,
                metric=metric.name,
                hardware=key[2],
                unit=metric.unit,
                direction=metric.direction,
                candidate=repeats,
                baseline=runs[:window],
                history=runs,
                look=looks[(key[0], key[2])],
                informational=policy.is_informational(metric.name, r.environment.device_type),
                summary=metric.summary is not None,
                reference=reference,
            )
        )
    source = "files" + (f"; {ColdStart.NOTE}" if used_references else "")
    return judge(
        inputs,
        policy,
        errors=_errors(candidate),
        baseline=BaselineInfo(source=source, runs=len(baseline)),
        max_extra_repeats=load_rerun_policy().performance.max_extra_repeats,  # noisy: beyond the lane's repeats
    )


def compare_files(baseline: Sequence[Path], candidate: Sequence[Path], policy: Policy) -> VerdictsDoc:
    if not baseline or not candidate:
        raise InputError("give at least one --baseline and one --candidate file", field="--baseline/--candidate")
    return compare_results([load_result(p) for p in baseline], [load_result(p) for p in candidate], policy)
