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
