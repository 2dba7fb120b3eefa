"""Which stored results are a run's baseline: the selection its lane's policy describes, in SQL.

History: the newest `ok` results of the workload on the same hardware in the policy's lanes (and branch), at or
before the anchor (the PR's merge-base, or this run), with the pinned software keys equal, and per series only
the segment of main's history that holds the anchor: from the latest change on main at or before it
(guardrail.check.segments). Pinned: the results of the run pinned for the lane and hardware.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session, contains_eager

from guardrail.check.segments import NO_CHANGES, MainChange, MainChanges, main_changes
from guardrail.policy import Policy
from guardrail.store import models as m
from guardrail.verdicts import BaselineWindow, VerdictsDoc


class Baseline(NamedTuple):
    results: list[m.Result]  # newest first, of every segment: `keeps` says which a series uses
    description: str  # where they came from, for the report
    changes: MainChanges = NO_CHANGES

    @property
    def workload(self) -> str:
        return self.results[0].workload.name if self.results else ""

    def keeps(self, series_id: int, result: m.Result) -> bool:
        """Whether `result` lies in the segment of main's history that `series_id` is judged in."""
        change = self.changes.latest(series_id)
        return change is None or result.run.started_at >= change.at

    def windows(self, size: int, series: Mapping[int, str]) -> list[BaselineWindow]:
        """The windows of runs the judged series (id -> metric) are compared with: one per segment start, each
        its newest `size` runs; a window names its metrics where the workload's series use more than one."""
        if not self.results:
            return []
        by_start: dict[MainChange | None, list[int]] = defaultdict(list)
        for sid in sorted(series):
            by_start[self.changes.latest(sid)].append(sid)
        return [
            self._window(start, size, [series[s] for s in sids] if len(by_start) > 1 else None, sids)
            for start, sids in by_start.items()
        ]

    def _window(
        self, start: MainChange | None, size: int, metrics: list[str] | None, series: list[int]
    ) -> BaselineWindow:
        runs = list({r.run_id: r.run for r in self.results if start is None or r.run.started_at >= start.at}.values())
        runs = runs[:size]
        first = self.results[0]
        return BaselineWindow(
            workload=first.workload.name,
            hardware=first.run.hardware,
            metrics=metrics,
            runs=len(runs),
            from_commit=runs[-1].commit.sha if runs and runs[-1].commit else None,
            to_commit=runs[0].commit.sha if runs and runs[0].commit else None,
            first_at=runs[-1].started_at.isoformat() if runs else None,
            last_at=runs[0].started_at.isoformat() if runs else None,
            since_alert=start.alert_id if start is not None else None,
            since_commit=start.commit if start is not None else None,
            main_alerts=sorted({a for s in series for a in self.changes.regressed(s)}),
        )


def name_the_baseline(doc: VerdictsDoc, baselines: Iterable[Baseline], policy: Policy) -> VerdictsDoc:
    """The judged document with its baseline's windows named, and on each row of a series that main already made
    worse (an open alert at or before the merge-base), a note saying so: the candidate was judged against main
    after that change, and is not blamed for it."""
    chosen = list(baselines)
    series: dict[str, dict[int, str]] = defaultdict(dict)  # workload -> its judged series (id -> metric)
    for v in doc.verdicts:
        if v.series_id is not None:
            series[v.workload][v.series_id] = v.metric
    windows = [w for b in chosen if b.results for w in b.windows(policy.baseline.window, series[b.workload])]
    rows = []
    for v in doc.verdicts:
        alerts = sorted({a for b in chosen for a in b.changes.regressed(v.series_id)}) if v.series_id else []
        if alerts:
            note = f"main already regressed here: alert {', '.join(f'#{a}' for a in alerts)}"
            v = v.model_copy(update={"explanation": f"{note}; {v.explanation}" if v.explanation else note})
        rows.append(v)
    info = doc.baseline.model_copy(update={"windows": windows or None}) if doc.baseline else None
    return doc.model_copy(update={"verdicts": rows, "baseline": info})


def select_baseline(session: Session, run: m.Run, result: m.Result, policy: Policy) -> Baseline:
    """The baseline results of `result`'s workload for `run`."""
    spec = policy.baseline
    if spec.source == "pinned":
        return _pinned(session, run, result, policy)
    anchor, how = _anchor_time(session, run, policy)
    changes = main_changes(session, run, result, policy, anchor)
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
        .options(contains_eager(m.Result.run))  # `keeps` and the windows read each result's run
        .order_by(m.Run.started_at.desc(), m.Result.id.desc())
        .limit(spec.noise_history * 3)
    )
    if spec.branch:
        q = q.where(m.Run.branch == spec.branch)
    rows = session.scalars(q).all()
    pinned_sw = {k: result.environment.software.get(k) for k in spec.same_software}
    rows = [r for r in rows if all(r.environment.software.get(k) == v for k, v in pinned_sw.items())]
    where = f"{'/'.join(spec.lanes)} runs" + (f" on {spec.branch}" if spec.branch else "")
    sw = ", ".join(f"{k} {v}" for k, v in pinned_sw.items() if v)
    since = "".join(f", {c.describe()}" for c in changes.cuts())
    return Baseline(rows, f"{where}, {how}{since}, same hardware" + (f" and {sw}" if sw else ""), changes)


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
