"""`guardrail compare`: the same statistics as `check`, on result files, with no database.

Each baseline file is one baseline run; candidate files of the same series pool their repeats.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guardrail.analysis.compare import compare_metric
from guardrail.errors import InputError
from guardrail.policy import Policy
from guardrail.schema import Result, load_result
from guardrail.verdicts import SeriesJudged, apply_fdr, build_doc

SeriesKey = tuple[str, str, str]  # workload digest, metric, hardware


def _errors(results: Sequence[Result]) -> list[dict[str, Any]]:
    return [
        {
            "workload": r.workload.name,
            "hardware": r.environment.hardware,
            "status": r.status,
            "kind": r.error.kind if r.error else None,
            "message": r.error.message if r.error else None,
        }
        for r in results
        if r.status != "ok"
    ]


def compare_results(baseline: Sequence[Result], candidate: Sequence[Result], policy: Policy) -> dict[str, Any]:
    base_runs: dict[SeriesKey, list[list[list[float]]]] = defaultdict(list)
    for r in baseline:
        if r.status != "ok":
            continue
        for metric in r.metrics:
            base_runs[(r.workload.digest, metric.name, r.environment.hardware)].append(metric.repeats)
    cand: dict[SeriesKey, dict[str, Any]] = {}
    for r in candidate:
        if r.status != "ok":
            continue
        for metric in r.metrics:
            key = (r.workload.digest, metric.name, r.environment.hardware)
            entry = cand.setdefault(key, {"result": r, "metric": metric, "repeats": []})
            entry["repeats"].extend(metric.repeats)
    judged = []
    for key, entry in cand.items():
        metric, r = entry["metric"], entry["result"]
        comparison = compare_metric(
            base_runs.get(key, []),
            entry["repeats"],
            direction=metric.direction,
            threshold=policy.threshold(metric.name),
            summary=metric.summary is not None,
            alpha=policy.alpha,
        )
        judged.append(
            SeriesJudged(
                r.workload.name,
                metric.name,
                r.environment.hardware,
                metric.unit,
                metric.direction,
                comparison,
                metric.name in policy.informational,
            )
        )
    judged, judgement = apply_fdr(judged, policy.fdr)
    return build_doc(
        judged,
        expected_false_alarms=judgement.expected_false_alarms,
        method=judgement.method,
        errors=_errors(candidate),
        baseline={"source": "files", "runs": len(baseline)},
    )


def compare_files(baseline: Sequence[Path], candidate: Sequence[Path], policy: Policy) -> dict[str, Any]:
    if not baseline or not candidate:
        raise InputError("give at least one --baseline and one --candidate file", field="--baseline/--candidate")
    return compare_results([load_result(p) for p in baseline], [load_result(p) for p in candidate], policy)
