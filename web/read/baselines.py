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


def _policies() -> dict[str, Any]:
    """The lane policies in baselines/ (BASELINES_DIR), by lane; a file that is not one is left out."""
    from guardrail.errors import InputError
    from guardrail.policy import BASELINES_DIR, load_lane_policy

    out: dict[str, Any] = {}
    for path in sorted(BASELINES_DIR.glob("*.yaml")):
        try:
            out[path.stem] = load_lane_policy(path.stem)
        except (InputError, ValueError, OSError):  # rerun-policy.yaml and anything else that is no lane policy
            continue
    return out


def lane_policies(session: Session) -> list[dict[str, Any]]:
    """Each lane's baseline policy (window, anchor, thresholds by metric family, FDR, ...) and the windows of
    main's history that the newest check of that lane was judged against (one query per lane)."""
    from guardrail.policy import Policy

    policies = _policies()
    stored = set(session.scalars(select(m.Run.lane).distinct()))
    out = []
    for lane in sorted(set(policies) | stored):
        p = policies.get(lane) or Policy(lane=lane)
        row = session.execute(
            select(m.Check.id, m.Check.created_at, m.Check.doc, m.Run.id, m.Run.hardware)
            .join(m.Run, m.Check.run_id == m.Run.id)
            .where(m.Run.lane == lane)
            .order_by(m.Check.created_at.desc(), m.Check.id.desc())
            .limit(1)
        ).first()
        baseline = (row.doc or {}).get("baseline") or {} if row else {}
        out.append(
            {
                "lane": lane,
                "file": f"baselines/{lane}.yaml" if lane in policies else None,
                "description": p.description,
                "source": p.baseline.source,
                "lanes": list(p.baseline.lanes),
                "branch": p.baseline.branch,
                "window": p.baseline.window,
                "noise_history": p.baseline.noise_history,
                "anchor": p.baseline.anchor,
                "same_software": list(p.baseline.same_software),
                "cold_start": p.baseline.cold_start,
                "thresholds": dict(p.thresholds),
                "informational": list(p.informational.root),
                "fdr": p.fdr,
                "alpha": p.alpha,
                "max_looks": p.max_looks,
                "raise_alerts": p.raise_alerts,
                "latest": None
                if row is None
                else {
                    "check_id": row[0],
                    "checked_at": iso(row[1]),
                    "run_id": row[3],
                    "hardware": row[4],
                    "source": baseline.get("source"),
                    "runs": baseline.get("runs"),
                    "windows": baseline.get("windows") or [],
                },
            }
        )
    return out
