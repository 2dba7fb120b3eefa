"""Bisections (`guardrail bisect`) as the alert page and the API show them: progress, each step, and the culprit
with its commit link and the p-values of both sides."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from guardrail.analysis.bisection import steps_left
from guardrail.bisect import document, observe
from guardrail.errors import NotFound
from guardrail.store import models as m
from web.read.alerts import compare_url
from web.read.fields import commit_url


def _repo_of(session: Session, shas: list[str]) -> str | None:
    """The owner/name the range's commits were stored under (the runs' source), when any says so."""
    q = select(m.Commit.repo).where(m.Commit.sha.in_(shas), m.Commit.repo != "").limit(1)
    return session.scalars(q).first()


def bisection_dict(session: Session, b: m.Bisection) -> dict[str, Any]:
    """One bisection as guardrail.bisection/v1 plus what a page draws: progress, links."""
    doc = document(b)
    commits: list[str] = list(b.commits)
    repo = _repo_of(session, [commits[0], commits[-1], *([b.culprit] if b.culprit else [])])
    # positions a step asked for (measured, dispatched or printed)
    tried = {s.position for s in b.steps if s.action == "run" and s.position is not None}
    # positions with a stored repeat of the bisected metric (what `decide` reads), beside those only asked for
    stored = observe(session, commits, b.workload, b.hardware)
    measured = [p for p, d in stored.items() if b.metric in d.metrics]
    doc["progress"] = {
        "commits": len(commits),
        "tried": len(tried),
        "measured": len(measured),
        "open": max(0, b.high - b.low - 1),
        "midpoints_left": 0 if b.state != "running" else steps_left(b.low, b.high),
    }
    doc["culprit_url"] = commit_url(repo, b.culprit)
    doc["range_url"] = compare_url(repo, commits[b.low], commits[b.high])
    return doc


def bisection(session: Session, bisection_id: int) -> dict[str, Any]:
    b = session.get(m.Bisection, bisection_id)
    if b is None:
        raise NotFound(f"no bisection {bisection_id}")
    return bisection_dict(session, b)


def alert_bisection(session: Session, alert_id: int) -> dict[str, Any]:
    """The newest bisection of an alert ({"bisection": null} when none was started), and how many there were."""
    if session.get(m.Alert, alert_id) is None:
        raise NotFound(f"no alert {alert_id}")
    rows = list(
        session.scalars(select(m.Bisection).where(m.Bisection.alert_id == alert_id).order_by(m.Bisection.id.desc()))
    )
    return {
        "schema": "guardrail.alert-bisection/v1",
        "alert_id": alert_id,
        "bisection": bisection_dict(session, rows[0]) if rows else None,
        "bisections": len(rows),
    }
