"""Pinned baselines (`guardrail baseline pin`), as the baselines page, the API and a run's page list them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from guardrail.store import models as m
from web.read.fields import iso
from web.read.statements import AnyRow


def pin_dict(p: m.BaselinePin | AnyRow) -> dict[str, Any]:
    """A pin, from its row object or from a row of statements.PIN_COLS (the same names)."""
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


def baseline_pins(session: Session) -> dict[str, Any]:
    """Pinned baselines, active first, each with its reason and author."""
    q = select(m.BaselinePin).order_by(m.BaselinePin.active.desc(), m.BaselinePin.id.desc())
    return {"pins": [pin_dict(p) for p in session.scalars(q)]}
