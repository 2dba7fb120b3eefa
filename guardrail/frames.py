"""Data out for notebooks: the store's series, runs, verdicts and alerts as pandas DataFrames (docs/frames.md).

Each function takes a store URL (the same `--db` the CLI takes) and returns one DataFrame whose columns are fixed
(an empty result still has them), so a notebook's code does not break on a quiet store. Reads only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, case, func, select

from guardrail.store import models as m
from guardrail.store.db import session_scope

if TYPE_CHECKING:  # pandas loads on first use: the CLI's other commands need none of it
    import pandas as pd

SERIES_COLUMNS = [
    "time", "run_id", "result_id", "series_id", "commit", "lane", "branch", "pr", "hardware",
    "workload", "metric", "unit", "direction", "value", "minimum", "maximum", "repeats",
]  # fmt: skip
RUNS_COLUMNS = [
    "run_id", "time", "commit", "lane", "branch", "pr", "hardware", "base_commit", "ci_provider",
    "ci_run_id", "ci_attempt", "ci_url", "results", "failed_results",
]  # fmt: skip
VERDICTS_COLUMNS = [
    "check_id", "run_id", "time", "policy", "check_status", "series_id", "workload", "metric", "hardware",
    "verdict", "change", "ci_low", "ci_high", "p_value", "q_value", "threshold", "baseline_runs",
    "baseline_median", "candidate_repeats", "candidate_median", "repeats_needed", "explanation",
]  # fmt: skip
ALERTS_COLUMNS = [
    "alert_id", "kind", "state", "workload", "hardware", "lane", "metrics", "change", "from_commit",
    "to_commit", "run_id", "note", "issue_url", "created_at", "updated_at", "resolved_at",
]  # fmt: skip


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows, columns=columns)
    for col in ("time", "created_at", "updated_at", "resolved_at"):
        if col in df.columns:
            df[col] = pd.to_datetime(df[col], utc=True)
    # Nullable integers: a run without a PR keeps pr an integer column (<NA>), not float64 with NaN.
    for col in ("pr", "ci_attempt", "run_id", "series_id", "repeats_needed"):
        if col in df.columns:
            df[col] = df[col].astype("Int64")
    return df


def _run_filters(q: Select, *, lane: str | None, hardware: str | None, branch: str | None, pr: int | None) -> Select:
    if lane:
        q = q.where(m.Run.lane == lane)
    if hardware:
        q = q.where(m.Run.hardware == hardware)
    if branch:
        q = q.where(m.Run.branch == branch)
    if pr is not None:
        q = q.where(m.Run.pr == pr)
    return q


def series(
    db: str,
    *,
    workload: str | None = None,
    metric: str | None = None,
    hardware: str | None = None,
    lane: str | None = None,
    branch: str | None = None,
    series_id: int | None = None,
) -> pd.DataFrame:
    """One row per result and metric, oldest first: the value the history uses (the median of the repeats'
    medians), the smallest and largest repeat median, and how many repeats (fresh processes) there were.
    Only results whose status is `ok`, as on the series pages."""
    q = (
        select(
            m.Run.started_at.label("time"),
            m.Run.id.label("run_id"),
            m.Result.id.label("result_id"),
            m.Series.id.label("series_id"),
            m.Commit.sha.label("commit"),
            m.Run.lane,
            m.Run.branch,
            m.Run.pr,
            m.Series.hardware,
            m.Workload.name.label("workload"),
            m.Series.metric,
            m.Series.unit,
            m.Series.direction,
            m.Measurement.median,
        )
        .join(m.Series, m.Measurement.series_id == m.Series.id)
        .join(m.Workload, m.Series.workload_id == m.Workload.id)
        .join(m.Result, m.Measurement.result_id == m.Result.id)
        .join(m.Run, m.Result.run_id == m.Run.id)
        .outerjoin(m.Commit, m.Run.commit_id == m.Commit.id)
        .where(m.Result.status == "ok")
    )
    if workload:
        q = q.where(m.Workload.name == workload)
    if metric:
        q = q.where(m.Series.metric == metric)
    if hardware:
        q = q.where(m.Series.hardware == hardware)
    if series_id is not None:
        q = q.where(m.Series.id == series_id)
    q = _run_filters(q, lane=lane, hardware=None, branch=branch, pr=None)
    grouped: dict[tuple[int, int], dict[str, Any]] = {}
    with session_scope(db) as s:
        for row in s.execute(q.order_by(m.Run.started_at, m.Result.id, m.Series.id, m.Measurement.repeat_index)):
            d = row._asdict()
            median = d.pop("median")
            key = (d["result_id"], d["series_id"])
            grouped.setdefault(key, {**d, "medians": []})["medians"].append(median)
    import numpy as np

    rows = []
    for d in grouped.values():
        vals = d.pop("medians")
        value = float(np.median(vals))
        rows.append({**d, "value": value, "minimum": min(vals), "maximum": max(vals), "repeats": len(vals)})
    return _frame(rows, SERIES_COLUMNS)


def runs(
    db: str,
    *,
    lane: str | None = None,
    hardware: str | None = None,
    branch: str | None = None,
    pr: int | None = None,
) -> pd.DataFrame:
    """One row per run, newest first, with how many results it stored and how many of them did not finish `ok`."""
    counts = (
        select(
            m.Result.run_id,
            func.count().label("results"),
            func.sum(case((m.Result.status != "ok", 1), else_=0)).label("failed"),
        )
        .group_by(m.Result.run_id)
        .subquery()
    )
    q = (
        select(m.Run, m.Commit.sha, counts.c.results, counts.c.failed)
        .outerjoin(m.Commit, m.Run.commit_id == m.Commit.id)
        .outerjoin(counts, counts.c.run_id == m.Run.id)
    )
    q = _run_filters(q, lane=lane, hardware=hardware, branch=branch, pr=pr)
    rows = []
    with session_scope(db) as s:
        for run, sha, n, failed in s.execute(q.order_by(m.Run.started_at.desc(), m.Run.id.desc())):
            rows.append(
                {
                    "run_id": run.id,
                    "time": run.started_at,
                    "commit": sha,
                    "lane": run.lane,
                    "branch": run.branch,
                    "pr": run.pr,
                    "hardware": run.hardware,
                    "base_commit": run.base_commit,
                    "ci_provider": run.ci_provider,
                    "ci_run_id": run.ci_run_id,
                    "ci_attempt": run.ci_attempt,
                    "ci_url": run.ci_url,
                    "results": int(n or 0),
                    "failed_results": int(failed or 0),
                }
            )
    return _frame(rows, RUNS_COLUMNS)


def verdicts(
    db: str,
    run: int | None = None,
    *,
    verdict: str | None = None,
    workload: str | None = None,
    lane: str | None = None,
) -> pd.DataFrame:
    """One row per stored verdict (every check of every run, or of run `run`), newest check first."""
    q = (
        select(m.Verdict, m.Check, m.Run.started_at)
        .join(m.Check, m.Verdict.check_id == m.Check.id)
        .join(m.Run, m.Check.run_id == m.Run.id)
    )
    if run is not None:
        q = q.where(m.Check.run_id == run)
    if verdict:
        q = q.where(m.Verdict.verdict == verdict)
    if workload:
        q = q.where(m.Verdict.workload == workload)
    if lane:
        q = q.where(m.Run.lane == lane)
    rows = []
    with session_scope(db) as s:
        for v, c, started in s.execute(q.order_by(m.Check.id.desc(), m.Verdict.id)):
            rows.append(
                {
                    "check_id": c.id,
                    "run_id": c.run_id,
                    "time": started,
                    "policy": c.policy,
                    "check_status": c.status,
                    **{col: getattr(v, col) for col in VERDICTS_COLUMNS[5:]},
                }
            )
    return _frame(rows, VERDICTS_COLUMNS)


def alerts(
    db: str,
    state: str | list[str] | None = None,
    kind: str | None = None,
    *,
    workload: str | None = None,
    hardware: str | None = None,
    lane: str | None = None,
) -> pd.DataFrame:
    """One row per alert, newest first; `state` one triage state or several; `metrics` names the alert's
    metrics, comma-separated."""
    q = select(m.Alert).join(m.Workload, m.Alert.workload_id == m.Workload.id)
    if state:
        q = q.where(m.Alert.state.in_([state] if isinstance(state, str) else state))
    if kind:
        q = q.where(m.Alert.kind == kind)
    if workload:
        q = q.where(m.Workload.name == workload)
    if hardware:
        q = q.where(m.Alert.hardware == hardware)
    if lane:
        q = q.where(m.Alert.lane == lane)
    rows = []
    with session_scope(db) as s:
        for a in s.scalars(q.order_by(m.Alert.created_at.desc(), m.Alert.id.desc())):
            rows.append(
                {
                    "alert_id": a.id,
                    "kind": a.kind,
                    "state": a.state,
                    "workload": a.workload.name,
                    "hardware": a.hardware,
                    "lane": a.lane,
                    "metrics": ",".join(str(x.get("metric", "")) for x in a.metrics or []),
                    "change": a.change,
                    "from_commit": a.from_commit,
                    "to_commit": a.to_commit,
                    "run_id": a.run_id,
                    "note": a.note,
                    "issue_url": a.issue_url,
                    "created_at": a.created_at,
                    "updated_at": a.updated_at,
                    "resolved_at": a.resolved_at,
                }
            )
    return _frame(rows, ALERTS_COLUMNS)
