"""Flakiness scores, test states and quarantine decisions: pure functions over verdict history.

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

FLAKY_SCHEMA = "guardrail.flaky/v1"

State = Literal["healthy", "flaky", "broken", "quarantined"]
VerdictKind = Literal["pass", "fail", "flaky", "skip"]


@dataclass(frozen=True)
class FlakinessPolicy:
    window_days: int = 14
    window_verdicts: int = 100
    min_flaky_verdicts: int = 2
    min_score: float = 0.01
    broken_after: int = 2
    infra_failed_share: float = 0.20
    infra_min_tests: int = 10


@dataclass(frozen=True)
class QuarantinePolicy:
    enter_flaky_verdicts: int = 3
    enter_distinct_commits: int = 2
    enter_window_days: int = 7
    release_passes: int = 30
    release_clean_days: int = 7


@dataclass(frozen=True)
class HistoricVerdict:
    """One stored verdict of one test variant in one run (a :class:`TestVerdict` plus when and where)."""

    test: str  # TestIdentity.key: id plus "@hardware"
    verdict: VerdictKind
    at: datetime
    commit: str | None = None
    run_id: str | None = None
    signatures: tuple[str, ...] = ()
    test_id: str | None = None  # TestIdentity.id (without hardware), for display
    hardware: str | None = None

    @classmethod
    def from_verdict(cls, v: Any, *, at: datetime, run_id: str | None = None) -> HistoricVerdict:
        """From a :class:`guardrail.ingest.junit_model.TestVerdict`."""
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


# --- scores --------------------------------------------------------------------------------------


def flakiness_score(flaky_verdicts: int, verdicts: int) -> float:
    """Bayesian estimate of the flaky-verdict rate: (f + 0.5) / (n + 1) (Jeffreys-like prior)."""
    return (flaky_verdicts + 0.5) / (verdicts + 1)


def run_infra_failure(verdicts: Iterable[Any], policy: FlakinessPolicy = FlakinessPolicy()) -> str | None:
    """Why one run's verdicts (anything with ``.verdict``) count as an infrastructure failure, or None.

    A test counts as failed when any attempt failed (verdict fail or flaky): a lost device mid-run
    fails many tests, and reruns that pass afterwards would otherwise paint them all flaky.
    """
    n = failed = 0
    for v in verdicts:
        if v.verdict == "skip":
            continue
        n += 1
        failed += v.verdict in ("fail", "flaky")
    if n < policy.infra_min_tests or failed / n <= policy.infra_failed_share:
        return None
    return (
        f"{failed} of {n} tests failed ({failed / n:.0%} > {policy.infra_failed_share:.0%}): "
        "infrastructure failure, excluded from flakiness"
    )


def infra_failed_runs(
    history: Iterable[HistoricVerdict], policy: FlakinessPolicy = FlakinessPolicy()
) -> dict[str, str]:
    """Runs of ``history`` that :func:`run_infra_failure` calls infrastructure failures: {run_id: reason}."""
    runs: dict[str, list[HistoricVerdict]] = defaultdict(list)
    for v in history:
        if v.run_id is not None:
            runs[v.run_id].append(v)
    out = {}
    for run, vs in runs.items():
        reason = run_infra_failure(vs, policy)
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


def _by_test(history: Iterable[HistoricVerdict], excluded_runs: Mapping[str, str]) -> dict[str, list]:
    out: dict[str, list[HistoricVerdict]] = defaultdict(list)
    for v in history:
        if v.verdict != "skip" and (v.run_id is None or v.run_id not in excluded_runs):
            out[v.test].append(v)
    by_time = attrgetter("at")
    for vs in out.values():
        vs.sort(key=by_time)
    return out


def _trailing(vs: Sequence[HistoricVerdict], kind: str) -> int:
    n = 0
    for v in reversed(vs):
        if v.verdict != kind:
            break
        n += 1
    return n


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
        trailing_fails=_trailing(win, "fail"),
        last_at=last.at if last else None,
        test_id=last.test_id if last else None,
        hardware=last.hardware if last else None,
    )


def _stats(
    test: str,
    vs: Sequence[HistoricVerdict],
    now: datetime,
    policy: FlakinessPolicy,
    quarantine: QuarantineEntry | None,
) -> FlakyStats:
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
    by_test = _by_test(history, excluded)
    out = [_stats(t, vs, now, policy, quarantined.get(t)) for t, vs in by_test.items()]
    # quarantined tests with no verdict in the history still show up
    out += [_stats(t, [], now, policy, q) for t, q in quarantined.items() if t not in by_test]
    order = {"broken": 0, "quarantined": 1, "flaky": 2, "healthy": 3}
    out.sort(key=lambda s: (order[s.state], -s.score, s.test))
    return out


def flaky_report(stats: Iterable[FlakyStats], *, only_flagged: bool = False) -> dict[str, Any]:
    """The ``guardrail flaky --format json`` document (schema ``guardrail.flaky/v1``)."""
    tests = [s.to_dict() for s in stats if not only_flagged or s.state != "healthy"]
    summary = {k: sum(t["state"] == k for t in tests) for k in ("healthy", "flaky", "broken", "quarantined")}
    return {"schema": FLAKY_SCHEMA, "tests": tests, "summary": summary}


# --- quarantine ----------------------------------------------------------------------------------


def manual_quarantine(test: str, *, reason: str, by: str, now: datetime) -> QuarantineEntry:
    """Quarantine by hand: always allowed, but never without a reason and a name."""
    if not reason.strip():
        raise ValueError("a quarantine needs a reason")
    if not by.strip() or by == "rule":
        raise ValueError("a quarantine by hand needs the name of who added it")
    return QuarantineEntry(test=test, since=now, reason=reason.strip(), by=by.strip())


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
    vs = _by_test(history, excluded).get(test, [])
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
    stats = _stats(test, vs, now, flakiness, None)
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
    passes = _trailing(vs, "pass")
    bad = [v.at for v in vs if v.verdict != "pass"]
    clean_since = max([current.since, *bad])
    clean_days = (now - clean_since).total_seconds() / 86400
    status = (
        f"{passes}/{policy.release_passes} consecutive passes, {clean_days:.1f}/{policy.release_clean_days} clean days"
    )
    if passes >= policy.release_passes and clean_days >= policy.release_clean_days:
        return QuarantineDecision(test, "release", f"released: {status}")
    return QuarantineDecision(test, "keep", f"stays quarantined: {status}", current)


# --- CI health -----------------------------------------------------------------------------------

CI_HEALTH_SCHEMA = "guardrail.ci-health/v1"


@dataclass(frozen=True)
class HealthRow:
    """One test verdict of one job, with what the job cost: the input of :func:`ci_health`."""

    at: datetime
    lane: str
    hardware: str | None
    verdict: VerdictKind
    rerun_seconds: float = 0.0  # TestVerdict.rerun_duration_s


@dataclass(frozen=True)
class InfraEvent:
    """An infrastructure error: a result with status infra_error/timeout, or an infra-failed test run."""

    at: datetime
    lane: str
    hardware: str | None
    kind: str  # device_lost, oom, collective_timeout, runner_crash, tests_mass_failure, ...


@dataclass(frozen=True)
class HealthFigure:
    lane: str
    hardware: str | None
    day: str  # YYYY-MM-DD (UTC)
    tests: int
    passed: int
    failed: int
    flaky: int
    rerun_minutes: float
    infra_errors: tuple[tuple[str, int], ...] = ()

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.tests if self.tests else None

    @property
    def flaky_rate(self) -> float | None:
        return self.flaky / self.tests if self.tests else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lane": self.lane,
            "hardware": self.hardware,
            "day": self.day,
            "tests": self.tests,
            "passed": self.passed,
            "failed": self.failed,
            "flaky": self.flaky,
            "pass_rate": None if self.pass_rate is None else round(self.pass_rate, 4),
            "flaky_rate": None if self.flaky_rate is None else round(self.flaky_rate, 4),
            "rerun_minutes": round(self.rerun_minutes, 2),
            "infra_errors": dict(self.infra_errors),
        }


def ci_health(rows: Iterable[HealthRow], infra: Iterable[InfraEvent] = ()) -> dict[str, Any]:
    """Pass rate, flaky rate, CI minutes lost to reruns and infra errors by kind, per lane/hardware/day.

    Rates count test verdicts that ran (skips left out); ``figures`` are sorted by day, lane, hardware,
    and ``totals`` sums them per lane and hardware over the whole span.
    """
    acc: dict[tuple[str, str | None, str], dict[str, Any]] = {}

    def slot(lane: str, hw: str | None, at: datetime) -> dict[str, Any]:
        key = (lane, hw, at.date().isoformat())
        return acc.setdefault(key, {"tests": 0, "pass": 0, "fail": 0, "flaky": 0, "rerun_s": 0.0, "infra": {}})

    for r in rows:
        s = slot(r.lane, r.hardware, r.at)
        s["rerun_s"] += r.rerun_seconds
        if r.verdict == "skip":
            continue
        s["tests"] += 1
        s[r.verdict] += 1
    for e in infra:
        s = slot(e.lane, e.hardware, e.at)
        s["infra"][e.kind] = s["infra"].get(e.kind, 0) + 1

    def figure(lane: str, hw: str | None, day: str, s: dict[str, Any]) -> HealthFigure:
        return HealthFigure(
            lane, hw, day, s["tests"], s["pass"], s["fail"], s["flaky"], s["rerun_s"] / 60,
            tuple(sorted(s["infra"].items())),
        )  # fmt: skip

    figures = [figure(lane, hw, day, s) for (lane, hw, day), s in acc.items()]
    figures.sort(key=lambda f: (f.day, f.lane, f.hardware or ""))
    totals: dict[tuple[str, str | None], dict[str, Any]] = {}
    for f in figures:
        t = totals.setdefault(
            (f.lane, f.hardware), {"tests": 0, "pass": 0, "fail": 0, "flaky": 0, "rerun_s": 0.0, "infra": {}}
        )
        t["tests"] += f.tests
        t["pass"] += f.passed
        t["fail"] += f.failed
        t["flaky"] += f.flaky
        t["rerun_s"] += f.rerun_minutes * 60
        for k, n in f.infra_errors:
            t["infra"][k] = t["infra"].get(k, 0) + n
    span = f"{figures[0].day}..{figures[-1].day}" if figures else ""
    return {
        "schema": CI_HEALTH_SCHEMA,
        "figures": [f.to_dict() for f in figures],
        "totals": [
            figure(lane, hw, span, t).to_dict()
            for (lane, hw), t in sorted(totals.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
        ],
    }
