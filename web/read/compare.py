"""Two runs side by side: per workload x metric, each run's median, the change b / a - 1 with its 95% CI and a
verdict from the same judgement `guardrail compare` gives result files (run a as the one baseline run)."""

from __future__ import annotations

import math
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from guardrail.policy import BASELINES_DIR, Policy, load_lane_policy
from guardrail.store import models as m
from guardrail.verdicts import BaselineInfo, VerdictRow
from web.read.runs import run_detail

Sort = Literal["change", "name"]
Only = Literal["regressions", "changed"]
CHANGED = ("regression", "improvement")


def compare_runs(
    session: Session, a: int, b: int, *, sort: Sort = "change", only: Only | None = None
) -> dict[str, Any]:
    """Per workload x metric of either run: each run's median and verdict, b / a - 1 with a 95% CI from both runs'
    repeats, and whether b is better or worse in the metric's direction.

    The statistics are `guardrail compare`'s (guardrail.analysis.judgement.judge, under the lane policy of run b:
    its thresholds, alpha and false-discovery control), with run a as the only baseline run. One run a side
    cannot show the run-to-run noise, so the noise prior of each metric's kind applies and the CI is honest about
    it (wider than a check's against ten baseline runs).

    `sort`: "change" puts the worst change in each metric's direction first (regressions, then the rest by how much
    worse, improvements last); "name" by workload, metric. `only`: "regressions", or "changed" (regressions and
    improvements); the counts in `summary` are of every row either way."""
    # The statistics (scipy) load when two runs are first compared, not when a worker starts.
    from guardrail.analysis.judgement import SeriesInput, judge

    left, right = run_detail(session, a), run_detail(session, b)

    def index(d: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["workload"], x["metric"]): {**x, "status": r["status"]} for r in d["results"] for x in r["metrics"]}

    ia, ib = index(left), index(right)
    keys = sorted(set(ia) | set(ib))
    summary_of = _summary_series(session, {x["series_id"] for x in (*ia.values(), *ib.values())})
    lane = right["run"]["lane"]
    policy = load_lane_policy(lane) if (BASELINES_DIR / f"{lane}.yaml").is_file() else Policy(lane=lane)
    judged = [k for k in keys if _values(ia.get(k)) and _values(ib.get(k))]
    inputs = [
        SeriesInput(
            workload=k[0],
            metric=k[1],
            hardware=right["run"]["hardware"] or "",
            unit=ib[k]["unit"],
            direction=ib[k]["direction"],
            candidate=_values(ib[k]),
            baseline=[_values(ia[k])],
            history=[_values(ia[k])],
            summary=summary_of.get(ib[k]["series_id"], False),
            informational=k[1] in policy.informational,
            series_id=ib[k]["series_id"],
        )
        for k in judged
    ]
    doc = judge(inputs, policy, baseline=BaselineInfo(source=f"run {a}", runs=1)) if inputs else None
    verdicts: dict[tuple[str, str], VerdictRow] = {(v.workload, v.metric): v for v in (doc.verdicts if doc else [])}
    rows = []
    for key in keys:
        xa, xb = ia.get(key), ib.get(key)
        ma, mb = (xa or {}).get("median"), (xb or {}).get("median")
        either = xb if xb is not None else xa
        assert either is not None  # every key comes from one of the two runs
        v = verdicts.get(key)
        direction = either["direction"]
        change = v.change if v is not None else ((mb / ma - 1.0) if ma and mb is not None else None)
        rows.append(
            {
                "workload": key[0],
                "metric": key[1],
                "series_id": either["series_id"],
                "unit": either["unit"],
                "direction": direction,
                "a": ma,
                "b": mb,
                "verdict_a": (xa or {}).get("verdict"),
                "verdict_b": (xb or {}).get("verdict"),
                "change": change,
                "ci": list(v.ci) if v is not None and v.ci is not None else None,
                "verdict": v.verdict if v is not None else ("only_in_a" if xb is None else "only_in_b"),
                "threshold": v.threshold if v is not None else None,
                "explanation": v.explanation if v is not None else None,
                # +1: b is worse than a in the metric's direction, -1: better, 0: unchanged or unknown.
                "worse": _worse_sign(change, direction),
                "repeats": [len(_values(xa)), len(_values(xb))],
            }
        )
    counts = {k: sum(1 for r in rows if r["verdict"] == k) for k in sorted({r["verdict"] for r in rows})}
    if sort == "change":
        rows.sort(key=_by_change)
    if only == "regressions":
        rows = [r for r in rows if r["verdict"] == "regression"]
    elif only == "changed":
        rows = [r for r in rows if r["verdict"] in CHANGED]
    return {
        "schema": "guardrail.web.compare/v1",
        "a": left["run"],
        "b": right["run"],
        "policy": policy.lane,
        "same_hardware": left["run"]["hardware"] == right["run"]["hardware"],
        "sort": sort,
        "only": only,
        "summary": counts,
        "rows": rows,
    }


def _values(x: dict[str, Any] | None) -> list[list[float]]:
    """The repeats' finite samples (a stored infinity is no measurement), empty repeats left out."""
    reps = ([v for v in rep if math.isfinite(v)] for rep in (x or {}).get("repeats") or [])
    return [rep for rep in reps if rep]


def _worse_sign(change: float | None, direction: str) -> int:
    if not change:
        return 0
    worse = change if direction != "higher_is_better" else -change
    return 1 if worse > 0 else -1


def _by_change(r: dict[str, Any]) -> tuple[int, float, str, str]:
    rank = {"regression": 0, "improvement": 2}.get(r["verdict"], 1)
    c = r["change"]
    worse = 0.0 if c is None else (c if r["direction"] != "higher_is_better" else -c)
    # Worst first among regressions and the rest; the largest improvement first among improvements.
    return (rank, worse if rank == 2 else -worse, r["workload"], r["metric"])


def _summary_series(session: Session, ids: set[int]) -> dict[int, bool]:
    """Which of these series hold one per-run summary value per repeat (a mean or p99 over a benchmark)."""
    if not ids:
        return {}
    rows = session.execute(select(m.Series.id, m.Series.summary).where(m.Series.id.in_(sorted(ids))))
    return {sid: summary is not None for sid, summary in rows}
