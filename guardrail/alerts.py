"""Alerts, one per change of a workload on a hardware: raised by a check on main, placed at its commit range by
the change-point scan, resolved when the series returns, triaged by people.

An alert groups every metric that moved with the change, each with its direction and before -> after levels;
its kind says whether any of them got worse (`regression`) or all got better (`improvement`). A check raises
none for a regression that an open alert already holds (the nights after a step); the scan joins the check's
alert rather than raising a second one. Every change of state goes through `transition`, which records who
changed it and why (an AlertEvent). The states and kinds are guardrail.vocabulary's."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from guardrail import clock
from guardrail.errors import NotFound
from guardrail.store import models as m
from guardrail.verdicts import VerdictRow, VerdictsDoc
from guardrail.vocabulary import FIXED, OPEN_STATES, TRIAGE_STATES, AlertKind

if TYPE_CHECKING:  # the change-point statistics (scipy) load only where change points are scanned
    from guardrail.analysis.alerts import Alert as ChangePointAlert

AUTHOR = "guardrail"  # who the alerts' automatic changes are by
CHANGEPOINT = "changepoint:"  # dedup keys of alerts placed at a change point start so
REGRESSION = "regression:"  # and those a check raised, not yet placed, with this
SCHEMA = "guardrail.alerts/v1"


class UnknownAlerts(NotFound):
    """Some of the alerts asked for are not in the store (the web answers 404, the CLI exit code 2)."""


def transition(session: Session, alert: m.Alert, state: str, *, author: str, note: str | None, now: datetime) -> None:
    """Move `alert` to `state`: closing states resolve it, open states re-open it; the change is recorded."""
    alert.state = state
    alert.updated_by, alert.updated_at = author, now
    alert.resolved_at = None if state in OPEN_STATES else (alert.resolved_at or now)
    session.add(m.AlertEvent(alert_id=alert.id, state=state, note=note, author=author, created_at=now))


def triage(
    session: Session, alert_ids: Sequence[int], *, state: str, note: str | None, issue_url: str | None, author: str
) -> list[m.Alert]:
    """Set the triage state of alerts (all or none); a note or an issue link given replaces the alert's."""
    if state not in TRIAGE_STATES:
        raise ValueError(f"state must be one of {', '.join(TRIAGE_STATES)}")
    rows = session.scalars(select(m.Alert).where(m.Alert.id.in_(alert_ids))).all()
    missing = sorted(set(alert_ids) - {a.id for a in rows})
    if missing:
        raise UnknownAlerts(f"no alert {', '.join(map(str, missing))}")
    now = clock.now()
    for a in rows:
        if note is not None:
            a.note = note
        if issue_url is not None:
            a.issue_url = issue_url or None
        transition(session, a, state, author=author, note=note, now=now)
    session.flush()
    return list(rows)


# ------------------------------------------------------------------ metrics of an alert


def worse(entry: Mapping[str, Any]) -> bool:
    """Whether a metric entry's change made it worse (metrics without a direction are lower-is-better)."""
    change = entry.get("change") or 0
    return bool(change < 0 if entry.get("direction") == "higher_is_better" else change > 0)


def kind_of(metrics: Sequence[Mapping[str, Any]]) -> AlertKind:
    """A regression if any metric got worse, else an improvement."""
    return "regression" if any(worse(x) for x in metrics) else "improvement"


def worst_metric(metrics: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The largest change in the alert's own direction: the worst regression, or the largest improvement."""
    regression = kind_of(metrics) == "regression"
    same = [x for x in metrics if x.get("change") is not None and worse(x) == regression]
    return max(same, key=lambda x: abs(x["change"]), default=None)


def _after(entry: Mapping[str, Any]) -> float | None:
    """The metric's new level (entries written before `after` was stored give it through `change`)."""
    if entry.get("after") is not None:
        return float(entry["after"])
    if entry.get("before") and entry.get("change") is not None:
        return float(entry["before"]) * (1 + entry["change"])
    return None


def _at_new_level(level: float, entry: Mapping[str, Any]) -> bool:
    """`level` continues the entry's change: on the same side of its "before", and within the threshold of its
    "after" or closer to it than to "before"."""
    before, after = entry.get("before"), _after(entry)
    if not before or not after or (level - before) * (after - before) <= 0:
        return False
    return abs(level / after - 1) <= max(entry.get("threshold") or 0.01, abs(after / before - 1) / 2)


def _open_alerts(session: Session, workload_id: int, hardware: str, lane: str) -> list[m.Alert]:
    q = select(m.Alert).where(
        m.Alert.workload_id == workload_id,
        m.Alert.hardware == hardware,
        m.Alert.lane == lane,
        m.Alert.state.in_(OPEN_STATES),
    )
    return list(session.scalars(q.order_by(m.Alert.id)))


def _holds(alert: m.Alert, series_id: int | None, level: float | None) -> bool:
    """The alert names this series and `level` is at the new level of its change."""
    return level is not None and any(
        x.get("series_id") == series_id and _at_new_level(level, x) for x in alert.metrics or []
    )


def _by_series(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per series, the first given."""
    out: dict[Any, dict[str, Any]] = {}
    for x in entries:
        out.setdefault(x.get("series_id"), x)
    return list(out.values())


def _set_metrics(alert: m.Alert, metrics: list[dict[str, Any]]) -> None:
    alert.metrics = metrics
    alert.kind = kind_of(metrics)
    worst = worst_metric(metrics)
    alert.change = worst["change"] if worst else None


# ------------------------------------------------------------------ raised by a check on main


def _verdict_metric(v: VerdictRow) -> dict[str, Any]:
    return {
        "metric": v.metric,
        "series_id": v.series_id,
        "unit": v.unit,
        "direction": v.direction,
        "before": v.baseline.median,
        "after": v.candidate.median,
        "change": v.change,
        "p_value": v.p_value,
        "threshold": v.threshold,
    }


def raise_regression_alerts(session: Session, run: m.Run, doc: VerdictsDoc) -> None:
    """One alert per workload and hardware for the regressions of this run, with the improvements of the same
    workload (one change can move metrics both ways). A regression that an open alert already holds (the same
    series, at the alert's new level) is not a new change: the nights after a step raise nothing for it.

    Series of per-run summaries (one value per run, e.g. vLLM-Omni's latency_mean) raise no alert from a single
    run: one value cannot tell an outlier night from a step, so those are left to the change-point scan, which
    waits for the later points that confirm a step (docs/statistics.md measures why)."""
    by_workload: dict[str, list[VerdictRow]] = defaultdict(list)
    for v in doc.verdicts:
        if v.verdict in ("regression", "improvement") and not v.informational and not v.summary:
            by_workload[v.workload].append(v)
    workloads = {r.workload.name: r.workload for r in run.results}
    sha = run.commit.sha if run.commit else None
    for name, vs in by_workload.items():
        workload = workloads[name]
        key = f"{REGRESSION}{run.lane}:{run.hardware}:{workload.digest}:{sha or run.id}"
        if session.scalar(select(m.Alert.id).where(m.Alert.dedup_key == key)) is not None:
            continue
        held = _open_alerts(session, workload.id, run.hardware, run.lane)
        fresh = [v for v in vs if not any(_holds(a, v.series_id, v.candidate.median) for a in held)]
        if not any(v.verdict == "regression" for v in fresh):
            continue
        alert = m.Alert(
            dedup_key=key, workload_id=workload.id, hardware=run.hardware, lane=run.lane, to_commit=sha, run_id=run.id
        )
        _set_metrics(alert, [_verdict_metric(v) for v in fresh])
        alert.updated_at = clock.now()
        session.add(alert)
    session.flush()


def _returned(metric: Mapping[str, Any], level: float) -> bool:
    """Back at the level before the change: within the threshold of it, or closer to it than to the new one."""
    off = abs(level / metric["before"] - 1)
    return off <= max(metric.get("threshold") or 0.01, abs(metric.get("change") or 0) / 2)


def resolve_returned_alerts(session: Session, run: m.Run, doc: VerdictsDoc) -> None:
    """An open alert resolves itself (to `fixed`) when every metric it names is back at its earlier level in
    this run."""
    now_level = {v.series_id: v.candidate.median for v in doc.verdicts if v.candidate.median is not None}
    workload_ids = {r.workload_id for r in run.results}
    alerts = session.scalars(
        select(m.Alert).where(
            m.Alert.workload_id.in_(workload_ids),
            m.Alert.hardware == run.hardware,
            m.Alert.lane == run.lane,
            m.Alert.state.in_(OPEN_STATES),
            m.Alert.run_id != run.id,
        )
    )
    for alert in alerts:
        metrics = [x for x in alert.metrics if x.get("before")]
        if not metrics or any(x["series_id"] not in now_level for x in metrics):
            continue
        if all(_returned(x, now_level[x["series_id"]]) for x in metrics):
            note = f"series returned to its earlier level in run {run.id}"
            transition(session, alert, FIXED, author=AUTHOR, note=note, now=clock.now())


# ------------------------------------------------------------------ placed by the change-point scan


def known_change_points(session: Session) -> dict[str, set[tuple[int, str, int]]]:
    """The keys (guardrail.analysis.alerts.Alert.key) of the change points already alerted on, each with the
    series it names as (workload id, hardware, series id)."""
    rows = session.scalars(select(m.Alert).where(m.Alert.dedup_key.startswith(CHANGEPOINT)))
    return {
        a.dedup_key.removeprefix(CHANGEPOINT): {(a.workload_id, a.hardware, x["series_id"]) for x in a.metrics or []}
        for a in rows
    }


def _finite(x: float) -> float | None:  # a change from a zero level has no ratio
    return x if math.isfinite(x) else None


def _same_change(alert: m.Alert, metrics: Sequence[Mapping[str, Any]]) -> bool:
    """An open alert holds the change point's change: a series of both, whose alert level is at the change
    point's new level (or the other way round, for a change point placed before the check saw it)."""
    by_series = {x["series_id"]: x for x in metrics}
    for x in alert.metrics or []:
        cp = by_series.get(x.get("series_id"))
        level = _after(x)
        if cp is not None and level is not None and (_at_new_level(level, cp) or _at_new_level(cp["after"], x)):
            return True
    return False


def raise_change_point_alerts(
    session: Session,
    found: Sequence[ChangePointAlert[tuple[int, str, int]]],
    *,
    lane: str,
    series: Mapping[int, m.Series],
    last_run: Mapping[int, int],
    thresholds: Mapping[int, float],
) -> list[m.Alert]:
    """Store the change points found on `lane` as alerts; returns those created or changed. Each member's series
    key is (workload id, hardware, series id); `last_run` is the newest run of each series id, `thresholds` the
    smallest change the scan looked for on it.

    A change point whose change an open alert already holds is that alert: a check's alert is placed at the
    change point's commit range (the other checks' alerts of the same change are merged into it and removed),
    and an alert placed at another range gains the metrics it lacked, keeping its range."""
    changed = []
    now = clock.now()
    for alert in found:
        workload_id, hardware, _ = alert.members[0][0]
        metrics = [
            {
                "metric": series[k[2]].metric,
                "series_id": k[2],
                "unit": series[k[2]].unit,
                "direction": series[k[2]].direction,
                "before": cp.change_point.before,
                "after": cp.change_point.after,
                "change": _finite(cp.change_point.change),
                "p_value": cp.change_point.p_value,
                "index": cp.change_point.index,
                "threshold": thresholds[k[2]],
            }
            for k, cp in alert.members
        ]
        run_id = max(last_run[k[2]] for k, _ in alert.members)
        same = [a for a in _open_alerts(session, workload_id, hardware, lane) if _same_change(a, metrics)]
        placed = [a for a in same if a.dedup_key.startswith(CHANGEPOINT)]
        # the alert of this very change point (open or not) gains a metric found there a night later
        keyed = session.scalar(select(m.Alert).where(m.Alert.dedup_key == f"{CHANGEPOINT}{alert.key}"))
        if keyed is not None and keyed not in placed:
            placed.insert(0, keyed)
        row = placed[0] if placed else same[0] if same else None
        # other checks' alerts of this change, untouched by people, are merged into it
        merged = [a for a in same if a is not row and a.state == "untriaged" and a.dedup_key.startswith(REGRESSION)]
        if row is None:
            row = m.Alert(workload_id=workload_id, hardware=hardware, lane=lane, updated_at=now)
            row.note = None if alert.kind in ("regression", "improvement", "change") else f"{alert.kind} change point"
            session.add(row)
            entries = metrics
        elif placed:  # placed at another range already: it keeps that range and gains what it lacked
            entries = [*row.metrics, *metrics]
        else:
            note = f"placed at change point {alert.commit_range[0] or '(start)'}..{alert.commit_range[1]}"
            transition(session, row, row.state, author=AUTHOR, note=note, now=now)
            entries = [*metrics, *row.metrics]
        combined = _by_series([*entries, *(x for other in merged for x in other.metrics)])
        for other in merged:
            session.execute(delete(m.AlertEvent).where(m.AlertEvent.alert_id == other.id))
            session.delete(other)
        if placed and not merged and len(combined) == len(row.metrics):
            continue
        if not placed:
            row.dedup_key = f"{CHANGEPOINT}{alert.key}"
            row.from_commit, row.to_commit = alert.commit_range
        row.run_id = max(row.run_id or 0, run_id)
        _set_metrics(row, combined)
        changed.append(row)
    session.flush()
    return changed


# ------------------------------------------------------------------ the guardrail.alerts/v1 document


def list_alerts(session: Session, *, states: Sequence[str] | None = None, kind: str | None = None) -> list[m.Alert]:
    """Newest first."""
    q = select(m.Alert)
    if states:
        q = q.where(m.Alert.state.in_(states))
    if kind:
        q = q.where(m.Alert.kind == kind)
    return list(session.scalars(q.order_by(m.Alert.created_at.desc(), m.Alert.id.desc())))


def metric_doc(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": entry.get("metric") or entry.get("name"),
        "unit": entry.get("unit"),
        "direction": entry.get("direction"),
        "before": entry.get("before"),
        "after": _after(entry),
        "change": entry.get("change"),
    }


def alert_doc(a: m.Alert) -> dict[str, Any]:
    """One alert as guardrail.alerts/v1 lists it."""
    return {
        "id": a.id,
        "kind": a.kind,
        "workload": a.workload.name,
        "hardware": a.hardware,
        "from_commit": a.from_commit,
        "to_commit": a.to_commit,
        "detected_at": a.created_at.isoformat() if a.created_at else None,
        "state": a.state,
        "metrics": [metric_doc(x) for x in a.metrics or []],
    }


def alerts_doc(alerts: Sequence[m.Alert]) -> dict[str, Any]:
    return {"schema": SCHEMA, "alerts": [alert_doc(a) for a in alerts]}


def headline(metrics: Sequence[Mapping[str, Any]]) -> str:
    """The worst metric by direction, e.g. "+6.2% denoise_step_latency (worse)"."""
    worst = worst_metric(metrics)
    if worst is None:
        return "no measured change"
    name = worst.get("metric") or worst.get("name")
    return f"{worst['change']:+.1%} {name} ({'worse' if worse(worst) else 'better'})"
