"""Pull requests: those with runs, and one PR's checks (its pushes), each with the verdicts document its
comment was rendered from."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail.errors import NotFound
from guardrail.store import models as m
from web.read.fields import iso
from web.read.runs import run_dict


def pr_checks(session: Session, pr: int, *, limit: int = 20) -> dict[str, Any]:
    """The checks of the PR's runs, newest first."""
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
                "run": run_dict(run),
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
