"""Series: finding them, one series' history (points, baseline band, change points, environment changes,
sibling series on other hardware), and every sample of one series in one run."""

from __future__ import annotations

import difflib
import functools
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, func, select
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
    q: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Series by exact workload/metric/hardware (the PR comment's links) and a free-text query `q`.

    `q` is split on spaces; every token must occur, in any order and case, in the series' workload, metric or
    hardware ("hunyuan tp2" finds hunyuan_image_tp2_cfgp2 on every hardware). `-`, `_`, `.`, `/` count as one
    separator, so "hunyuan-image" finds "hunyuan_image". When no series holds every token, a typo-tolerant
    fallback (difflib) keeps the series whose words are each close to a token ("hunyan" -> "hunyuan"), best
    first. Exact fields that match nothing are searched as text the same way. Each item says how it matched:
    `match` is "exact", "substring" or "fuzzy"."""
    text = (q or "").strip()
    # Without a query the first `limit` rows are all that is shown: only they are read.
    exact = _series_rows(session, workload=workload, metric=metric, hardware=hardware, limit=None if text else limit)
    if not exact and (workload or metric or hardware):
        # A typed-in field that names no series exactly is read as search text (the form's old behaviour was
        # exact only, so "hunyuan" as a workload found nothing).
        exact = _series_rows(session)
        text = " ".join(x for x in (workload, metric, hardware, text) if x)
    if not text:
        return [{**r, "match": "exact"} for r in exact[:limit]]
    return search_rows(exact, text)[:limit]


# A query is matched on "words": these characters separate them both in names and in queries.
_SEP = re.compile(r"[\s\-_./:@=,+]+")
FUZZY_CUTOFF = 0.75  # difflib ratio a query word needs against some word of a series (hunyan/hunyuan: 0.92)
FUZZY_MIN_LEN = 3  # shorter query words must occur as they are; at 3, tp2 vs tp4 is 0.67, below the cutoff


def _fold(text: str) -> str:
    return _SEP.sub("_", text.lower()).strip("_")


def search_rows(rows: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """`rows` (series dicts) that match the query `text`: every token as a substring, else the fuzzy fallback."""
    tokens = [t for t in (_fold(x) for x in text.split()) if t]
    if not tokens:
        return [{**r, "match": "exact"} for r in rows]
    hays = [f"{_fold(r['workload'])} {_fold(r['metric'])} {_fold(r['hardware'])}" for r in rows]
    hits = [{**r, "match": "substring"} for r, hay in zip(rows, hays, strict=True) if all(t in hay for t in tokens)]
    if hits:
        return hits
    parts = [p for t in tokens for p in t.split("_") if p]
    # Each distinct word of the store is compared with each query word once (the vocabulary is much smaller
    # than the series list: a few hundred words for thousands of series).
    words_of = [set(hay.replace(" ", "_").split("_")) for hay in hays]
    vocab = set().union(*words_of) if words_of else set()
    best: dict[tuple[str, str], float] = {}
    for part in parts:
        matcher = difflib.SequenceMatcher(b=part, autojunk=False)
        for w in vocab:
            if part in w:
                best[(part, w)] = 1.0
            elif len(part) >= FUZZY_MIN_LEN:
                matcher.set_seq1(w)
                if matcher.real_quick_ratio() >= FUZZY_CUTOFF and matcher.quick_ratio() >= FUZZY_CUTOFF:
                    ratio = matcher.ratio()
                    if ratio >= FUZZY_CUTOFF:
                        best[(part, w)] = ratio
    scored: list[tuple[float, str, str, str, dict[str, Any]]] = []
    for row, words in zip(rows, words_of, strict=True):
        per_part = [max((best.get((p, w), 0.0) for w in words), default=0.0) for p in parts]
        if per_part and min(per_part) > 0:
            scored.append((-sum(per_part) / len(per_part), row["workload"], row["metric"], row["hardware"], row))
    scored.sort(key=lambda x: x[:4])
    return [{**x[4], "match": "fuzzy", "score": round(-x[0], 3)} for x in scored]


def _series_rows(
    session: Session,
    *,
    workload: str | None = None,
    metric: str | None = None,
    hardware: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Series dicts (the columns shown) by exact fields, ordered by name; Core rows, no ORM objects."""
    q = select(
        m.Series.id,
        m.Workload.name,
        m.Series.workload_id,
        m.Series.metric,
        m.Series.hardware,
        m.Series.unit,
        m.Series.direction,
    ).join(m.Workload, m.Series.workload_id == m.Workload.id)
    if workload:
        q = q.where(m.Workload.name == workload)
    if metric:
        q = q.where(m.Series.metric == metric)
    if hardware:
        q = q.where(m.Series.hardware == hardware)
    rows = session.execute(q.order_by(m.Workload.name, m.Series.metric, m.Series.hardware).limit(limit))
    return [
        {
            "id": r.id,
            "workload": r.name,
            "workload_id": r.workload_id,
            "metric": r.metric,
            "hardware": r.hardware,
            "unit": r.unit,
            "direction": r.direction,
        }
        for r in rows
    ]


def series_detail(
    session: Session,
    series_id: int,
    *,
    lane: str | None = None,
    branch: str | None = None,
    limit: int = MAX_POINTS,
    since: datetime | None = None,
    until: datetime | None = None,
    overlay: str | None = None,
) -> dict[str, Any]:
    """One series' history, oldest first. `since`/`until` (UTC) narrow the points to a time range before the
    newest `limit` are kept; `overlay` ("hardware" or "lane") adds the same workload and metric on the other
    hardware or lanes as extra lines (time, value only)."""
    conn = session.connection()
    s, siblings = _series_and_siblings(conn, series_id)
    lanes_seen: set[str] = set()
    ranged = since is not None or until is not None
    pts = series_points(
        session,
        series_id,
        lanes=[lane] if lane else None,
        branch=branch,
        limit=None if ranged else limit,
        lanes_seen=lanes_seen,
    )
    if ranged:
        pts = [p for p in pts if _in_range(p.time, since, until)][-limit:]
    runs = _run_meta(conn, series_id, [p.run_id for p in pts])
    points = [
        {
            "run_id": p.run_id,
            "t": _epoch(p.time),
            **runs.get(p.run_id, _NO_META),
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
        "overlay": _overlay(session, s, siblings, sorted(lanes_seen), overlay, lane, branch, since, until, limit),
    }


_NO_META: dict[str, Any] = {
    "lane": None,
    "branch": None,
    "pr": None,
    "kind": "main",
    "band_low": None,
    "band_high": None,
    "band_median": None,
    "ci_low": None,
    "ci_high": None,
}


def _epoch(t: datetime) -> float:
    """Seconds since 1970 of a stored time (stored naive, in UTC): the chart's x value, so gaps show."""
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _in_range(t: datetime, since: datetime | None, until: datetime | None) -> bool:
    e = _epoch(t)
    return (since is None or e >= _epoch(since)) and (until is None or e < _epoch(until))


def _run_meta(conn: Connection, series_id: int, run_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per run: its lane, branch and PR (a run with a PR number is a presubmit point, never main's line) and
    the band of the baseline that judged it: that run's own stored verdict on this series (its baseline
    median +- the practical threshold, and the change's confidence interval), the newest check's if several."""
    if not run_ids:
        return {}
    from guardrail.history import id_in

    d = conn.dialect.name
    out: dict[int, dict[str, Any]] = {}
    for rid, lane, branch, pr in conn.execute(
        select(m.Run.id, m.Run.lane, m.Run.branch, m.Run.pr).where(id_in(d, m.Run.id)), {"ids": run_ids}
    ):
        out[rid] = {**_NO_META, "lane": lane, "branch": branch, "pr": pr, "kind": "main" if pr is None else "pr"}
    q = (
        select(m.Check.run_id, m.Verdict.baseline_median, m.Verdict.threshold, m.Verdict.ci_low, m.Verdict.ci_high)
        .join(m.Check, m.Verdict.check_id == m.Check.id)
        .where(m.Verdict.series_id == series_id, id_in(d, m.Check.run_id))
        .order_by(m.Verdict.id)
    )
    for rid, med, thr, lo, hi in conn.execute(q, {"ids": run_ids}):
        if rid in out and med:
            t = thr or 0.0
            out[rid].update(band_median=med, band_low=med * (1 - t), band_high=med * (1 + t), ci_low=lo, ci_high=hi)
    return out


MAX_OVERLAYS = 6  # extra lines drawn at most


def _overlay(
    session: Session,
    s: dict[str, Any],
    siblings: list[dict[str, Any]],
    lanes: list[str],
    overlay: str | None,
    lane: str | None,
    branch: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The same workload and metric on other hardware (`hardware`) or other lanes (`lane`), each a line of
    (time, value) over the same range; PR runs are left out of these lines like main's."""
    if overlay == "hardware":
        wanted = [(f"{x['hardware']}", x["id"], [lane] if lane else None) for x in siblings]
    elif overlay == "lane":
        wanted = [(f"lane {name}", s["id"], [name]) for name in lanes if name != lane]
    else:
        return []
    out = []
    conn = session.connection()
    for label, sid, lanes_ in wanted[:MAX_OVERLAYS]:
        pts = series_points(session, sid, lanes=lanes_, branch=branch, limit=None)
        pts = [p for p in pts if _in_range(p.time, since, until)][-limit:]
        meta = _run_meta(conn, sid, [p.run_id for p in pts])
        pts = [p for p in pts if meta.get(p.run_id, _NO_META)["kind"] == "main"]
        if pts:
            out.append(
                {"label": label, "series_id": sid, "t": [_epoch(p.time) for p in pts], "values": [p.value for p in pts]}
            )
    return out


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


SPARK_RESULTS = 20  # newest results drawn in a series index sparkline


def sparklines(session: Session, series_ids: list[int]) -> dict[int, list[float]]:
    """Per series, the per-result median of its newest SPARK_RESULTS results (oldest first) for the index's
    sparklines, in one windowed query over the measurements (at most 8 repeats a result read)."""
    if not series_ids:
        return {}
    from guardrail.history import id_in

    conn = session.connection()
    # Ordered by the run's start (result ids follow ingest order, not time); PR runs are not main's line.
    rn = (
        func.row_number()
        .over(partition_by=m.Measurement.series_id, order_by=(m.Run.started_at.desc(), m.Measurement.id))
        .label("rn")
    )
    inner = (
        select(m.Measurement.series_id, m.Measurement.result_id, m.Measurement.median, m.Run.started_at, rn)
        .join(m.Result, m.Measurement.result_id == m.Result.id)
        .join(m.Run, m.Result.run_id == m.Run.id)
        .where(id_in(conn.dialect.name, m.Measurement.series_id), m.Run.pr.is_(None), m.Result.status == "ok")
        .subquery()
    )
    q = select(inner.c.series_id, inner.c.result_id, inner.c.median, inner.c.started_at).where(
        inner.c.rn <= SPARK_RESULTS * 8
    )
    per: dict[int, dict[tuple[Any, int], list[float]]] = {}
    for sid, rid, med, started in conn.execute(q, {"ids": series_ids}):
        if med is not None:
            per.setdefault(sid, {}).setdefault((started, rid), []).append(med)
    return {
        sid: [float(np.median(v)) for _, v in sorted(results.items())][-SPARK_RESULTS:] for sid, results in per.items()
    }
