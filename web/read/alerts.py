"""Alerts as the dashboard and the API list them, and one alert with its triage history. Triage itself (the
write) is guardrail.alerts.triage; alert_dict renders what it returns. The list is the guardrail.alerts/v1
document `guardrail alerts --format json` prints, with the dashboard's fields added."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail.alerts import SCHEMA, alert_doc, headline, metric_doc, worse, worst_metric
from guardrail.errors import NotFound
from guardrail.store import models as m
from web.read.fields import commit_url, iso
from web.read.runs import profile_diffs

MAX_RANGE_COMMITS = 30  # stored commits listed between an alert's last good and first bad commit
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")


def alert_dict(a: m.Alert, changed_at: datetime | None = None) -> dict[str, Any]:
    return {
        **alert_doc(a),
        "workload_id": a.workload_id,
        "lane": a.lane,
        "metrics": [{**x, **metric_doc(x), "worse": worse(x)} for x in a.metrics or []],
        # when the change happened: the first run at the new level (the first bad commit's), not when it was stored
        "changed_at": iso(changed_at),
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
    rows = list(session.scalars(q.order_by(m.Alert.created_at.desc(), m.Alert.id.desc()).limit(limit).offset(offset)))
    when = change_times(session, rows)
    return {
        "schema": SCHEMA,
        "total": total,
        "limit": limit,
        "offset": offset,
        "alerts": [alert_dict(a, when.get(a.id)) for a in rows],
    }


def change_times(session: Session, rows: Sequence[m.Alert]) -> dict[int, datetime]:
    """Per alert: the start of the first run of its first bad commit on its lane and hardware (one query for
    the whole page)."""
    shas = sorted({a.to_commit for a in rows if a.to_commit})
    if not shas:
        return {}
    q = (
        select(m.Commit.sha, m.Run.lane, m.Run.hardware, func.min(m.Run.started_at))
        .join(m.Run, m.Run.commit_id == m.Commit.id)
        .where(m.Commit.sha.in_(shas))
        .group_by(m.Commit.sha, m.Run.lane, m.Run.hardware)
    )
    first = {(sha, lane, hw): t for sha, lane, hw, t in session.execute(q)}
    out = {}
    for a in rows:
        t = first.get((a.to_commit or "", a.lane, a.hardware))
        if t is not None:
            out[a.id] = t
    return out


def states_of(session: Session, ids: Sequence[int]) -> dict[int, str]:
    """The current triage state of each alert named (a note-only bulk action keeps them)."""
    rows = session.execute(select(m.Alert.id, m.Alert.state).where(m.Alert.id.in_(list(ids))))
    return {i: st for i, st in rows}


def compare_url(repo: str | None, good: str | None, bad: str | None) -> str | None:
    """GitHub's compare page of the range, when the repository is an owner/name and both commits hex shas."""
    if repo and good and bad and _REPO.match(repo) and _SHA.match(good) and _SHA.match(bad):
        return f"https://github.com/{repo}/compare/{good}...{bad}"
    return None


def _commit_range(session: Session, a: m.Alert) -> dict[str, Any]:
    """The alert's last good and first bad commit, with the commits stored between them on its lane and hardware
    (oldest first, each with its subject and link when known)."""
    ends = [c for c in (a.from_commit, a.to_commit) if c]
    times: dict[str, datetime] = {}
    if ends:
        q = (
            select(m.Commit.sha, func.min(m.Run.started_at), func.max(m.Run.started_at))
            .join(m.Run, m.Run.commit_id == m.Commit.id)
            .where(m.Commit.sha.in_(ends), m.Run.lane == a.lane, m.Run.hardware == a.hardware)
            .group_by(m.Commit.sha)
        )
        for sha, first, last in session.execute(q):
            # the last good commit's newest run, the first bad commit's oldest: the range in between
            times[sha] = last if sha == a.from_commit else first
    commits: list[tuple[str, str | None, str, datetime | None]] = []
    lo, hi = times.get(a.from_commit or ""), times.get(a.to_commit or "")
    if hi is not None:
        q2 = (
            select(m.Commit.sha, m.Commit.message, m.Commit.repo, func.min(m.Run.started_at).label("t"))
            .join(m.Run, m.Run.commit_id == m.Commit.id)
            .where(m.Run.lane == a.lane, m.Run.hardware == a.hardware, m.Run.pr.is_(None), m.Run.started_at <= hi)
            .group_by(m.Commit.sha, m.Commit.message, m.Commit.repo)
            .order_by(func.min(m.Run.started_at).desc())
            # without a last good commit (an alert a check raised): the first bad one and the one run before it
            .limit(MAX_RANGE_COMMITS if lo is not None else 2)
        )
        if lo is not None:
            q2 = q2.where(m.Run.started_at >= lo)
        commits = [(sha, msg, repo, t) for sha, msg, repo, t in session.execute(q2)]
        commits.reverse()
    if not commits:  # nothing stored on that lane: the two ends as given
        rows = session.execute(select(m.Commit.sha, m.Commit.message, m.Commit.repo).where(m.Commit.sha.in_(ends)))
        known = {sha: (msg, repo) for sha, msg, repo in rows}
        commits = [(sha, *known.get(sha, (None, "")), None) for sha in ends]
    repo = next((r for _, _, r, _ in commits if r), None)
    return {
        "from_commit": a.from_commit,
        "to_commit": a.to_commit,
        "repo": repo,
        "compare_url": compare_url(repo, a.from_commit, a.to_commit),
        "commits": [
            {
                "sha": sha,
                "subject": (msg or "").splitlines()[0] if msg else None,
                "url": commit_url(r or repo, sha),
                "first_run_at": iso(t),
                "role": "last good"
                if sha == a.from_commit
                else "first bad"
                if sha == a.to_commit
                else "between"
                if a.from_commit
                else "run before",
            }
            for sha, msg, r, t in commits
        ],
    }


def _profile_diff(session: Session, a: m.Alert) -> dict[str, Any] | None:
    """The profile diff of the regression that raised the alert: its run's newest check, its workload's row."""
    if a.run_id is None:
        return None
    check_id = session.scalar(select(m.Check.id).where(m.Check.run_id == a.run_id).order_by(m.Check.id.desc()).limit(1))
    if check_id is None:
        return None
    return profile_diffs(session.connection(), check_id).get(a.workload.name)


def alert_detail(session: Session, alert_id: int) -> dict[str, Any]:
    a = session.get(m.Alert, alert_id)
    if a is None:
        raise NotFound(f"no alert {alert_id}")
    events = session.scalars(
        select(m.AlertEvent).where(m.AlertEvent.alert_id == alert_id).order_by(m.AlertEvent.id.desc())
    )
    worst = worst_metric(a.metrics or [])
    return {
        **alert_dict(a, change_times(session, [a]).get(a.id)),
        "worst": {**worst, **metric_doc(worst), "worse": worse(worst)} if worst else None,
        "commit_range": _commit_range(session, a),
        "profile_diff": _profile_diff(session, a),
        "events": [
            {"state": e.state, "note": e.note, "author": e.author, "created_at": iso(e.created_at)} for e in events
        ],
    }
