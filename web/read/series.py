"""Series: finding them, one series' history (points, baseline band, change points, environment changes,
sibling series on other hardware), and every sample of one series in one run."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from guardrail.errors import NotFound
from guardrail.history import Point, series_points
from guardrail.store import models as m
from web.read.fields import iso
from web.read.statements import AnyRow, series_statements

if TYPE_CHECKING:  # the change-point statistics (scipy) load only when a series is drawn
    from guardrail.analysis.changepoints import ChangePoint

MAX_POINTS = 400  # newest points drawn on a series chart


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
def _change_points(values: tuple[float, ...]) -> tuple[ChangePoint, ...]:
    """Change points of a series' drawn values, memoised by the values themselves (the content key), so a
    cached answer can never be stale: new results change the tuple."""
    from guardrail.analysis.changepoints import detect_change_points

    return tuple(detect_change_points(list(values)))


def _series_row_dict(r: AnyRow) -> dict[str, Any]:
    """A row of statements.SERIES_COLS as find_series writes a series."""
    return {
        "id": r[0],
        "workload": r[1],
        "workload_id": r[2],
        "metric": r[3],
        "hardware": r[4],
        "unit": r[5],
        "direction": r[6],
    }


def _series_and_siblings(conn: Connection, series_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The series and its siblings (same workload and metric, other hardware, by hardware) in one query."""
    rows = conn.execute(series_statements(conn.dialect.name).series, {"series_id": series_id}).all()
    this = next((r for r in rows if r[0] == series_id), None)
    if this is None:
        raise NotFound(f"no series {series_id}")
    return _series_row_dict(this), [_series_row_dict(r) for r in rows if r[0] != series_id]


def _baseline_band(conn: Connection, s: dict[str, Any], pts: list[Point]) -> dict[str, Any] | None:
    """The band the newest check judged against: baseline median +- its practical threshold; without a
    check, the median of the newest 20 points +- 2 robust standard deviations."""
    v = conn.execute(series_statements(conn.dialect.name).band, {"series_id": s["id"]}).first()
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


def _changepoint_alerts(conn: Connection, s: dict[str, Any], pts: list[Point]) -> list[dict[str, Any]]:
    index_of = {p.commit: i for i, p in enumerate(pts) if p.commit}
    out = []
    sql = series_statements(conn.dialect.name)
    for a in conn.execute(sql.cp_alerts, {"workload_id": s["workload_id"], "hardware": s["hardware"]}):
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


def _environment_changes(conn: Connection, pts: list[Point]) -> list[dict[str, Any]]:
    ids = {p.environment_id for p in pts}
    if len(ids) < 2:
        return []
    envs = {e.id: e for e in conn.execute(series_statements(conn.dialect.name).envs, {"ids": list(ids)})}
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
    rows = conn.execute(series_statements(conn.dialect.name).samples, {"series_id": series_id, "run_id": run_id}).all()
    if not rows:
        raise NotFound(f"series {series_id} has no samples in run {run_id}")
    return {
        "series_id": series_id,
        "run_id": run_id,
        "repeats": [np.frombuffer(blob, dtype="<f8").tolist() for _, _, blob in rows],
    }
