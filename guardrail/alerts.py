"""Alerts, from raising to resolution: a check on main raises one per workload for its regressions, the
change-point scan one per workload and commit range; an alert resolves itself when its series returns to its
earlier level, and people triage it. Every change of state goes through `transition`, which records who
changed it and why (an AlertEvent). The states are guardrail.vocabulary's."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from guardrail import clock
from guardrail.errors import NotFound
from guardrail.store import models as m
from guardrail.verdicts import VerdictRow, VerdictsDoc
from guardrail.vocabulary import FIXED, OPEN_STATES, TRIAGE_STATES

if TYPE_CHECKING:  # the change-point statistics (scipy) load only where change points are scanned
    from guardrail.analysis.alerts import Alert as ChangePointAlert

AUTHOR = "guardrail"  # who the alerts' automatic changes are by
CHANGEPOINT = "changepoint:"  # dedup keys of change-point alerts start so; regression ones with "regression:"


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


def raise_regression_alerts(session: Session, run: m.Run, doc: VerdictsDoc) -> None:
    """One alert per workload and hardware for the regressions of this run (its metrics grouped).

    Series of per-run summaries (one value per run, e.g. vLLM-Omni's latency_mean) raise no alert from a single
    run: one value cannot tell an outlier night from a step, so those are left to the change-point scan, which
    waits for the later points that confirm a step (docs/statistics.md measures why)."""
    by_workload: dict[str, list[VerdictRow]] = defaultdict(list)
    for v in doc.verdicts:
        if v.verdict == "regression" and not v.informational and not v.summary:
            by_workload[v.workload].append(v)
    workloads = {r.workload.name: r.workload for r in run.results}
    sha = run.commit.sha if run.commit else None
    for name, vs in by_workload.items():
        key = f"regression:{run.lane}:{run.hardware}:{workloads[name].digest}:{sha or run.id}"
        if session.scalar(select(m.Alert.id).where(m.Alert.dedup_key == key)) is not None:
            continue
        worst = max(vs, key=lambda v: abs(v.change or 0))
        session.add(
            m.Alert(
                dedup_key=key,
                kind="regression",
                workload_id=workloads[name].id,
                hardware=run.hardware,
                lane=run.lane,
                metrics=[
                    {
                        "metric": v.metric,
                        "series_id": v.series_id,
                        "change": v.change,
                        "p_value": v.p_value,
                        "before": v.baseline.median,
                        "threshold": v.threshold,
                    }
                    for v in vs
                ],
                change=worst.change,
                to_commit=sha,
                run_id=run.id,
                updated_at=clock.now(),
            )
        )


def _returned(metric: Mapping[str, Any], level: float) -> bool:
    """Back at the level before the change: within the threshold of it, or closer to it than to the new one."""
    off = abs(level / metric["before"] - 1)
    return off <= max(metric.get("threshold", 0.01), abs(metric.get("change") or 0) / 2)


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


def known_change_points(session: Session) -> set[str]:
    """The keys (guardrail.analysis.alerts.Alert.key) of the change points already alerted on."""
    keys = session.scalars(select(m.Alert.dedup_key).where(m.Alert.kind == "changepoint"))
    return {k.removeprefix(CHANGEPOINT) for k in keys}


def raise_change_point_alerts(
    session: Session,
    found: Sequence[ChangePointAlert[tuple[int, str, int]]],
    *,
    lane: str,
    series: Mapping[int, m.Series],
    last_run: Mapping[int, int],
    min_magnitude: float,
) -> list[m.Alert]:
    """Store the change points found on `lane` as alerts. Each member's series key is (workload id, hardware,
    series id); `last_run` is the newest run of each series id."""

    def finite(x: float) -> float | None:  # a change from a zero level has no ratio
        return x if math.isfinite(x) else None

    created = []
    for alert in found:
        workload_id, hardware, _ = alert.members[0][0]
        row = m.Alert(
            dedup_key=f"{CHANGEPOINT}{alert.key}",
            kind="changepoint",
            workload_id=workload_id,
            hardware=hardware,
            lane=lane,
            change=finite(alert.worst_change),
            from_commit=alert.commit_range[0],
            to_commit=alert.commit_range[1],
            run_id=max(last_run[k[2]] for k, _ in alert.members),
            updated_at=clock.now(),
            metrics=[
                {
                    "metric": series[k[2]].metric,
                    "series_id": k[2],
                    "change": finite(cp.change_point.change),
                    "p_value": cp.change_point.p_value,
                    "index": cp.change_point.index,
                    "direction": series[k[2]].direction,
                    "before": cp.change_point.before,
                    "after": cp.change_point.after,
                    "threshold": min_magnitude,
                }
                for k, cp in alert.members
            ],
            note=None if alert.kind in ("regression", "change") else f"{alert.kind} change point",
        )
        session.add(row)
        created.append(row)
    session.flush()
    return created
