"""Read models for the dashboard and the API: plain dicts built from the store with bounded queries.

Every function takes an open session and returns JSON-ready data; pages and API endpoints share them, so
what a page shows is exactly what the API returns.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, aliased

from guardrail import alerts as alert_states
from guardrail.history import id_in, series_points
from guardrail.store import models as m
from guardrail.vocabulary import OPEN_STATES, VERDICT_RANK
from web.charts import median

STAGE_METRICS = ("text_encode_latency", "denoise_latency", "vae_decode_latency")
STAGE_PREFIX = "stage_mean."
MAX_POINTS = 400  # newest points drawn on a series chart


class NotFound(LookupError):
    """The thing asked for is not in the store (the web layer answers 404)."""


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


# ---------------------------------------------------------------- overview


def overview(session: Session, *, lane: str = "nightly") -> dict[str, Any]:
    """Latest `lane` result per workload x hardware with its worst verdict, open alerts, and CI health."""
    rn = (
        func.row_number()
        .over(
            partition_by=(m.Result.workload_id, m.Run.hardware), order_by=(m.Run.started_at.desc(), m.Result.id.desc())
        )
        .label("rn")
    )
    latest = (
        select(
            m.Result.id.label("result_id"),
            m.Result.workload_id,
            m.Run.hardware,
            m.Run.id.label("run_id"),
            m.Run.started_at,
            m.Result.status,
            rn,
        )
        .join(m.Run, m.Result.run_id == m.Run.id)
        .where(m.Run.lane == lane)
        .subquery()
    )
    rows = session.execute(
        select(
            latest.c.result_id,
            latest.c.workload_id,
            latest.c.hardware,
            latest.c.run_id,
            latest.c.started_at,
            latest.c.status,
            m.Workload.name,
        )
        .join(m.Workload, m.Workload.id == latest.c.workload_id)
        .where(latest.c.rn == 1)
        .order_by(m.Workload.name, latest.c.hardware)
    ).all()
    worst = _worst_verdicts(session, {r.run_id for r in rows})
    hardware = sorted({r.hardware for r in rows})
    grid: dict[str, dict[str, Any]] = {}
    for r in rows:
        verdict = worst.get((r.run_id, r.name))
        cell = {
            "run_id": r.run_id,
            "result_id": r.result_id,
            "status": r.status,
            "verdict": verdict,
            "started_at": iso(r.started_at),
            "state": r.status if r.status != "ok" else (verdict or "unchecked"),
        }
        grid.setdefault(r.name, {"workload": r.name, "cells": {}})["cells"][r.hardware] = cell
    open_alerts = alerts(session, states=list(OPEN_STATES), limit=20)["alerts"]
    health = ci_health(session)
    tests = _test_health(session)
    if tests is not None:
        # the per-day table gains the flaky rate of the test verdicts stored that day (all lanes)
        per_day: dict[str, list[int]] = {}
        for f in tests["figures"]:
            acc = per_day.setdefault(f["day"], [0, 0])
            acc[0] += f["flaky"]
            acc[1] += f["tests"]
        for d in health["days"]:
            f, n = per_day.get(d["day"], (0, 0))
            d["flaky_rate"] = round(f / n, 4) if n else None
        flaky, total = sum(f for f, _ in per_day.values()), sum(n for _, n in per_day.values())
        health["flaky_rate"] = round(flaky / total, 4) if total else None
    return {
        "schema": "guardrail.web.overview/v1",
        "lane": lane,
        "hardware": hardware,
        "workloads": list(grid.values()),
        "open_alerts": open_alerts,
        "ci_health": health,
        "test_health": tests,
    }


def _test_health(session: Session, *, days: int = 14) -> dict[str, Any] | None:
    """The JUnit side of CI health (pass/flaky rate, minutes lost to reruns, infra errors by kind) per lane x
    hardware x day, or None while no test results are stored."""
    from web import flaky as fq

    if not fq.has_tests(session):
        return None
    return fq.ci_health(session, days=days)


def _worst_verdicts(session: Session, run_ids: set[int]) -> dict[tuple[int, str], str]:
    """(run id, workload name) -> worst gating verdict of the run's newest check."""
    if not run_ids:
        return {}
    newest = (
        select(func.max(m.Check.id).label("check_id"))
        .where(m.Check.run_id.in_(run_ids))
        .group_by(m.Check.run_id)
        .subquery()
    )
    out: dict[tuple[int, str], str] = {}
    q = (
        select(m.Check.run_id, m.Verdict.workload, m.Verdict.verdict)
        .join(m.Verdict, m.Verdict.check_id == m.Check.id)
        .where(m.Check.id.in_(select(newest.c.check_id)))
    )
    for run_id, workload, verdict in session.execute(q):
        key = (run_id, workload)
        if VERDICT_RANK.get(verdict, 0) >= VERDICT_RANK.get(out.get(key, "no_change"), 0):
            out[key] = verdict
    return out


def ci_health(session: Session, *, days: int = 14) -> dict[str, Any]:
    """Per day (the newest `days` days with data): runs, results by status, pass rate."""
    newest = session.scalar(select(func.max(m.Run.started_at)))
    if newest is None:
        return {"days": [], "flaky_rate": None}
    day = func.date(m.Run.started_at)
    q = (
        select(day, m.Result.status, func.count(m.Result.id), func.count(func.distinct(m.Run.id)))
        .join(m.Result, m.Result.run_id == m.Run.id)
        .where(m.Run.started_at > newest - timedelta(days=days))
        .group_by(day, m.Result.status)
    )
    per_day: dict[str, dict[str, Any]] = {}
    for d, status, n, n_runs in session.execute(q):
        key = str(d)[:10]
        row = per_day.setdefault(
            key, {"day": key, "runs": 0, "results": 0, "ok": 0, "failed": 0, "infra_error": 0, "timeout": 0}
        )
        row["runs"] = max(row["runs"], n_runs)  # a run's results may differ in status; count it once
        row["results"] += n
        row[status if status in ("ok", "failed", "infra_error", "timeout") else "failed"] += n
    out = [{**per_day[k], "pass_rate": round(per_day[k]["ok"] / per_day[k]["results"], 4)} for k in sorted(per_day)]
    # The flaky rate comes from JUnit results: overview() fills it in when tests are stored.
    return {"days": out, "flaky_rate": None}


# ---------------------------------------------------------------- alerts


def _alert_dict(a: m.Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "workload": a.workload.name,
        "workload_id": a.workload_id,
        "hardware": a.hardware,
        "lane": a.lane,
        "metrics": a.metrics or [],
        "change": a.change,
        "from_commit": a.from_commit,
        "to_commit": a.to_commit,
        "run_id": a.run_id,
        "state": a.state,
        "note": a.note,
        "issue_url": a.issue_url,
        "updated_by": a.updated_by,
        "created_at": iso(a.created_at),
        "updated_at": iso(a.updated_at),
        "resolved_at": iso(a.resolved_at),
    }


def alerts(
    session: Session,
    *,
    states: Sequence[str] | None = None,
    kind: str | None = None,
    hardware: str | None = None,
    lane: str | None = None,
    workload: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    q = select(m.Alert).join(m.Workload, m.Alert.workload_id == m.Workload.id)
    if states:
        q = q.where(m.Alert.state.in_(states))
    if kind:
        q = q.where(m.Alert.kind == kind)
    if hardware:
        q = q.where(m.Alert.hardware == hardware)
    if lane:
        q = q.where(m.Alert.lane == lane)
    if workload:
        q = q.where(m.Workload.name.contains(workload, autoescape=True))
    total = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = session.scalars(q.order_by(m.Alert.created_at.desc(), m.Alert.id.desc()).limit(limit).offset(offset))
    return {
        "schema": "guardrail.web.alerts/v1",
        "total": total,
        "limit": limit,
        "offset": offset,
        "alerts": [_alert_dict(a) for a in rows],
    }


def alert_detail(session: Session, alert_id: int) -> dict[str, Any]:
    a = session.get(m.Alert, alert_id)
    if a is None:
        raise NotFound(f"no alert {alert_id}")
    events = session.scalars(
        select(m.AlertEvent).where(m.AlertEvent.alert_id == alert_id).order_by(m.AlertEvent.id.desc())
    )
    return {
        **_alert_dict(a),
        "events": [
            {"state": e.state, "note": e.note, "author": e.author, "created_at": iso(e.created_at)} for e in events
        ],
    }


def triage(
    session: Session, alert_ids: list[int], *, state: str, note: str | None, issue_url: str | None, author: str
) -> list[dict[str, Any]]:
    """Set the triage state of alerts (all or none; guardrail.alerts.triage), as the API returns them."""
    try:
        rows = alert_states.triage(session, alert_ids, state=state, note=note, issue_url=issue_url, author=author)
    except alert_states.UnknownAlerts as exc:
        raise NotFound(str(exc)) from None
    return [_alert_dict(a) for a in rows]


# ---------------------------------------------------------------- series


def find_series(
    session: Session,
    *,
    workload: str | None = None,
    metric: str | None = None,
    hardware: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    q = select(m.Series).join(m.Workload, m.Series.workload_id == m.Workload.id)
    if workload:
        q = q.where(m.Workload.name == workload)
    if metric:
        q = q.where(m.Series.metric == metric)
    if hardware:
        q = q.where(m.Series.hardware == hardware)
    rows = session.scalars(q.order_by(m.Workload.name, m.Series.metric, m.Series.hardware).limit(limit))
    return [_series_dict(s) for s in rows]


def _series_dict(s: m.Series) -> dict[str, Any]:
    return {
        "id": s.id,
        "workload": s.workload.name,
        "workload_id": s.workload_id,
        "metric": s.metric,
        "hardware": s.hardware,
        "unit": s.unit,
        "direction": s.direction,
    }


def series_detail(
    session: Session, series_id: int, *, lane: str | None = None, branch: str | None = None, limit: int = MAX_POINTS
) -> dict[str, Any]:
    # Core selects of the columns shown, on the session's connection: the ORM's object loading cost more than
    # the queries themselves on this page.
    conn = session.connection()
    s, siblings = _series_and_siblings(conn, series_id)
    lanes_seen: set[str] = set()
    pts = series_points(
        session, series_id, lanes=[lane] if lane else None, branch=branch, limit=limit, lanes_seen=lanes_seen
    )
    points = [
        {
            "run_id": p.run_id,
            "result_id": p.result_id,
            "time": iso(p.time),
            "commit": p.commit,
            "message": p.message,
            "value": p.value,
            "low": p.low,
            "high": p.high,
            "repeats": p.repeats,
            "environment_id": p.environment_id,
        }
        for p in pts
    ]
    detected = []
    if len(pts) >= 4:
        for cp in _change_points(tuple(p.value for p in pts)):
            detected.append(
                {**cp.to_dict(), "commit": pts[cp.index].commit, "run_id": pts[cp.index].run_id, "source": "detected"}
            )
    return {
        "schema": "guardrail.web.series/v1",
        "series": s,
        "lane": lane,
        "branch": branch,
        "points": points,
        "baseline": _baseline_band(conn, s, pts),
        "change_points": _merge_change_points(detected, _changepoint_alerts(conn, s, pts)),
        "environment_changes": _environment_changes(conn, pts),
        "lanes": sorted(lanes_seen),
        "siblings": siblings,
    }


@functools.lru_cache(maxsize=1024)
def _change_points(values: tuple[float, ...]) -> tuple:
    """Change points of a series' drawn values, memoised by the values themselves (the content key), so a
    cached answer can never be stale: new results change the tuple."""
    from guardrail.analysis.changepoints import detect_change_points

    return tuple(detect_change_points(list(values)))


_SERIES_COLS = (
    m.Series.id,
    m.Workload.name,
    m.Series.workload_id,
    m.Series.metric,
    m.Series.hardware,
    m.Series.unit,
    m.Series.direction,
)


def _series_row_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r[0],
        "workload": r[1],
        "workload_id": r[2],
        "metric": r[3],
        "hardware": r[4],
        "unit": r[5],
        "direction": r[6],
    }


def _series_and_siblings(conn: Any, series_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The series and its siblings (same workload and metric, other hardware, by hardware) in one query."""
    rows = conn.execute(_sql(conn.dialect.name).series, {"series_id": series_id}).all()
    this = next((r for r in rows if r[0] == series_id), None)
    if this is None:
        raise NotFound(f"no series {series_id}")
    return _series_row_dict(this), [_series_row_dict(r) for r in rows if r[0] != series_id]


@functools.cache
def _sql(dialect: str) -> SimpleNamespace:
    """The series and run pages' statements, built once per dialect: building and cache-keying a fresh statement
    cost SQLAlchemy more CPU than PostgreSQL spent running it."""
    me = aliased(m.Series)
    return SimpleNamespace(
        series=select(*_SERIES_COLS)
        .select_from(me)
        .join(m.Series, (m.Series.workload_id == me.workload_id) & (m.Series.metric == me.metric))
        .join(m.Workload, m.Workload.id == m.Series.workload_id)
        .where(me.id == bindparam("series_id"))
        .order_by(m.Series.hardware),
        band=select(m.Verdict.check_id, m.Verdict.baseline_median, m.Verdict.threshold)
        .where(m.Verdict.series_id == bindparam("series_id"), m.Verdict.baseline_median.is_not(None))
        .order_by(m.Verdict.id.desc())
        .limit(1),
        cp_alerts=select(m.Alert.id, m.Alert.to_commit, m.Alert.state, m.Alert.metrics).where(
            m.Alert.workload_id == bindparam("workload_id"),
            m.Alert.hardware == bindparam("hardware"),
            m.Alert.kind == "changepoint",
        ),
        envs=select(
            m.Environment.id, m.Environment.software, m.Environment.device_type, m.Environment.device_count
        ).where(id_in(dialect, m.Environment.id)),
        samples=select(m.Measurement.result_id, m.Measurement.repeat_index, m.Measurement.samples)
        .join(m.Result, m.Measurement.result_id == m.Result.id)
        .where(m.Measurement.series_id == bindparam("series_id"), m.Result.run_id == bindparam("run_id"))
        .order_by(m.Measurement.result_id, m.Measurement.repeat_index),
    )


def _baseline_band(conn: Any, s: dict[str, Any], pts: list) -> dict[str, Any] | None:
    """The band the newest check judged against: baseline median +- its practical threshold; without a
    check, the median of the newest 20 points +- 2 robust standard deviations."""
    v = conn.execute(_sql(conn.dialect.name).band, {"series_id": s["id"]}).first()
    if v is not None and v.baseline_median:
        t = v.threshold or 0.0
        return {
            "source": f"check {v.check_id}",
            "median": v.baseline_median,
            "low": v.baseline_median * (1 - t),
            "high": v.baseline_median * (1 + t),
            "threshold": t,
        }
    if len(pts) < 3:
        return None
    vals = np.array([p.value for p in pts[-20:]])
    med = float(np.median(vals))
    sd = 1.4826 * float(np.median(np.abs(vals - med)))
    return {"source": "history", "median": med, "low": med - 2 * sd, "high": med + 2 * sd, "threshold": None}


def _merge_change_points(detected: list[dict[str, Any]], alerted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts first; a detected change point at the same place as an alert is the same change, shown once."""
    at = {c["index"] for c in alerted}
    return alerted + [c for c in detected if c["index"] not in at]


def _changepoint_alerts(conn: Any, s: dict[str, Any], pts: list) -> list[dict[str, Any]]:
    index_of = {p.commit: i for i, p in enumerate(pts) if p.commit}
    out = []
    for a in conn.execute(
        _sql(conn.dialect.name).cp_alerts, {"workload_id": s["workload_id"], "hardware": s["hardware"]}
    ):
        for entry in a.metrics or []:
            if isinstance(entry, dict) and entry.get("series_id") == s["id"] and a.to_commit in index_of:
                i = index_of[a.to_commit]
                out.append(
                    {
                        "index": i,
                        "commit": a.to_commit,
                        "run_id": pts[i].run_id,
                        "change": entry.get("change"),
                        "p_value": entry.get("p_value"),
                        "alert_id": a.id,
                        "state": a.state,
                        "source": "alert",
                    }
                )
    return out


def _environment_changes(conn: Any, pts: list) -> list[dict[str, Any]]:
    ids = {p.environment_id for p in pts}
    if len(ids) < 2:
        return []
    envs = {e.id: e for e in conn.execute(_sql(conn.dialect.name).envs, {"ids": list(ids)})}
    out = []
    for i in range(1, len(pts)):
        a, b = envs[pts[i - 1].environment_id], envs[pts[i].environment_id]
        if a.id == b.id:
            continue
        keys = sorted(set(a.software) | set(b.software))
        changed = {k: [a.software.get(k), b.software.get(k)] for k in keys if a.software.get(k) != b.software.get(k)}
        for attr in ("device_type", "device_count"):
            if getattr(a, attr) != getattr(b, attr):
                changed[attr] = [getattr(a, attr), getattr(b, attr)]
        out.append({"index": i, "run_id": pts[i].run_id, "commit": pts[i].commit, "changed": changed})
    return out


def run_samples(session: Session, series_id: int, run_id: int) -> dict[str, Any]:
    """Every repeat's samples of one series in one run (the distribution view)."""
    conn = session.connection()
    rows = conn.execute(_sql(conn.dialect.name).samples, {"series_id": series_id, "run_id": run_id}).all()
    if not rows:
        raise NotFound(f"series {series_id} has no samples in run {run_id}")
    return {
        "series_id": series_id,
        "run_id": run_id,
        "repeats": [np.frombuffer(blob, dtype="<f8").tolist() for _, _, blob in rows],
    }


# ---------------------------------------------------------------- runs


_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")


def _commit_url(repo: str | None, sha: str | None) -> str | None:
    """A link to the commit on GitHub when the repository is an owner/name and the commit a hex sha."""
    if repo and sha and _REPO.match(repo) and _SHA.match(sha):
        return f"https://github.com/{repo}/commit/{sha}"
    return None


def _run_dict(r: m.Run) -> dict[str, Any]:
    return {
        "id": r.id,
        "lane": r.lane,
        "hardware": r.hardware,
        "started_at": iso(r.started_at),
        "commit": r.commit.sha if r.commit else None,
        "message": r.commit.message if r.commit else None,
        "repo": r.commit.repo if r.commit else None,
        "commit_url": _commit_url(r.commit.repo, r.commit.sha) if r.commit else None,
        "branch": r.branch,
        "pr": r.pr,
        "base_commit": r.base_commit,
        "ci": {"provider": r.ci_provider, "run_id": r.ci_run_id, "attempt": r.ci_attempt, "url": _safe_url(r.ci_url)},
    }


def _safe_url(url: str | None) -> str | None:
    """Only http(s) links are rendered as links (a javascript: URL in a result file stays text)."""
    return url if url and url.startswith(("https://", "http://")) else None


def runs(
    session: Session,
    *,
    lane: str | None = None,
    hardware: str | None = None,
    pr: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    q = select(m.Run)
    if lane:
        q = q.where(m.Run.lane == lane)
    if hardware:
        q = q.where(m.Run.hardware == hardware)
    if pr is not None:
        q = q.where(m.Run.pr == pr)
    rows = session.scalars(q.order_by(m.Run.started_at.desc(), m.Run.id.desc()).limit(limit).offset(offset))
    return {"schema": "guardrail.web.runs/v1", "limit": limit, "offset": offset, "runs": [_run_dict(r) for r in rows]}


def run_detail(session: Session, run_id: int) -> dict[str, Any]:
    # Core selects of the columns shown, from statements built once (see _sql): five small queries.
    conn = session.connection()
    sql = _run_sql(conn.dialect.name)
    run = conn.execute(sql.run, {"run_id": run_id}).first()
    if run is None:
        raise NotFound(f"no run {run_id}")
    detail = _run_detail(conn, sql, run, run_id)
    pins = conn.execute(sql.pins, {"run_id": run_id})
    detail["pins"] = [_pin_dict(p) for p in pins]
    return detail


_PIN_COLS = (
    m.BaselinePin.id,
    m.BaselinePin.lane,
    m.BaselinePin.hardware,
    m.BaselinePin.run_id,
    m.BaselinePin.reason,
    m.BaselinePin.author,
    m.BaselinePin.active,
    m.BaselinePin.created_at,
    m.BaselinePin.removed_at,
    m.BaselinePin.removed_by,
    m.BaselinePin.removed_reason,
)


@functools.cache
def _run_sql(dialect: str) -> SimpleNamespace:
    return SimpleNamespace(
        run=select(
            m.Run.id,
            m.Run.lane,
            m.Run.hardware,
            m.Run.started_at,
            m.Run.branch,
            m.Run.pr,
            m.Run.base_commit,
            m.Run.ci_provider,
            m.Run.ci_run_id,
            m.Run.ci_attempt,
            m.Run.ci_url,
            m.Commit.id.label("commit_pk"),
            m.Commit.sha,
            m.Commit.message,
            m.Commit.repo,
        )
        .outerjoin(m.Commit, m.Run.commit_id == m.Commit.id)
        .where(m.Run.id == bindparam("run_id")),
        results=select(
            m.Result.id,
            m.Result.workload_id,
            m.Result.status,
            m.Result.error_kind,
            m.Result.error_message,
            m.Result.source_format,
            m.Result.extra,
            m.Workload.name,
            m.Environment.id.label("env_id"),
            m.Environment.hardware,
            m.Environment.device_type,
            m.Environment.device_count,
            m.Environment.software,
        )
        .join(m.Workload, m.Result.workload_id == m.Workload.id)
        .join(m.Environment, m.Result.environment_id == m.Environment.id)
        .where(m.Result.run_id == bindparam("run_id"))
        .order_by(m.Result.id),
        check=select(
            m.Check.id,
            m.Check.policy,
            m.Check.status,
            m.Check.summary,
            m.Check.created_at,
            m.Check.expected_false_alarms,
        )
        .where(m.Check.run_id == bindparam("run_id"))
        .order_by(m.Check.id.desc())
        .limit(1),
        verdicts=select(
            m.Verdict.series_id,
            m.Verdict.verdict,
            m.Verdict.change,
            m.Verdict.ci_low,
            m.Verdict.ci_high,
            m.Verdict.explanation,
        ).where(m.Verdict.check_id == bindparam("check_id")),
        measurements=select(
            m.Measurement.result_id,
            m.Measurement.series_id,
            m.Measurement.samples,
            m.Series.metric,
            m.Series.unit,
            m.Series.direction,
        )
        .join(m.Series, m.Measurement.series_id == m.Series.id)
        .where(id_in(dialect, m.Measurement.result_id))
        .order_by(m.Measurement.result_id, m.Measurement.series_id, m.Measurement.repeat_index),
        previous=select(m.Result.run_id, m.Result.extra)
        .join(m.Run, m.Result.run_id == m.Run.id)
        .where(
            m.Result.workload_id == bindparam("workload_id"),
            m.Run.hardware == bindparam("hardware"),
            m.Run.lane == bindparam("lane"),
            m.Run.started_at < bindparam("started_at"),
            m.Result.status == "ok",
        )
        .order_by(m.Run.started_at.desc())
        .limit(1),
        pins=select(*_PIN_COLS)
        .where(m.BaselinePin.run_id == bindparam("run_id"))
        .order_by(m.BaselinePin.active.desc(), m.BaselinePin.id.desc()),
    )


def _run_row_dict(r: Any) -> dict[str, Any]:
    """_run_dict for a row of _run_sql().run (the same keys and values)."""
    has_commit = r.commit_pk is not None
    return {
        "id": r.id,
        "lane": r.lane,
        "hardware": r.hardware,
        "started_at": iso(r.started_at),
        "commit": r.sha if has_commit else None,
        "message": r.message if has_commit else None,
        "repo": r.repo if has_commit else None,
        "commit_url": _commit_url(r.repo, r.sha) if has_commit else None,
        "branch": r.branch,
        "pr": r.pr,
        "base_commit": r.base_commit,
        "ci": {"provider": r.ci_provider, "run_id": r.ci_run_id, "attempt": r.ci_attempt, "url": _safe_url(r.ci_url)},
    }


def _run_detail(conn: Any, sql: SimpleNamespace, run: Any, run_id: int) -> dict[str, Any]:
    results = conn.execute(sql.results, {"run_id": run_id}).all()
    check = conn.execute(sql.check, {"run_id": run_id}).first()
    verdicts: dict[int, Any] = {}
    if check is not None:
        for v in conn.execute(sql.verdicts, {"check_id": check.id}):
            if v.series_id is not None:
                verdicts[v.series_id] = v
    meas = conn.execute(sql.measurements, {"ids": [r.id for r in results]}).all() if results else []
    series = {x.series_id: x for x in meas}  # metric, unit and direction of each series
    by_result: dict[int, dict[int, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    for x in meas:
        by_result[x.result_id][x.series_id].append(np.frombuffer(x.samples, dtype="<f8").tolist())
    previous = _previous_fingerprints(conn, sql, run, results)
    out_results = []
    for r in results:
        metrics = []
        for sid, repeats in sorted(by_result[r.id].items(), key=lambda kv: series[kv[0]].metric):
            s = series[sid]
            v = verdicts.get(sid)
            medians = [median(rep) for rep in repeats if rep]
            metrics.append(
                {
                    "series_id": sid,
                    "metric": s.metric,
                    "unit": s.unit,
                    "direction": s.direction,
                    "median": median(medians) if medians else None,
                    "repeats": repeats,
                    "verdict": v.verdict if v else None,
                    "change": v.change if v else None,
                    "ci": [v.ci_low, v.ci_high] if v and v.ci_low is not None else None,
                    "explanation": v.explanation if v else None,
                }
            )
        stages = [
            {"metric": x["metric"], "median": x["median"], "unit": x["unit"]}
            for x in metrics
            if (x["metric"] in STAGE_METRICS or x["metric"].startswith(STAGE_PREFIX)) and x["median"] is not None
        ]
        stages.sort(key=lambda x: STAGE_METRICS.index(x["metric"]) if x["metric"] in STAGE_METRICS else 99)
        fp = (r.extra or {}).get("output_fingerprint")
        out_results.append(
            {
                "id": r.id,
                "workload": r.name,
                "workload_id": r.workload_id,
                "status": r.status,
                "error": {"kind": r.error_kind, "message": r.error_message} if r.status != "ok" else None,
                "source_format": r.source_format,
                "metrics": metrics,
                "stages": stages,
                "environment": {
                    "id": r.env_id,
                    "hardware": r.hardware,
                    "device_type": r.device_type,
                    "device_count": r.device_count,
                    "software": r.software,
                },
                "output_drift": _drift(fp, previous.get(r.workload_id)),
            }
        )
    return {
        "schema": "guardrail.web.run/v1",
        "run": _run_row_dict(run),
        "results": out_results,
        "check": None
        if check is None
        else {
            "id": check.id,
            "policy": check.policy,
            "status": check.status,
            "summary": check.summary,
            "created_at": iso(check.created_at),
            "expected_false_alarms": check.expected_false_alarms,
        },
    }


def _previous_fingerprints(conn: Any, sql: SimpleNamespace, run: Any, results: list) -> dict[int, Any]:
    """Per workload: the output fingerprint of the newest earlier result on the same hardware and lane."""
    out: dict[int, Any] = {}
    for r in results:
        if not (r.extra or {}).get("output_fingerprint"):
            continue
        prev = conn.execute(
            sql.previous,
            {"workload_id": r.workload_id, "hardware": run.hardware, "lane": run.lane, "started_at": run.started_at},
        ).first()
        if prev is not None:
            out[r.workload_id] = {"run_id": prev.run_id, "fingerprint": (prev.extra or {}).get("output_fingerprint")}
    return out


def _drift(fp: Any, prev: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(fp, dict):
        return None
    out: dict[str, Any] = {
        "fingerprint": {k: v for k, v in fp.items() if not isinstance(v, list | dict)},
        "previous_run": None,
        "verdict": "no earlier fingerprint",
        "max_abs_diff": None,
    }
    if prev and isinstance(prev.get("fingerprint"), dict):
        p = prev["fingerprint"]
        out["previous_run"] = prev["run_id"]
        diffs = [
            abs(float(fp[k]) - float(p[k]))
            for k in ("mean", "std", "min", "max")
            if isinstance(fp.get(k), int | float) and isinstance(p.get(k), int | float)
        ]
        out["max_abs_diff"] = max(diffs) if diffs else None
        same_shape = fp.get("shape") == p.get("shape")
        drifted = not same_shape or (out["max_abs_diff"] or 0.0) > 1e-3
        out["verdict"] = "drifted" if drifted else "unchanged"
    return out


def compare_runs(session: Session, a: int, b: int) -> dict[str, Any]:
    """Two runs side by side: per workload x metric, each run's median and b / a - 1."""
    left, right = run_detail(session, a), run_detail(session, b)

    def index(d: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["workload"], x["metric"]): {**x, "status": r["status"]} for r in d["results"] for x in r["metrics"]}

    ia, ib = index(left), index(right)
    rows = []
    for key in sorted(set(ia) | set(ib)):
        xa, xb = ia.get(key), ib.get(key)
        ma, mb = (xa or {}).get("median"), (xb or {}).get("median")
        rows.append(
            {
                "workload": key[0],
                "metric": key[1],
                "unit": (xa or xb)["unit"],
                "a": ma,
                "b": mb,
                "verdict_a": (xa or {}).get("verdict"),
                "verdict_b": (xb or {}).get("verdict"),
                "change": (mb / ma - 1.0) if ma and mb is not None else None,
            }
        )
    return {"schema": "guardrail.web.compare/v1", "a": left["run"], "b": right["run"], "rows": rows}


# ---------------------------------------------------------------- PRs


def pr_checks(session: Session, pr: int, *, limit: int = 20) -> dict[str, Any]:
    """The checks of the PR's runs (its pushes), newest first, each with its verdicts document."""
    q = (
        select(m.Check, m.Run)
        .join(m.Run, m.Check.run_id == m.Run.id)
        .where(m.Run.pr == pr)
        .order_by(m.Check.created_at.desc(), m.Check.id.desc())
        .limit(limit)
    )
    pushes = []
    for check, run in session.execute(q):
        pushes.append(
            {
                "check_id": check.id,
                "status": check.status,
                "created_at": iso(check.created_at),
                "run": _run_dict(run),
                "summary": check.summary,
                "doc": check.doc or {},
            }
        )
    if not pushes and session.scalar(select(m.Run.id).where(m.Run.pr == pr).limit(1)) is None:
        raise NotFound(f"no run for PR {pr}")
    return {"schema": "guardrail.web.pr/v1", "pr": pr, "pushes": pushes}


def prs(session: Session, *, limit: int = 50) -> list[dict[str, Any]]:
    q = (
        select(m.Run.pr, func.count(m.Run.id), func.max(m.Run.started_at))
        .where(m.Run.pr.is_not(None))
        .group_by(m.Run.pr)
        .order_by(func.max(m.Run.started_at).desc())
        .limit(limit)
    )
    return [{"pr": pr, "runs": n, "last_run": iso(t)} for pr, n, t in session.execute(q)]


# ---------------------------------------------------------------- baseline pins


def _pin_dict(p: m.BaselinePin) -> dict[str, Any]:
    return {
        "id": p.id,
        "lane": p.lane,
        "hardware": p.hardware,
        "run_id": p.run_id,
        "reason": p.reason,
        "author": p.author,
        "active": p.active,
        "created_at": iso(p.created_at),
        "removed_at": iso(p.removed_at),
        "removed_by": p.removed_by,
        "removed_reason": p.removed_reason,
    }


def baseline_pins(session: Session, *, run_id: int | None = None) -> dict[str, Any]:
    """Pinned baselines (`guardrail baseline pin`), active first, each with its reason and author."""
    q = select(m.BaselinePin).order_by(m.BaselinePin.active.desc(), m.BaselinePin.id.desc())
    if run_id is not None:
        q = q.where(m.BaselinePin.run_id == run_id)
    return {"pins": [_pin_dict(p) for p in session.scalars(q)]}
