"""Quarantine rules: when a flaky test enters quarantine by rule, when it is released, and quarantine by hand.

Pure functions over :class:`HistoricVerdict` history; every decision carries the rule that decided it.
Numbers: the ``quarantine`` section of baselines/rerun-policy.yaml (docs/flaky.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from guardrail.analysis.flaky_scores import (
    HistoricVerdict,
    QuarantineEntry,
    broken_in_quarantine,
    infra_failed_runs,
    stats_of,
    trailing,
    verdicts_by_test,
)
from guardrail.rerun_policy import FlakinessPolicy, QuarantinePolicy


@dataclass(frozen=True)
class QuarantineDecision:
    test: str
    action: Literal["enter", "release", "keep", "none"]
    reason: str
    entry: QuarantineEntry | None = None  # the new entry for "enter"; the current one for "keep"

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "action": self.action,
            "reason": self.reason,
            "entry": self.entry.to_dict() if self.entry else None,
        }


class MissingWhoOrWhy(ValueError):
    """A change by hand without its reason or without who made it; ``field`` is "reason" or "by"."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


def who_and_why(reason: str, by: str, *, change: str, verb: str, not_by: str = "") -> tuple[str, str]:
    """The stripped (reason, by) of a ``change`` ("quarantine", "release") that ``by`` made by hand; ``not_by``
    is a name refused as the person's."""
    if not reason.strip():
        raise MissingWhoOrWhy(f"a {change} needs a reason", field="reason")
    if not by.strip() or by == not_by:
        raise MissingWhoOrWhy(f"a {change} by hand needs the name of who {verb} it", field="by")
    return reason.strip(), by.strip()


def manual_quarantine(test: str, *, reason: str, by: str, now: datetime) -> QuarantineEntry:
    """Quarantine by hand: always allowed, but never without a reason and a name ("rule" is what the rule
    writes, not a person)."""
    reason, by = who_and_why(reason, by, change="quarantine", verb="added", not_by="rule")
    return QuarantineEntry(test=test, since=now, reason=reason, by=by)


def decide_quarantine(
    test: str,
    history: Iterable[HistoricVerdict],
    *,
    now: datetime,
    current: QuarantineEntry | None = None,
    changed_by_pr: bool = False,
    flakiness: FlakinessPolicy = FlakinessPolicy(),
    policy: QuarantinePolicy = QuarantinePolicy(),
) -> QuarantineDecision:
    """Enter, release, keep or leave alone one test variant, with the rule that decided.

    ``history`` may hold other tests' verdicts too (they are needed to spot infrastructure-failed
    runs); only ``test``'s are judged.
    """
    history = list(history)
    excluded = infra_failed_runs(history, flakiness)
    vs = verdicts_by_test(history, excluded).get(test, [])
    if current is not None:
        return _decide_release(test, vs, now=now, current=current, policy=policy)

    def no(reason: str) -> QuarantineDecision:
        return QuarantineDecision(test, "none", reason)

    if not vs:
        return no("no verdicts")
    if changed_by_pr:
        return no("the PR changed this test: never quarantined automatically")
    if vs[-1].verdict == "fail":
        return no("fails every attempt: broken, not flaky (quarantine by hand if it must be muted)")
    stats = stats_of(test, vs, now, flakiness, None)
    if not stats.flaky:
        return no(f"not flaky: {stats.reason}")
    since = now - timedelta(days=policy.enter_window_days)
    recent = [v for v in vs if v.verdict == "flaky" and since <= v.at <= now]
    commits = {v.commit for v in recent if v.commit}
    counts = f"{len(recent)} flaky verdicts on {len(commits)} commits in {policy.enter_window_days} days"
    if len(recent) < policy.enter_flaky_verdicts or len(commits) < policy.enter_distinct_commits:
        need = f">= {policy.enter_flaky_verdicts} on >= {policy.enter_distinct_commits} commits"
        return no(f"{counts}; the rule needs {need}")
    latest = recent[-1]
    if not latest.signatures:
        return no("the latest flaky verdict recorded no failure message, so its signature cannot be checked")
    earlier = {s for v in vs if v.at < latest.at for s in v.signatures}
    new = [s for s in latest.signatures if s not in earlier]
    if new:
        return no(f"new failure signature {new[0]}: may be a new bug, not the known flake")
    entry = QuarantineEntry(
        test=test,
        since=now,
        reason=f"flaky ({stats.reason}); {counts}; failure signature seen before",
        by="rule",
        signatures=tuple(latest.signatures),
    )
    return QuarantineDecision(test, "enter", entry.reason, entry)


def _decide_release(
    test: str,
    vs: Sequence[HistoricVerdict],
    *,
    now: datetime,
    current: QuarantineEntry,
    policy: QuarantinePolicy,
) -> QuarantineDecision:
    since = [v for v in vs if v.at >= current.since]
    if current.by == "rule" and since:
        # a quarantine by rule mutes a known flake, never a new bug: released so that the test gates again
        broken = broken_in_quarantine(since[-1].verdict, since[-1].signatures, current.signatures)
        if broken:
            return QuarantineDecision(test, "release", f"released: {broken}, so it gates again")
    passes = trailing(vs, "pass")
    bad = [v.at for v in vs if v.verdict != "pass"]
    clean_since = max([current.since, *bad])
    clean_days = (now - clean_since).total_seconds() / 86400
    status = (
        f"{passes}/{policy.release_passes} consecutive passes, {clean_days:.1f}/{policy.release_clean_days} clean days"
    )
    if passes >= policy.release_passes and clean_days >= policy.release_clean_days:
        return QuarantineDecision(test, "release", f"released: {status}")
    return QuarantineDecision(test, "keep", f"stays quarantined: {status}", current)
