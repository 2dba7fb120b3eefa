"""Alerts as the dashboard and the API list them, and one alert with its triage history. Triage itself (the
write) is guardrail.alerts.triage; alert_dict renders what it returns. The list is the guardrail.alerts/v1
document `guardrail alerts --format json` prints, with the dashboard's fields added."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail.alerts import SCHEMA, alert_doc, headline, metric_doc
from guardrail.errors import NotFound
from guardrail.store import models as m
from web.read.fields import iso


def alert_dict(a: m.Alert) -> dict[str, Any]:
    return {
        **alert_doc(a),
        "workload_id": a.workload_id,
        "lane": a.lane,
        "metrics": [{**x, **metric_doc(x)} for x in a.metrics or []],
        "change": a.change,
        "headline": headline(a.metrics or []),  # the worst metric in the alert's own direction
        "run_id": a.run_id,
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
        "schema": SCHEMA,
        "total": total,
        "limit": limit,
        "offset": offset,
        "alerts": [alert_dict(a) for a in rows],
    }


def alert_detail(session: Session, alert_id: int) -> dict[str, Any]:
    a = session.get(m.Alert, alert_id)
    if a is None:
        raise NotFound(f"no alert {alert_id}")
    events = session.scalars(
        select(m.AlertEvent).where(m.AlertEvent.alert_id == alert_id).order_by(m.AlertEvent.id.desc())
    )
    return {
        **alert_dict(a),
        "events": [
            {"state": e.state, "note": e.note, "author": e.author, "created_at": iso(e.created_at)} for e in events
        ],
    }
