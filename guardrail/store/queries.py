"""Read-side queries other layers share (PR comments, the dashboard)."""

from __future__ import annotations

from sqlalchemy import select

from guardrail.store import models as m
from guardrail.store.db import session_scope
from guardrail.verdicts import VerdictsDoc, merge


def latest_verdicts_doc(db_url: str, *, repo: str | None, pr: int | None, commit: str | None) -> VerdictsDoc | None:
    """The verdicts document of the newest check of a commit (or, without one, of a PR's newest run).

    With several runs for the commit (lanes, hardware), their newest checks are merged into one document.
    """
    with session_scope(db_url) as s:
        q = select(m.Run).outerjoin(m.Commit, m.Run.commit_id == m.Commit.id)
        if commit:
            q = q.where(m.Commit.sha.startswith(commit))
        elif pr is not None:
            q = q.where(m.Run.pr == pr)
        else:
            return None
        if repo:
            q = q.where((m.Commit.repo == repo) | (m.Commit.repo == ""))
        runs = s.scalars(q.order_by(m.Run.started_at.desc(), m.Run.id.desc())).all()
        if not commit and runs:  # a PR: its newest commit's runs
            newest = runs[0].commit_id
            runs = [r for r in runs if r.commit_id == newest]
        docs: list[VerdictsDoc] = []
        seen: set[tuple[str, str]] = set()
        for run in runs:
            if (run.lane, run.hardware) in seen:
                continue
            check = s.scalar(select(m.Check).where(m.Check.run_id == run.id).order_by(m.Check.id.desc()).limit(1))
            if check is not None:
                seen.add((run.lane, run.hardware))
                docs.append(VerdictsDoc.model_validate(check.doc))
        return merge(docs[::-1]) if docs else None


def previous_push_doc(db_url: str, *, repo: str | None, pr: int, commit: str | None) -> VerdictsDoc | None:
    """The verdicts of a PR's previous push: the newest checked runs of the PR at another commit than `commit`
    (its head), started before that head's newest run. None when the PR has no earlier checked push."""
    with session_scope(db_url) as s:
        q = select(m.Run).outerjoin(m.Commit, m.Run.commit_id == m.Commit.id).where(m.Run.pr == pr)
        if repo:
            q = q.where((m.Commit.repo == repo) | (m.Commit.repo == ""))
        runs = s.scalars(q.order_by(m.Run.started_at.desc(), m.Run.id.desc())).all()
        head = [r for r in runs if commit and r.commit and r.commit.sha.startswith(commit)]
        since = head[0].started_at if head else None
        earlier = [
            r
            for r in runs
            if r.commit is not None
            and not (commit and r.commit.sha.startswith(commit))
            and (since is None or r.started_at < since)
        ]
        for sha in dict.fromkeys(r.commit.sha for r in earlier if r.commit):  # newest other commit first
            doc = latest_verdicts_doc(db_url, repo=repo, pr=None, commit=sha)
            if doc is not None:
                return doc
        return None
