"""Flakiness scores and test states: pure functions over verdict history.

Inputs are :class:`HistoricVerdict` rows (one per test variant per run: what the store keeps from
``group_verdicts``); outputs are frozen dataclasses whose ``reason`` says which rule decided. No database,
no clock: ``now`` is always passed in. Rules and numbers: docs/flaky.md, baselines/rerun-policy.yaml.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, Literal

from guardrail.analysis.junit_model import CaseVerdict, VerdictKind
from guardrail.rerun_policy import FlakinessPolicy

FLAKY_SCHEMA = "guardrail.flaky/v1"

State = Literal["healthy", "flaky", "broken", "quarantined"]
STATE_ORDER: dict[str, int] = {"broken": 0, "quarantined": 1, "flaky": 2, "healthy": 3}  # how reports sort


@dataclass(frozen=True)
class HistoricVerdict:
    """One stored verdict of one test variant in one run (a :class:`CaseVerdict` plus when and where)."""

    test: str  # CaseIdentity.key: id plus "@hardware"
    verdict: VerdictKind
    at: datetime
    commit: str | None = None
    run_id: str | None = None
    signatures: tuple[str, ...] = ()
    test_id: str | None = None  # CaseIdentity.id (without hardware), for display
    hardware: str | None = None

    @classmethod
    def from_verdict(cls, v: CaseVerdict, *, at: datetime, run_id: str | None = None) -> HistoricVerdict:
        return cls(
            test=v.identity.key,
            verdict=v.verdict,
            at=at,
            commit=v.head_commit,
            run_id=run_id,
            signatures=tuple(v.signatures),
            test_id=v.identity.id,
            hardware=v.identity.hardware,
        )


@dataclass(frozen=True)
class QuarantineEntry:
    """A muted test: it still runs, it does not gate. ``by`` is "rule" or the person who added it."""

    test: str
    since: datetime
    reason: str
    by: str = "rule"
    signatures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "since": self.since.isoformat(),
            "reason": self.reason,
            "by": self.by,
            "signatures": list(self.signatures),
        }


@dataclass(frozen=True)
class FlakyStats:
    test: str
    test_id: str
    hardware: str | None
    verdicts: int  # n: non-skip verdicts in the window, infrastructure-failed runs excluded
    flaky_verdicts: int  # f
    failed_verdicts: int
    score: float  # (f + 0.5) / (n + 1)
    flaky: bool
    state: State
    reason: str
    last_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.test_id,
            "key": self.test,
            "hardware": self.hardware,
            "flaky": self.flaky,
            "state": self.state,
            "score": round(self.score, 4),
            "flaky_verdicts": self.flaky_verdicts,
            "failed_verdicts": self.failed_verdicts,
            "verdicts": self.verdicts,
            "last_seen": self.last_at.isoformat() if self.last_at else None,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class WindowCounts:
    """What the score needs from one test variant's window: SQL can aggregate these directly."""

    test: str
    verdicts: int  # n, skips and infrastructure-failed runs left out
    flaky_verdicts: int  # f
    failed_verdicts: int
    trailing_fails: int  # latest verdicts in a row that failed every attempt
    last_at: datetime | None = None
    test_id: str | None = None
    hardware: str | None = None


def broken_in_quarantine(
    verdict: str, signatures: Iterable[str], quarantined_for: Iterable[str], *, attempts: int | None = None
) -> str | None:
    """Why a quarantined test's verdict says it is broken now, not the flake it was quarantined for, or None.

    Broken: it failed every attempt, or it failed with a signature none of the flakes that got it quarantined
    had (``quarantined_for``, the entry's signatures; empty for an entry without any, where only the first rule
    applies). A quarantine mutes a known flake; it must not mute a new bug.
    """
    if verdict == "fail":
        n = f" {attempts}" if attempts is not None else ""
        return f"broken: failed all{n} attempts while quarantined for a flake"
    known = set(quarantined_for)
    if verdict == "flaky" and known:
        new = [s for s in signatures if s not in known]
        if new:
            return f"broken: new failure signature {new[0]} (not the flake it was quarantined for)"
    return None


def flakiness_score(flaky_verdicts: int, verdicts: int) -> float:
    """Bayesian estimate of the flaky-verdict rate: (f + 0.5) / (n + 1) (Jeffreys-like prior)."""
    return (flaky_verdicts + 0.5) / (verdicts + 1)


def run_infra_failure(
    verdicts: Iterable[Any], policy: FlakinessPolicy = FlakinessPolicy(), *, still_failing: int = 0
) -> str | None:
    """Why one run's verdicts (anything with ``.verdict``) count as an infrastructure failure, or None.

    A test counts as failed when any attempt failed (verdict fail or flaky): a lost device mid-run
    fails many tests, and reruns that pass afterwards would otherwise paint them all flaky. ``still_failing``
    of the run's ``fail`` verdicts are tests whose previous verdict failed every attempt too: broken tests,
    explained without any infrastructure, so they do not count -- otherwise 3 of 10 tests failing in every
    run made every run an infrastructure failure and the broken tests vanished from the report.
    """
    n = failed = 0
    for v in verdicts:
        if v.verdict == "skip":
            continue
        n += 1
        failed += v.verdict in ("fail", "flaky")
    failed -= still_failing
    if n < policy.infra_min_tests or failed / n <= policy.infra_failed_share:
        return None
    broken = f" (and {still_failing} still failing from before)" if still_failing else ""
    return (
        f"{failed} of {n} tests failed{broken} ({failed / n:.0%} > {policy.infra_failed_share:.0%}): "
        "infrastructure failure, excluded from flakiness"
    )


def infra_failed_runs(
    history: Iterable[HistoricVerdict], policy: FlakinessPolicy = FlakinessPolicy()
) -> dict[str, str]:
    """Runs of ``history`` that :func:`run_infra_failure` calls infrastructure failures: {run_id: reason}.

    A run's ``fail`` verdict of a test whose previous verdict (in ``history``, skips aside) was ``fail`` too is
    still failing, not a mass failure (the store applies the same rule at ingest).
    """
    history = list(history)
    runs: dict[str, list[HistoricVerdict]] = defaultdict(list)
    by_test: dict[str, list[HistoricVerdict]] = defaultdict(list)
    for v in history:
        if v.run_id is not None:
            runs[v.run_id].append(v)
        if v.verdict != "skip":
            by_test[v.test].append(v)
    still: dict[str, int] = defaultdict(int)
    for vs in by_test.values():
        vs.sort(key=attrgetter("at"))
        for prev, v in zip(vs, vs[1:], strict=False):
            if v.verdict == "fail" and prev.verdict == "fail" and v.run_id is not None:
                still[v.run_id] += 1
    out = {}
    for run, vs in runs.items():
        reason = run_infra_failure(vs, policy, still_failing=still[run])
        if reason:
            out[run] = reason
    return out


def _window(vs: Sequence[HistoricVerdict], now: datetime, policy: FlakinessPolicy) -> Sequence[HistoricVerdict]:
    """The last ``window_days`` days or the last ``window_verdicts`` verdicts, whichever holds more.

    Both are suffixes of the time-ordered history, so the longer one is their union: in SQL,
    ``row_number() over (partition by test order by at desc) <= 100 or at >= now - 14 days``.
    """
    by_time = attrgetter("at")
    end = bisect_right(vs, now, key=by_time)
    start_days = bisect_left(vs, now - timedelta(days=policy.window_days), lo=0, hi=end, key=by_time)
    return vs[min(start_days, max(0, end - policy.window_verdicts)) : end]


def verdicts_by_test(
    history: Iterable[HistoricVerdict], excluded_runs: Mapping[str, str]
) -> dict[str, list[HistoricVerdict]]:
    """Each test's verdicts, oldest first; skips and the verdicts of ``excluded_runs`` left out."""
    out: dict[str, list[HistoricVerdict]] = defaultdict(list)
    for v in history:
        if v.verdict != "skip" and (v.run_id is None or v.run_id not in excluded_runs):
            out[v.test].append(v)
    by_time = attrgetter("at")
    for vs in out.values():
        vs.sort(key=by_time)
    return out


def trailing(vs: Sequence[HistoricVerdict], kind: str) -> int:
    """How many of the latest verdicts in a row are ``kind``."""
    n = 0
    for v in reversed(vs):
        if v.verdict != kind:
            break
        n += 1
    return n


def classify(
    c: WindowCounts, *, policy: FlakinessPolicy = FlakinessPolicy(), quarantine: QuarantineEntry | None = None
) -> FlakyStats:
    """Score and state of one test variant from its window counts."""
    n, f = c.verdicts, c.flaky_verdicts
    score = flakiness_score(f, n)
    flaky = f >= policy.min_flaky_verdicts and score >= policy.min_score
    why = f"{f} flaky of {n} verdicts, score {score:.3f}"
    if quarantine is not None:
        state: State = "quarantined"
        reason = f"quarantined since {quarantine.since:%Y-%m-%d} by {quarantine.by}: {quarantine.reason}"
    elif c.trailing_fails >= policy.broken_after:
        state, reason = "broken", f"failed every attempt in the last {c.trailing_fails} verdicts"
    elif c.failed_verdicts >= policy.broken_after and c.failed_verdicts * 2 >= n:
        # Mostly failing outright, with an occasional pass on rerun: that is a broken test, not a healthy one.
        state, reason = "broken", f"failed every attempt in {c.failed_verdicts} of {n} verdicts"
    elif flaky:
        state = "flaky"
        reason = f"{why} (>= {policy.min_flaky_verdicts} flaky and >= {policy.min_score:.0%})"
    else:
        state, reason = "healthy", why
    return FlakyStats(
        test=c.test,
        test_id=c.test_id or c.test,
        hardware=c.hardware,
        verdicts=n,
        flaky_verdicts=f,
        failed_verdicts=c.failed_verdicts,
        score=score,
        flaky=flaky,
        state=state,
        reason=reason,
        last_at=c.last_at,
    )


def window_counts(test: str, vs: Sequence[HistoricVerdict], now: datetime, policy: FlakinessPolicy) -> WindowCounts:
    """Counts over the window of one test's time-ordered, already filtered verdicts."""
    win = _window(vs, now, policy)
    kinds = [v.verdict for v in win]
    last = vs[-1] if vs else None
    return WindowCounts(
        test=test,
        verdicts=len(kinds),
        flaky_verdicts=kinds.count("flaky"),
        failed_verdicts=kinds.count("fail"),
        trailing_fails=trailing(win, "fail"),
        last_at=last.at if last else None,
        test_id=last.test_id if last else None,
        hardware=last.hardware if last else None,
    )


def stats_of(
    test: str,
    vs: Sequence[HistoricVerdict],
    now: datetime,
    policy: FlakinessPolicy,
    quarantine: QuarantineEntry | None,
) -> FlakyStats:
    """:func:`classify` over the window of one test's time-ordered, already filtered verdicts."""
    return classify(window_counts(test, vs, now, policy), policy=policy, quarantine=quarantine)


def assess(
    history: Iterable[HistoricVerdict],
    *,
    now: datetime,
    quarantined: Mapping[str, QuarantineEntry] | None = None,
    policy: FlakinessPolicy = FlakinessPolicy(),
) -> list[FlakyStats]:
    """Score and classify every test variant in ``history`` (infrastructure-failed runs excluded)."""
    history = list(history)
    quarantined = quarantined or {}
    excluded = infra_failed_runs(history, policy)
    by_test = verdicts_by_test(history, excluded)
    out = [stats_of(t, vs, now, policy, quarantined.get(t)) for t, vs in by_test.items()]
    # quarantined tests with no verdict in the history still show up
    out += [stats_of(t, [], now, policy, q) for t, q in quarantined.items() if t not in by_test]
    out.sort(key=lambda s: (STATE_ORDER[s.state], -s.score, s.test))
    return out


def flaky_report(stats: Iterable[FlakyStats], *, only_flagged: bool = False) -> dict[str, Any]:
    """The ``guardrail flaky --format json`` document (schema ``guardrail.flaky/v1``)."""
    tests = [s.to_dict() for s in stats if not only_flagged or s.state != "healthy"]
    summary = {k: sum(t["state"] == k for t in tests) for k in ("healthy", "flaky", "broken", "quarantined")}
    return {"schema": FLAKY_SCHEMA, "tests": tests, "summary": summary}
