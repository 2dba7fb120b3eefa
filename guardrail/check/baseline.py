"""Which stored results are a run's baseline: the selection its lane's policy describes, in SQL.

History: the newest `ok` results of the workload on the same hardware in the policy's lanes (and branch), at or
before the anchor (the PR's merge-base, or this run), from the start of an expected change on, with the pinned
software keys equal. Pinned: the results of the run pinned for the lane and hardware.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail.policy import Policy
from guardrail.store import models as m
from guardrail.vocabulary import EXPECTED


class Baseline(NamedTuple):
    results: list[m.Result]  # newest first
    description: str  # where they came from, for the report


def select_baseline(session: Session, run: m.Run, result: m.Result, policy: Policy) -> Baseline:
    """The baseline results of `result`'s workload for `run`."""
    spec = policy.baseline
    if spec.source == "pinned":
        return _pinned(session, run, result, policy)
    anchor, how = _anchor_time(session, run, policy)
    since = _rebaselined_since(session, run, result, policy, anchor)
    q = (
        select(m.Result)
        .join(m.Run, m.Result.run_id == m.Run.id)
        .where(
            m.Result.workload_id == result.workload_id,
            m.Result.status == "ok",
            m.Run.id != run.id,
            m.Run.hardware == run.hardware,
            m.Run.lane.in_(spec.lanes),
            m.Run.started_at <= anchor,
        )
        .order_by(m.Run.started_at.desc(), m.Result.id.desc())
        .limit(spec.noise_history * 3)
    )
    if spec.branch:
        q = q.where(m.Run.branch == spec.branch)
    if since is not None:
        q = q.where(m.Run.started_at >= since[0])
        how += f", since the expected change at {since[1][:10]}"
    rows = session.scalars(q).all()
    pinned_sw = {k: result.environment.software.get(k) for k in spec.same_software}
    rows = [r for r in rows if all(r.environment.software.get(k) == v for k, v in pinned_sw.items())]
    where = f"{'/'.join(spec.lanes)} runs" + (f" on {spec.branch}" if spec.branch else "")
    sw = ", ".join(f"{k} {v}" for k, v in pinned_sw.items() if v)
    return Baseline(rows, f"{where}, {how}, same hardware" + (f" and {sw}" if sw else ""))


def _pinned(session: Session, run: m.Run, result: m.Result, policy: Policy) -> Baseline:
    pin = session.scalar(
        select(m.BaselinePin)
        .where(
            m.BaselinePin.lane == policy.lane,
            m.BaselinePin.hardware == run.hardware,
            m.BaselinePin.active.is_(True),
        )
        .order_by(m.BaselinePin.id.desc())
    )
    if pin is None:
        return Baseline([], f"no run pinned for {policy.lane} on {run.hardware}")
    rows = session.scalars(
        select(m.Result).where(
            m.Result.run_id == pin.run_id,
            m.Result.workload_id == result.workload_id,
            m.Result.status == "ok",
        )
    ).all()
    return Baseline(list(rows), f"pinned run {pin.run_id} ({pin.reason}, by {pin.author})")


def _anchor_time(session: Session, run: m.Run, policy: Policy) -> tuple[datetime, str]:
    spec = policy.baseline
    if spec.anchor == "base_commit" and run.base_commit:
        t = session.scalar(
            select(func.max(m.Run.started_at))
            .join(m.Commit, m.Run.commit_id == m.Commit.id)
            .where(m.Commit.sha == run.base_commit, m.Run.lane.in_(spec.lanes), m.Run.hardware == run.hardware)
        )
        if t is not None:
            return t, f"at or before the merge-base {run.base_commit[:10]}"
        return (
            run.started_at,
            f"merge-base {run.base_commit[:10]} has no {'/'.join(spec.lanes)} run; latest before",
        )
    return run.started_at, "latest before this run"


def _rebaselined_since(
    session: Session, run: m.Run, result: m.Result, policy: Policy, anchor: datetime
) -> tuple[datetime, str] | None:
    """An alert triaged `expected` (an intended change) re-baselines its series: history starts at the first
    run of the commit that changed it."""
    alert = session.scalar(
        select(m.Alert)
        .where(
            m.Alert.workload_id == result.workload_id,
            m.Alert.hardware == run.hardware,
            m.Alert.state == EXPECTED,
            m.Alert.to_commit.is_not(None),
        )
        .order_by(m.Alert.updated_at.desc())
        .limit(1)
    )
    if alert is None or alert.to_commit is None:
        return None
    start = session.scalar(
        select(func.min(m.Run.started_at))
        .join(m.Commit, m.Run.commit_id == m.Commit.id)
        .where(
            m.Commit.sha == alert.to_commit,
            m.Run.hardware == run.hardware,
            m.Run.lane.in_(policy.baseline.lanes),
            m.Run.started_at <= anchor,
        )
    )
    return (start, alert.to_commit) if start is not None else None
