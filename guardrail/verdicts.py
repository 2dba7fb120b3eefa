"""The verdicts document (`guardrail.verdicts/v1`): built from the analysis layer's comparisons, printed by
`check`/`compare`, stored with a check, rendered into PR comments and the dashboard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from guardrail.schema import VERDICTS_SCHEMA

VERDICTS = ("regression", "improvement", "no_change", "inconclusive", "noisy", "missing")
# What blocks a merge: a real regression, or no baseline at all (fail closed, never a silent pass).
BLOCKING = ("regression", "missing")


@dataclass(frozen=True)
class SeriesJudged:
    """One workload x metric x hardware with its comparison (a MetricComparison of guardrail.analysis)."""

    workload: str
    metric: str
    hardware: str
    unit: str
    direction: str
    comparison: Any
    informational: bool = False
    series_id: int | None = None
    summary: bool = False  # values are per-run summaries (one sample per run), not per-process samples


def apply_fdr(judged: Sequence[SeriesJudged], fdr: float) -> tuple[list[SeriesJudged], Any]:
    """False-discovery control across the gating metrics of one check; informational ones are left as they are."""
    from guardrail.analysis.fdr import judge_check

    gating = [j for j in judged if not j.informational]
    judgement = judge_check([j.comparison for j in gating], fdr=fdr)
    adjusted = {id(j): c for j, c in zip(gating, judgement.comparisons, strict=True)}
    return [replace(j, comparison=adjusted.get(id(j), j.comparison)) for j in judged], judgement


def _round(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(float(x), nd)


def verdict_entry(s: SeriesJudged) -> dict[str, Any]:
    c = s.comparison
    return {
        "workload": s.workload,
        "metric": s.metric,
        "hardware": s.hardware,
        "unit": s.unit,
        "direction": s.direction,
        "verdict": c.verdict,
        "change": _round(c.change),
        "ci": [_round(c.ci[0]), _round(c.ci[1])] if c.ci else None,
        "p_value": None if c.p_value is None else float(f"{c.p_value:.4g}"),
        "q_value": None if c.q_value is None else float(f"{c.q_value:.4g}"),
        "threshold": c.threshold,
        "repeats_needed": c.repeats_needed,
        "baseline": {"runs": c.baseline_runs, "median": _round(c.baseline_median)},
        "candidate": {"repeats": c.candidate_repeats, "median": _round(c.candidate_median)},
        "informational": s.informational,
        "summary": s.summary,
        "series_id": s.series_id,
        "explanation": c.explanation,
    }


def status_of(verdicts: Sequence[dict[str, Any]], errors: Sequence[dict[str, Any]]) -> str:
    gating = [v for v in verdicts if not v.get("informational")]
    if any(v["verdict"] in BLOCKING for v in gating):
        return "failure"
    if errors:
        return "error"
    return "success"


def build_doc(
    judged: Sequence[SeriesJudged],
    *,
    expected_false_alarms: float,
    method: str,
    run: dict[str, Any] | None = None,
    errors: Sequence[dict[str, Any]] = (),
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    verdicts = [verdict_entry(s) for s in judged]
    summary = Counter({v: 0 for v in VERDICTS})
    summary.update(v["verdict"] for v in verdicts if not v["informational"])
    return {
        "schema": VERDICTS_SCHEMA,
        "run": run,
        "baseline": baseline,
        "verdicts": verdicts,
        "errors": list(errors),
        "summary": dict(summary),
        "expected_false_alarms": round(expected_false_alarms, 4),
        "fdr_method": method,
        "status": status_of(verdicts, errors),
    }


def exit_code(doc: dict[str, Any]) -> int:
    """0 nothing blocking; 1 a regression or a missing baseline; 3 only infrastructure errors."""
    return {"success": 0, "failure": 1, "error": 3}[doc["status"]]


def render_text(doc: dict[str, Any]) -> str:
    """A terminal report: what blocks first, then everything else in one aligned table."""
    order = {v: i for i, v in enumerate(("regression", "missing", "noisy", "inconclusive", "improvement", "no_change"))}
    rows = sorted(doc["verdicts"], key=lambda v: (v["informational"], order[v["verdict"]], v["workload"], v["metric"]))
    lines = []
    run = doc.get("run") or {}
    head = {"success": "PASS", "failure": "FAIL", "error": "ERROR"}[doc["status"]]
    where = f" run {run['id']} ({run.get('lane')}, {', '.join(run.get('hardware') or [])})" if run.get("id") else ""
    s = doc["summary"]
    lines.append(
        f"{head}{where}: "
        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in s.items() if n)
        + f"; expected false alarms {doc['expected_false_alarms']:.2f}"
    )
    if rows:
        w_wl = max(len(v["workload"]) for v in rows)
        w_m = max(len(v["metric"]) for v in rows)
        for v in rows:
            flag = "(info) " if v["informational"] else ""
            lines.append(
                f"  {v['verdict']:<12} {v['workload']:<{w_wl}}  {v['metric']:<{w_m}}  {v['hardware']}  "
                f"{flag}{v['explanation']}"
            )
    for e in doc.get("errors", []):
        lines.append(f"  {e['status']:<12} {e['workload']}: {e.get('kind') or ''} {e.get('message') or ''}".rstrip())
    return "\n".join(lines)
