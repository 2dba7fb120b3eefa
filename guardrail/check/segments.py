"""The changes on main that split a series' history into segments: a baseline never spans one.

A change is a stored alert on the workload and hardware, placed at the first run of its `to_commit` in the
baseline lanes (on the baseline branch). It starts a segment when it is
- a change point (its dedup key starts with guardrail.alerts.CHANGEPOINT) that is still open or expected,
- any alert triaged confirmed or expected (a person said the change is real),
- for a lane anchored at the merge-base (presubmit): any open alert too, so a PR is judged against main after
  main's own change, not blamed for it.
Alerts that resolved (fixed: the series returned; invalid; infra) start none. Change points are not detected
on the fly: a triaged `invalid` must remove one, and the report names the alert it starts from
(docs/statistics.md, "Presubmit baseline segments").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail.alerts import CHANGEPOINT
from guardrail.policy import Policy
from guardrail.store import models as m
from guardrail.vocabulary import EXPECTED, OPEN_STATES

_TRIAGED_REAL = ("confirmed", EXPECTED)  # triaged as a real change of the series


@dataclass(frozen=True)
class MainChange:
    """One change on main at or before the anchor."""

    alert_id: int
    commit: str  # the first commit at the new level
    at: datetime  # the first baseline run of that commit: the segment starts here
    expected: bool
    series: frozenset[int]  # the series it moved; empty: all of the workload's
    metrics: tuple[str, ...]
    regressed: frozenset[int]  # the series it made worse, while the alert is open
    starts_segment: bool

    def covers(self, series_id: int) -> bool:
        return not self.series or series_id in self.series

    def describe(self) -> str:
        what = "expected change" if self.expected else "change"
        of = f" of {', '.join(self.metrics)}" if self.metrics else ""
        return f"since the {what} at {self.commit[:10]} (alert #{self.alert_id}{of})"


@dataclass(frozen=True)
class MainChanges:
    """The changes on main of one workload and hardware, oldest first."""

    changes: tuple[MainChange, ...] = field(default=())

    def latest(self, series_id: int) -> MainChange | None:
        """The change the series' segment starts at (None: its whole history is one segment)."""
        return next((c for c in reversed(self.changes) if c.starts_segment and c.covers(series_id)), None)

    def cuts(self) -> list[MainChange]:
        """The changes some series' segment starts at: those no later change covers wholly."""
        starts = [c for c in self.changes if c.starts_segment]
        return [
            c
            for i, c in enumerate(starts)
            if not any(not d.series or (c.series and c.series <= d.series) for d in starts[i + 1 :])
        ]

    def regressed(self, series_id: int) -> list[int]:
        """The open alerts on main that made this series worse: main regressed here, not the candidate."""
        return [c.alert_id for c in self.changes if series_id in c.regressed]


NO_CHANGES = MainChanges()


def _worse(alert: m.Alert, entry: Mapping[str, Any]) -> bool:
    """Whether a metric of an alert got worse: by its direction where the entry has one, else by the alert's
    kind (a check's regression alert)."""
    change = entry.get("change")
    if change is None or entry.get("direction") is None:
        return alert.kind == "regression"
    return bool(change < 0 if entry["direction"] == "higher_is_better" else change > 0)


def main_changes(session: Session, run: m.Run, result: m.Result, policy: Policy, anchor: datetime) -> MainChanges:
    """The changes on main of `result`'s workload on `run`'s hardware at or before `anchor`."""
    spec = policy.baseline
    presubmit = spec.anchor == "base_commit"
    alerts = session.scalars(
        select(m.Alert)
        .where(
            m.Alert.workload_id == result.workload_id,
            m.Alert.hardware == run.hardware,
            m.Alert.state.in_((*OPEN_STATES, EXPECTED)),
            m.Alert.to_commit.is_not(None),
        )
        .order_by(m.Alert.id)
    ).all()
    if not alerts:
        return NO_CHANGES
    first_run = (
        select(m.Commit.sha, func.min(m.Run.started_at))
        .join(m.Run, m.Run.commit_id == m.Commit.id)
        .where(
            m.Commit.sha.in_({a.to_commit for a in alerts}),
            m.Run.hardware == run.hardware,
            m.Run.lane.in_(spec.lanes),
            m.Run.started_at <= anchor,
        )
        .group_by(m.Commit.sha)
    )
    if spec.branch:
        first_run = first_run.where(m.Run.branch == spec.branch)
    at: dict[str, datetime] = {sha: t for sha, t in session.execute(first_run)}
    changes = []
    for a in alerts:
        if a.to_commit is None or a.to_commit not in at:  # after the anchor, or on no baseline run: not in this history
            continue
        entries = [x for x in a.metrics or [] if x.get("series_id") is not None]
        starts = a.dedup_key.startswith(CHANGEPOINT) or a.state in _TRIAGED_REAL or presubmit
        regressed = frozenset(x["series_id"] for x in entries if _worse(a, x)) if presubmit else frozenset()
        if a.state not in OPEN_STATES:
            regressed = frozenset()
        changes.append(
            MainChange(
                alert_id=a.id,
                commit=a.to_commit,
                at=at[a.to_commit],
                expected=a.state == EXPECTED,
                series=frozenset(x["series_id"] for x in entries),
                metrics=tuple(dict.fromkeys(str(x.get("metric") or x.get("name")) for x in entries)),
                regressed=regressed,
                starts_segment=starts,
            )
        )
    changes.sort(key=lambda c: (c.at, c.alert_id))
    return MainChanges(tuple(changes))
