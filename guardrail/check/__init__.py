"""`guardrail check`: judge a stored run against the baseline its lane's policy selects.

gather.py turns the run and its baseline (baseline.py) into the judge's inputs, persist.py stores the check and
its verdicts, guardrail.alerts raises and resolves alerts on the lanes that watch main.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from guardrail.alerts import raise_regression_alerts, resolve_returned_alerts
from guardrail.check.gather import judge_run
from guardrail.check.persist import store_check
from guardrail.errors import InputError
from guardrail.policy import load_lane_policy
from guardrail.store import models as m
from guardrail.verdicts import VerdictsDoc, merge

__all__ = ["check_runs", "find_runs", "judge_run"]


def find_runs(session: Session, *, run_id: int | None, commit: str | None, lane: str | None) -> list[m.Run]:
    """The run asked for, or the newest run per lane and hardware of a commit (optionally of one lane)."""
    if run_id is not None:
        run = session.get(m.Run, run_id)
        if run is None:
            raise InputError(f"no run {run_id} in this database", field="--run")
        return [run]
    if not commit:
        raise InputError("give --run ID or --commit SHA", field="--run")
    q = select(m.Run).join(m.Commit, m.Run.commit_id == m.Commit.id).where(m.Commit.sha.startswith(commit))
    if lane:
        q = q.where(m.Run.lane == lane)
    runs = session.scalars(q.order_by(m.Run.started_at.desc(), m.Run.id.desc())).all()
    if not runs:
        raise InputError(f"no run for commit {commit}" + (f" in lane {lane}" if lane else ""), field="--commit")
    latest: dict[tuple[str, str], m.Run] = {}
    for r in runs:  # the newest attempt per lane and hardware
        latest.setdefault((r.lane, r.hardware), r)
    return sorted(latest.values(), key=lambda r: r.id)


def check_runs(session: Session, runs: list[m.Run], *, store: bool = True) -> VerdictsDoc:
    """Judge each run by its lane's policy; stored, each check raises and resolves its lane's alerts. One
    document for them all."""
    docs = []
    for run in runs:
        policy = load_lane_policy(run.lane)
        doc = judge_run(session, run, policy)
        if store:
            doc = store_check(session, run, policy, doc)
            if policy.raise_alerts:
                raise_regression_alerts(session, run, doc)
                resolve_returned_alerts(session, run, doc)
        docs.append(doc)
    return merge(docs)
