"""GPU↔NPU parity (``guardrail parity``): the share of a reference hardware's test cases that also run, and pass,
on a target hardware -- per suite, overall and per day -- with the missing, skipped, failing and excluded cases,
and the CI minutes of each lane beside it. Pure: test ids and verdicts in, a typed report out (docs/parity.md).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from guardrail.analysis.junit_model import VerdictKind

PARITY_SCHEMA = "guardrail.parity/v1"
GOAL = 0.95  # the roadmap's parity goal

Role = Literal["reference", "target"]
# when one test ran in several lanes of one hardware, the best verdict stands for it (it passes somewhere)
_RANK: dict[str, int] = {"pass": 3, "flaky": 2, "fail": 1, "skip": 0}


@dataclass(frozen=True)
class Substitution:
    """One normalisation step: ``re.sub(pattern, replace, test_id)``, applied in the rules' order."""

    pattern: re.Pattern[str]
    replace: str


@dataclass(frozen=True)
class Exclusion:
    """A test of the reference that the target is not expected to run (GPU-only): out of the denominator."""

    pattern: re.Pattern[str]
    reason: str


@dataclass(frozen=True)
class ParityRules:
    substitutions: tuple[Substitution, ...] = ()
    exclusions: tuple[Exclusion, ...] = ()
    # the same ids come back every day of the series: each is normalised once (a third of a report's time)
    _memo: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _excluded: dict[str, Exclusion | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def normalise(self, test_id: str) -> str:
        done = self._memo.get(test_id)
        if done is None:
            done = test_id
            for s in self.substitutions:
                done = s.pattern.sub(s.replace, done)
            self._memo[test_id] = done
        return done

    def exclusion(self, test_id: str) -> Exclusion | None:
        """The first GPU-only rule whose pattern is found in the reference's own (not normalised) test id."""
        if test_id not in self._excluded:
            self._excluded[test_id] = next((e for e in self.exclusions if e.pattern.search(test_id)), None)
        return self._excluded[test_id]


@dataclass(frozen=True)
class CaseResult:
    """One test case of one run: its node id, suite (test file, else the JUnit suite) and verdict."""

    test: str
    suite: str
    verdict: VerdictKind


@dataclass(frozen=True)
class LaneRun:
    """One commit tested in a lane on one hardware (every job attempt of it; ``run_id``/``at`` are the newest
    attempt's): its test cases and the CI minutes all its attempts' tests took."""

    lane: str
    hardware: str
    run_id: int
    at: datetime
    cases: tuple[CaseResult, ...]
    minutes: float = 0.0


@dataclass(frozen=True)
class Case:
    """A reference case as the report lists it, with its counterpart on the target when there is one."""

    test: str
    suite: str
    normalised: str
    target_test: str | None = None
    verdict: VerdictKind | None = None  # the target's
    reason: str | None = None  # an exclusion's

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"test": self.test, "suite": self.suite, "normalised": self.normalised}
        if self.target_test is not None:
            d["target_test"], d["verdict"] = self.target_test, self.verdict
        if self.reason is not None:
            d["reason"] = self.reason
        return d


def _share(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


@dataclass(frozen=True)
class Counts:
    cases: int = 0  # reference cases that ran on the reference, exclusions left out: the denominator
    ran: int = 0  # ... that ran on the target (passed, failed or flaky there)
    passed: int = 0  # ... that passed on the target

    @property
    def run_share(self) -> float | None:
        return _share(self.ran, self.cases)

    @property
    def pass_share(self) -> float | None:
        return _share(self.passed, self.cases)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "ran": self.ran,
            "passed": self.passed,
            "run_share": self.run_share,
            "pass_share": self.pass_share,
        }


@dataclass(frozen=True)
class SuiteParity:
    suite: str
    counts: Counts
    missing: int
    skipped: int
    failing: int
    excluded: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            **self.counts.to_dict(),
            "missing": self.missing,
            "skipped": self.skipped,
            "failing": self.failing,
            "excluded": self.excluded,
        }


@dataclass(frozen=True)
class Snapshot:
    """Parity of one set of runs (the newest run of each lane on each side)."""

    counts: Counts
    suites: tuple[SuiteParity, ...]
    passed: tuple[Case, ...]
    missing: tuple[Case, ...]  # never ran on the target
    skipped: tuple[Case, ...]  # reported by the target, skipped there
    failing: tuple[Case, ...]  # ran on the target and failed, or failed then passed on rerun (flaky)
    excluded: tuple[Case, ...]  # GPU-only by a rule
    reference_skipped: tuple[Case, ...]  # skipped on the reference itself: not a case of the denominator
    target_only: tuple[str, ...]  # normalised ids the target ran that the reference did not


@dataclass(frozen=True)
class DayPoint:
    day: str
    counts: Counts

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day, **self.counts.to_dict()}


@dataclass(frozen=True)
class LaneMinutes:
    role: Role
    lane: str
    hardware: str
    runs: int
    median_minutes: float
    total_minutes: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "lane": self.lane,
            "hardware": self.hardware,
            "runs": self.runs,
            "median_minutes": round(self.median_minutes, 2),
            "total_minutes": round(self.total_minutes, 2),
        }


@dataclass(frozen=True)
class ParityReport:
    reference: str
    target: str
    goal: float
    current: Snapshot
    reference_runs: tuple[LaneRun, ...]  # the runs the current snapshot reads
    target_runs: tuple[LaneRun, ...]
    series: tuple[DayPoint, ...]
    minutes: tuple[LaneMinutes, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        c = self.current

        def runs(rs: Iterable[LaneRun]) -> list[dict[str, Any]]:
            return [{"lane": r.lane, "hardware": r.hardware, "run_id": r.run_id, "at": r.at.isoformat()} for r in rs]

        def side_minutes(role: Role) -> float:
            return sum(r.minutes for r in (self.reference_runs if role == "reference" else self.target_runs))

        ref_min, tgt_min = side_minutes("reference"), side_minutes("target")
        return {
            "schema": PARITY_SCHEMA,
            "reference": self.reference,
            "target": self.target,
            "goal": self.goal,
            "meets_goal": c.counts.pass_share is not None and c.counts.pass_share >= self.goal,
            **c.counts.to_dict(),
            "runs": {"reference": runs(self.reference_runs), "target": runs(self.target_runs)},
            "suites": [s.to_dict() for s in c.suites],
            "missing": [x.to_dict() for x in c.missing],
            "skipped": [x.to_dict() for x in c.skipped],
            "failing": [x.to_dict() for x in c.failing],
            "excluded": [x.to_dict() for x in c.excluded],
            "reference_skipped": [x.to_dict() for x in c.reference_skipped],
            "target_only": list(c.target_only),
            "series": [p.to_dict() for p in self.series],
            "ci_minutes": {
                "lanes": [m.to_dict() for m in self.minutes],
                # the newest run of each lane on each side, summed: one "CI pass" of each hardware
                "reference_latest": round(ref_min, 2),
                "target_latest": round(tgt_min, 2),
                "target_vs_reference": round(tgt_min / ref_min, 4) if ref_min else None,
            },
        }


def latest_per_lane(runs: Iterable[LaneRun], *, until: date | None = None) -> list[LaneRun]:
    """The newest run of each (lane, hardware), of those started on or before the day ``until`` (UTC)."""
    newest: dict[tuple[str, str], LaneRun] = {}
    for r in runs:
        if until is not None and r.at.date() > until:
            continue
        k = (r.lane, r.hardware)
        if k not in newest or (r.at, r.run_id) > (newest[k].at, newest[k].run_id):
            newest[k] = r
    return sorted(newest.values(), key=lambda r: (r.lane, r.hardware))


def _best(runs: Iterable[LaneRun], rules: ParityRules) -> dict[str, CaseResult]:
    out: dict[str, CaseResult] = {}
    for r in runs:
        for c in r.cases:
            k = rules.normalise(c.test)
            if k not in out or _RANK[c.verdict] > _RANK[out[k].verdict]:
                out[k] = c
    return out


def snapshot(reference: Sequence[LaneRun], target: Sequence[LaneRun], rules: ParityRules) -> Snapshot:
    """Classify every reference case against the target: passed, failing, skipped or missing; or excluded."""
    ref, tgt = _best(reference, rules), _best(target, rules)
    groups: dict[str, list[Case]] = {k: [] for k in ("passed", "failing", "skipped", "missing", "excluded", "ref_skip")}
    for norm in sorted(ref, key=lambda k: (ref[k].suite, ref[k].test)):
        c = ref[norm]
        rule = rules.exclusion(c.test)
        if rule is not None:
            groups["excluded"].append(Case(c.test, c.suite, norm, reason=rule.reason))
            continue
        if c.verdict == "skip":
            groups["ref_skip"].append(Case(c.test, c.suite, norm))
            continue
        t = tgt.get(norm)
        if t is None:
            groups["missing"].append(Case(c.test, c.suite, norm))
            continue
        case = Case(c.test, c.suite, norm, target_test=t.test, verdict=t.verdict)
        kind = {"pass": "passed", "skip": "skipped"}.get(t.verdict, "failing")
        groups[kind].append(case)

    def counts(g: dict[str, list[Case]], suite: str | None = None) -> Counts:
        n = {k: sum(1 for x in v if suite is None or x.suite == suite) for k, v in g.items()}
        ran = n["passed"] + n["failing"]
        return Counts(cases=ran + n["skipped"] + n["missing"], ran=ran, passed=n["passed"])

    suites = sorted({x.suite for k, v in groups.items() if k != "ref_skip" for x in v})
    per_suite = tuple(
        SuiteParity(
            s,
            counts(groups, s),
            *(sum(1 for x in groups[k] if x.suite == s) for k in ("missing", "skipped", "failing", "excluded")),
        )
        for s in suites
    )
    return Snapshot(
        counts=counts(groups),
        suites=per_suite,
        passed=tuple(groups["passed"]),
        missing=tuple(groups["missing"]),
        skipped=tuple(groups["skipped"]),
        failing=tuple(groups["failing"]),
        excluded=tuple(groups["excluded"]),
        reference_skipped=tuple(groups["ref_skip"]),
        target_only=tuple(sorted(set(tgt) - set(ref))),
    )


def lane_minutes(role: Role, runs: Iterable[LaneRun]) -> list[LaneMinutes]:
    """Per lane and hardware: runs, the median and total of the minutes their tests took."""
    by: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        by.setdefault((r.lane, r.hardware), []).append(r.minutes)
    return [LaneMinutes(role, lane, hw, len(v), statistics.median(v), sum(v)) for (lane, hw), v in sorted(by.items())]


def parity(
    reference: str,
    target: str,
    reference_runs: Sequence[LaneRun],
    target_runs: Sequence[LaneRun],
    rules: ParityRules,
    *,
    goal: float = GOAL,
) -> ParityReport:
    """The report over a window of runs: the current snapshot (the newest run of each lane on each side), and
    one point per day on which either side ran, reading the newest run of each lane up to that day (a day
    without a run of one side carries its previous run); days before both sides have run are left out."""
    days = sorted({r.at.date() for r in (*reference_runs, *target_runs)})
    series = []
    for d in days:
        ref, tgt = latest_per_lane(reference_runs, until=d), latest_per_lane(target_runs, until=d)
        if ref and tgt:
            series.append(DayPoint(d.isoformat(), snapshot(ref, tgt, rules).counts))
    ref_now, tgt_now = latest_per_lane(reference_runs), latest_per_lane(target_runs)
    return ParityReport(
        reference=reference,
        target=target,
        goal=goal,
        current=snapshot(ref_now, tgt_now, rules),
        reference_runs=tuple(ref_now),
        target_runs=tuple(tgt_now),
        series=tuple(series),
        minutes=(*lane_minutes("reference", reference_runs), *lane_minutes("target", target_runs)),
    )
