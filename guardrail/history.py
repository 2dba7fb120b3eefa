"""Stored history of series: per-run points for charts and change points, noise per series, and the
change-point scan that turns new change points on main into alerts."""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import ARRAY, Integer, Select, any_, bindparam, select
from sqlalchemy.orm import Session

from guardrail.alerts import known_change_points, raise_change_point_alerts
from guardrail.policy import BASELINES_DIR, Policy, load_lane_policy
from guardrail.store import models as m

if TYPE_CHECKING:
    from guardrail.analysis.alerts import SeriesChangePoint


@dataclass(frozen=True)
class Point:
    """One run of one series: the median of its repeats' medians, and the spread of those medians."""

    run_id: int
    result_id: int
    time: datetime
    commit: str | None
    message: str | None
    value: float
    low: float
    high: float
    repeats: int
    environment_id: int


def series_points(
    session: Session,
    series_id: int,
    *,
    lanes: list[str] | None = None,
    branch: str | None = None,
    limit: int | None = None,
    lanes_seen: set[str] | None = None,
) -> list[Point]:
    """Oldest first; only `ok` results; one point per result. Index lookups in three steps (measurements of the
    series, their results, those results' runs and commits) rather than one four-way join (PostgreSQL plans that
    join as a scan of all results, which dominated the series page at scale).
    `lanes_seen`, when given, collects the lanes the series has, before the lane filter."""
    # Core rows on the session's connection from statements built once (building and caching a statement costs
    # more than running it here): this runs on every series page.
    conn = session.connection()
    q = _points_sql(conn.dialect.name)
    medians: dict[int, list[float]] = defaultdict(list)
    for result_id, median in conn.execute(q.medians, {"series_id": series_id}):
        medians[result_id].append(median)
    if not medians:
        return []
    # Results, then their runs and commits, each by primary key: joined in one statement, PostgreSQL's default
    # costs (random_page_cost 4) pick a sequential scan of all runs for a 50-id list (1.5 ms vs 0.2 ms).
    results = conn.execute(q.results, {"ids": list(medians)}).all()
    runs = {r[0]: r for r in conn.execute(q.runs, {"ids": list({r[2] for r in results})})} if results else {}
    # (result id, environment id, run id, started, sha, message, lane, branch), as the join gave them
    rows = [(rid, env, run_id, *runs[run_id][1:]) for rid, env, run_id in results]
    if lanes_seen is not None:
        lanes_seen.update(r[6] for r in rows)
    # Lane and branch are filtered here rather than in SQL, so the same rows also tell which lanes exist.
    rows = sorted(
        (r for r in rows if (not lanes or r[6] in lanes) and (not branch or r[7] == branch)), key=lambda r: (r[3], r[0])
    )
    if limit:
        rows = rows[-limit:]
    out = []
    for result_id, env_id, run_id, started, sha, message, _, _ in rows:
        vals = sorted(medians[result_id])
        out.append(Point(run_id, result_id, started, sha, message, _median(vals), vals[0], vals[-1], len(vals), env_id))
    return out


def id_list(dialect: str, name: str = "ids") -> Any:
    """A bind parameter for a list of ids, used as `col == any_(p)` on PostgreSQL (one array parameter: the same
    statement text for every list, so psycopg prepares it once) or `col.in_(p)` elsewhere (expanding)."""
    if dialect == "postgresql":
        return bindparam(name, type_=ARRAY(Integer))
    return bindparam(name, expanding=True)


def id_in(dialect: str, col: Any, name: str = "ids") -> Any:
    """`col IN :name` for a list of ids (see id_list)."""
    p = id_list(dialect, name)
    return col == any_(p) if dialect == "postgresql" else col.in_(p)


@dataclass(frozen=True)
class _PointStatements:
    """The three lookups behind a series' points, built once per dialect."""

    medians: Select
    results: Select
    runs: Select


@functools.cache
def _points_sql(dialect: str) -> _PointStatements:
    return _PointStatements(
        medians=select(m.Measurement.result_id, m.Measurement.median)
        .where(m.Measurement.series_id == bindparam("series_id"))
        .order_by(m.Measurement.result_id, m.Measurement.repeat_index),
        results=select(m.Result.id, m.Result.environment_id, m.Result.run_id).where(
            id_in(dialect, m.Result.id), m.Result.status == "ok"
        ),
        runs=select(m.Run.id, m.Run.started_at, m.Commit.sha, m.Commit.message, m.Run.lane, m.Run.branch)
        .outerjoin(m.Commit, m.Run.commit_id == m.Commit.id)
        .where(id_in(dialect, m.Run.id)),
    )


def _median(s: list[float]) -> float:
    """np.median of an already sorted short list, without numpy's per-call overhead: the same float (the middle
    value, or the two middle values added and halved, as numpy's mean of two does)."""
    k = len(s) // 2
    return s[k] if len(s) % 2 else (s[k - 1] + s[k]) / 2


def series_runs(
    session: Session,
    series_id: int,
    *,
    lanes: list[str] | None = None,
    branch: str | None = None,
    limit: int = 100,
) -> list[list[list[float]]]:
    """The newest `limit` runs of a series, oldest first, each as repeats -> samples (for noise estimates)."""
    points = series_points(session, series_id, lanes=lanes, branch=branch, limit=limit)
    ids = [p.result_id for p in points]
    by_result: dict[int, list[list[float]]] = defaultdict(list)
    for result_id, blob in session.execute(
        select(m.Measurement.result_id, m.Measurement.samples)
        .where(m.Measurement.series_id == series_id, m.Measurement.result_id.in_(ids))
        .order_by(m.Measurement.result_id, m.Measurement.repeat_index)
    ):
        by_result[result_id].append(np.frombuffer(blob, dtype="<f8").tolist())
    return [by_result[i] for i in ids if by_result[i]]


def series_label(s: m.Series) -> str:
    return f"{s.workload.name}/{s.metric}@{s.hardware}"


def _lane_policy(lane: str) -> Policy:
    """The lane's policy file, else the defaults (a lane without a file is judged at the default thresholds)."""
    return load_lane_policy(lane) if (BASELINES_DIR / f"{lane}.yaml").is_file() else Policy(lane=lane)


def noise_rows(
    session: Session,
    *,
    lane: str = "nightly",
    hardware: str | None = None,
    workload: str | None = None,
    history: int = 30,
) -> list[tuple[str, Any]]:
    """One noise report per series, judged with the lane's threshold for its metric, its baseline window,
    its alpha and the rerun policy's extra repeats (defaults where the lane has no policy file)."""
    from guardrail.analysis.noise import noise_report
    from guardrail.rerun_policy.yaml_file import load_rerun_policy

    policy = _lane_policy(lane)
    extra = load_rerun_policy().performance.max_extra_repeats
    q = select(m.Series).join(m.Workload)
    if hardware:
        q = q.where(m.Series.hardware == hardware)
    if workload:
        q = q.where(m.Workload.name == workload)
    rows = []
    for s in session.scalars(q.order_by(m.Workload.name, m.Series.metric, m.Series.hardware)):
        runs = series_runs(session, s.id, lanes=[lane], limit=history)
        if runs:
            report = noise_report(
                runs,
                summary=s.summary is not None,
                threshold=policy.threshold(s.metric),
                extra_repeats=extra,
                baseline_runs=policy.baseline.window,
                alpha=policy.alpha,
            )
            rows.append((series_label(s), report))
    return rows


REPEAT_PLAN_SCHEMA = "guardrail.repeat_plan/v1"


def device_types(session: Session) -> dict[str, str]:
    """hardware -> its device type (cpu, cuda, npu), from the stored environments: what `informational_on` of a
    lane policy is keyed by (on a CPU the wall-time metrics are informational)."""
    return dict(session.execute(select(m.Environment.hardware, m.Environment.device_type)).all())


def repeat_plans(
    session: Session,
    *,
    lane: str = "presubmit",
    hardware: str | None = None,
    workloads: list[str] | None = None,
    min_repeats: int = 2,
) -> list[dict[str, Any]]:
    """Per workload and hardware: the repeats a LANE run should start with (guardrail.analysis.repeat_plan), the
    most any of its gating step series asks for, planned on the history the lane's baseline reads (its lanes and
    branch, its noise history); from the workload's own repeats for the lane (else `min_repeats`) up to that plus
    the rerun policy's extra repeats. Per-run summary series (one value per run) are left out: their repeats are
    whole server runs, which the plan does not size."""
    from guardrail.analysis.repeat_plan import plan_repeats
    from guardrail.rerun_policy.yaml_file import load_rerun_policy

    policy = _lane_policy(lane)
    extra = load_rerun_policy().performance.max_extra_repeats
    q = select(m.Series).join(m.Workload).where(m.Series.summary.is_(None))
    if hardware:
        q = q.where(m.Series.hardware == hardware)
    if workloads:
        q = q.where(m.Workload.name.in_(workloads))
    device = device_types(session)
    gating = [
        s
        for s in session.scalars(q.order_by(m.Workload.name, m.Series.hardware, m.Series.metric))
        if not policy.is_informational(s.metric, device.get(s.hardware))
    ]
    per_hardware = Counter(s.hardware for s in gating)  # a check judges one hardware's series together
    plans: dict[tuple[str, str], dict[str, Any]] = {}
    for s in gating:
        own = (s.workload.spec or {}).get("repeats", {})
        lowest = int(own.get(lane, min_repeats)) if isinstance(own, dict) else min_repeats
        runs = series_runs(
            session,
            s.id,
            lanes=policy.baseline.lanes,
            branch=policy.baseline.branch,
            limit=policy.baseline.noise_history,
        )
        plan = plan_repeats(
            runs[::-1],  # newest first, as the check reads them
            window=policy.baseline.window,
            threshold=policy.threshold(s.metric),
            min_repeats=lowest,
            max_repeats=lowest + extra,
            gating_series=per_hardware[s.hardware],
            alpha=policy.alpha,
            fdr=policy.fdr,
        )
        entry = plans.setdefault(
            (s.workload.name, s.hardware),
            {
                "workload": s.workload.name,
                "hardware": s.hardware,
                "lane_repeats": lowest,
                "repeats": lowest,
                "series": [],
            },
        )
        entry["repeats"] = max(entry["repeats"], plan.repeats)
        entry["series"].append(
            {"metric": s.metric, "repeats": plan.repeats, "se": plan.se, "budget": plan.budget, "reason": plan.reason}
        )
    return list(plans.values())


def scan_change_points(
    session: Session,
    *,
    lane: str = "nightly",
    branch: str | None = "main",
    hardware: str | None = None,
    window: int = 50,
    p_value: float = 0.001,
    min_magnitude: float = 0.01,
) -> list[m.Alert]:
    """Detect change points on every stored series of `lane`; new ones become alerts, one per workload and
    commit range (metrics that moved together share an alert), or place the open alert a check already raised
    for the same change (guardrail.alerts.raise_change_point_alerts). Returns the alerts created or changed.

    The smallest change looked for on a series is its metric's threshold in the lane's policy (a stage mean 5%,
    peak memory 2%), never less than `min_magnitude`: a change the lane's checks would call `no_change` is no
    alert either. Informational metrics of the lane (queue wait, load time; on a CPU the wall times, `informational_on`)
    are not scanned."""
    from guardrail.analysis.alerts import attribute, attribute_and_dedup  # scipy: only when scanning

    q = select(m.Series)
    if hardware:
        q = q.where(m.Series.hardware == hardware)
    series_all = session.scalars(q).all()
    policy = _lane_policy(lane)
    thresholds = {s.id: max(min_magnitude, policy.threshold(s.metric)) for s in series_all}
    found: dict[tuple[int, str, int], list[SeriesChangePoint]] = {}
    directions: dict[tuple[int, str, int], str] = {}
    last_run: dict[int, int] = {}
    device = device_types(session)
    for s in series_all:
        if policy.is_informational(s.metric, device.get(s.hardware)):
            continue
        pts = series_points(session, s.id, lanes=[lane], branch=branch)
        if len(pts) < 4:
            continue
        key = (s.workload_id, s.hardware, s.id)
        cps = attribute(
            [p.value for p in pts],
            [p.commit or f"run-{p.run_id}" for p in pts],
            [p.time.isoformat() for p in pts],
            window=window,
            p_value=p_value,
            min_magnitude=thresholds[s.id],
        )
        if cps:
            found[key] = cps
            directions[key] = s.direction
            last_run[s.id] = pts[-1].run_id
    grouped = attribute_and_dedup(
        found,
        workload_of=lambda k: f"{k[0]}:{k[1]}",
        directions=directions,
        known_keys=known_change_points(session),
    )
    return raise_change_point_alerts(
        session,
        grouped,
        lane=lane,
        series={s.id: s for s in series_all},
        last_run=last_run,
        thresholds=thresholds,
    )
