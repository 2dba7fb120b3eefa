"""Pull requests: those with runs (title, author and status), and one PR's checks (its pushes), each with the
verdicts document its comment was rendered from, and the test results of its runs.

Title and author: the result files' `extra.pr` ({"title", "author"}) when a runner recorded them, else the
newest push's commit subject as the title and no author (neither is part of the run record)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail.errors import NotFound
from guardrail.store import models as m
from web.read.fields import iso
from web.read.runs import run_dict, run_statuses


def pr_checks(session: Session, pr: int, *, limit: int = 20) -> dict[str, Any]:
    """The checks of the PR's runs, newest first, and the ids of all its runs (newest first)."""
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
    run_ids = list(
        session.scalars(select(m.Run.id).where(m.Run.pr == pr).order_by(m.Run.started_at.desc(), m.Run.id.desc()))
    )
    if not run_ids:
        raise NotFound(f"no run for PR {pr}")
    info = _pr_info(session, {pr: run_ids[0]})
    return {"schema": "guardrail.web.pr/v1", "pr": pr, "pushes": pushes, "run_ids": run_ids, **info.get(pr, {})}


def _pr_info(session: Session, newest_run: dict[int, int]) -> dict[int, dict[str, Any]]:
    """Per PR: title and author from its newest run (see the module's note), in two queries for all."""
    if not newest_run:
        return {}
    ids = list(newest_run.values())
    extra: dict[int, dict[str, Any]] = {}
    for rid, x in session.execute(select(m.Result.run_id, m.Result.extra).where(m.Result.run_id.in_(ids))):
        pr_doc = (x or {}).get("pr")
        if isinstance(pr_doc, dict):
            extra.setdefault(rid, pr_doc)
    subject = {
        rid: (msg or "").splitlines()[0] if msg else None
        for rid, msg in session.execute(
            select(m.Run.id, m.Commit.message).join(m.Commit, m.Run.commit_id == m.Commit.id).where(m.Run.id.in_(ids))
        )
    }
    out = {}
    for pr, rid in newest_run.items():
        doc = extra.get(rid, {})
        title = doc.get("title") if isinstance(doc.get("title"), str) else None
        author = doc.get("author") if isinstance(doc.get("author"), str) else None
        out[pr] = {
            "title": title or subject.get(rid),
            "title_source": "pr" if title else "commit subject" if subject.get(rid) else None,
            "author": author,
        }
    return out


def prs(session: Session, *, limit: int = 50) -> list[dict[str, Any]]:
    """PRs with runs, the most recently run first: runs, last run, title, author and the newest run's status."""
    q = (
        select(m.Run.pr, func.count(m.Run.id), func.max(m.Run.started_at))
        .where(m.Run.pr.is_not(None))
        .group_by(m.Run.pr)
        .order_by(func.max(m.Run.started_at).desc())
        .limit(limit)
    )
    rows = [(pr, n, t) for pr, n, t in session.execute(q) if pr is not None]
    numbers = [pr for pr, _, _ in rows]
    newest: dict[int, int] = {}
    if numbers:
        runs_q = (
            select(m.Run.pr, m.Run.id)
            .where(m.Run.pr.in_(numbers))
            .order_by(m.Run.pr, m.Run.started_at.desc(), m.Run.id.desc())
        )
        for pr, rid in session.execute(runs_q):
            if pr is not None:
                newest.setdefault(pr, rid)
    info = _pr_info(session, newest)
    status = run_statuses(session, list(newest.values()))
    return [
        {
            "pr": pr,
            "runs": n,
            "last_run": iso(t),
            "newest_run": newest.get(pr),
            **info.get(pr, {"title": None, "title_source": None, "author": None}),
            "status": status[newest[pr]]["outcome"] if pr in newest else "not checked",
        }
        for pr, n, t in rows
    ]
