"""The rerun policy: which failed tests and which performance workloads to rerun now, and the final
verdict of a test after its attempts. Pure functions; every decision carries the reason that decided it.

Configured in ``baselines/rerun-policy.yaml`` (:func:`load_policy`); rules in docs/flaky.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from guardrail.analysis.flaky import FlakinessPolicy, QuarantinePolicy
from guardrail.errors import InputError

RERUN_PLAN_SCHEMA = "guardrail.rerun-plan/v1"
DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "baselines" / "rerun-policy.yaml"
# guardrail.analysis.planner.REPEATS_UNREACHABLE: no number of repeats resolves the comparison
REPEATS_UNREACHABLE = 1_000_000

Gate = Literal["pass", "fail", "neutral", "skip"]


@dataclass(frozen=True)
class TestRerunPolicy:
    __test__ = False

    max_reruns_per_test: int = 2
    max_tests_per_job: int = 20
    max_failed_share: float = 0.05


@dataclass(frozen=True)
class PerfRerunPolicy:
    rerun_verdicts: tuple[str, ...] = ("inconclusive", "regression")
    default_extra_repeats: int = 3
    max_extra_repeats: int = 10
    max_workloads_per_job: int = 8


@dataclass(frozen=True)
class RerunPolicy:
    flakiness: FlakinessPolicy = field(default_factory=FlakinessPolicy)
    quarantine: QuarantinePolicy = field(default_factory=QuarantinePolicy)
    tests: TestRerunPolicy = field(default_factory=TestRerunPolicy)
    performance: PerfRerunPolicy = field(default_factory=PerfRerunPolicy)


_SECTIONS = {
    "flakiness": FlakinessPolicy,
    "quarantine": QuarantinePolicy,
    "tests": TestRerunPolicy,
    "performance": PerfRerunPolicy,
}


def load_policy(path: str | Path | None = None) -> RerunPolicy:
    """Read the YAML policy; missing keys keep their defaults, unknown keys or bad values are an error."""
    p = Path(path) if path is not None else DEFAULT_POLICY_PATH
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise InputError(f"cannot read rerun policy ({exc.strerror})", file=str(p)) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML ({str(exc).splitlines()[0]})", file=str(p)) from None
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top level", file=str(p), field="$")
    sections: dict[str, Any] = {}
    for name, value in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise InputError(f"unknown section (known: {', '.join(_SECTIONS)})", file=str(p), field=name)
        if not isinstance(value, dict):
            raise InputError("expected a mapping", file=str(p), field=name)
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, v in value.items():
            f = known.get(key)
            if f is None:
                raise InputError("unknown key", file=str(p), field=f"{name}.{key}")
            default = getattr(cls(), key)
            if isinstance(default, tuple):
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise InputError("expected a list of names", file=str(p), field=f"{name}.{key}")
                v = tuple(v)
            elif isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise InputError(f"expected a non-negative number, got {v!r}", file=str(p), field=f"{name}.{key}")
            elif isinstance(default, int) and not isinstance(v, int):
                raise InputError(f"expected a whole number, got {v!r}", file=str(p), field=f"{name}.{key}")
            kwargs[key] = v
        sections[name] = cls(**kwargs)
    return RerunPolicy(**sections)


# --- tests: what to rerun now ----------------------------------------------------------------------


@dataclass(frozen=True)
class TestRerun:
    __test__ = False

    test: str  # TestIdentity.key
    id: str  # node id to select the test in a fresh process (pytest: the node id)
    rerun: bool
    attempts: int  # fresh-process attempts to run now (stop at the first pass); 0 when not rerun
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "id": self.id,
            "rerun": self.rerun,
            "attempts": self.attempts,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PerfRerun:
    workload: str
    metric: str
    hardware: str
    verdict: str
    action: Literal["rerun", "flag", "none"]
    extra_repeats: int
    repeats_needed: int | None
    blocking: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "metric": self.metric,
            "hardware": self.hardware,
            "verdict": self.verdict,
            "action": self.action,
            "extra_repeats": self.extra_repeats,
            "repeats_needed": self.repeats_needed,
            "blocking": self.blocking,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RerunPlan:
    run_id: str | None
    tests: tuple[TestRerun, ...]
    workloads: tuple[PerfRerun, ...]
    reason: str  # the job-level decision
    failed_tests: int = 0
    ran_tests: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": RERUN_PLAN_SCHEMA,
            "run_id": self.run_id,
            "reason": self.reason,
            "failed_tests": self.failed_tests,
            "ran_tests": self.ran_tests,
            "tests": [t.to_dict() for t in self.tests],
            "workloads": [w.to_dict() for w in self.workloads],
            "summary": {
                "tests_to_rerun": sum(t.rerun for t in self.tests),
                "workloads_to_rerun": sum(w.action == "rerun" for w in self.workloads),
                "workloads_flagged": sum(w.action == "flag" for w in self.workloads),
            },
        }


def plan_test_reruns(
    verdicts: Sequence[Any],
    *,
    policy: RerunPolicy = RerunPolicy(),
    known_flaky: Iterable[str] = (),
    quarantined: Iterable[str] = (),
    changed_tests: Iterable[str] = (),
) -> tuple[list[TestRerun], str]:
    """Which failed tests of one job to rerun now, each in a fresh process.

    ``verdicts``: the job's :class:`TestVerdict` list so far. ``known_flaky`` / ``quarantined`` /
    ``changed_tests`` hold test keys (or plain ids: a test matches by key or id); ``changed_tests`` may
    also hold the file paths the PR changed. Returns the decisions
    for the failed tests and the job-level reason.
    """
    tp = policy.tests
    flaky_set, quarantined_set, changed_set = set(known_flaky), set(quarantined), set(changed_tests)
    ran = [v for v in verdicts if v.verdict != "skip"]
    failed = [v for v in ran if v.final_outcome in ("fail", "error")]
    if not failed:
        return [], "nothing failed"
    share = len(failed) / len(ran)
    if share > tp.max_failed_share:
        reason = (
            f"no reruns: {len(failed)} of {len(ran)} tests failed ({share:.1%} > {tp.max_failed_share:.0%}), "
            "a broken change or broken infrastructure, not flakes"
        )
        return [TestRerun(v.identity.key, v.identity.id, False, 0, reason) for v in failed], reason

    def has(s: set[str], v: Any) -> bool:
        return v.identity.key in s or v.identity.id in s

    def changed(v: Any) -> bool:  # by test key, node id, or the test's file (a PR's changed paths)
        return has(changed_set, v) or (v.identity.file is not None and v.identity.file in changed_set)

    # known-flaky first (most likely to pass), then the cheapest
    failed.sort(key=lambda v: (not has(flaky_set, v), v.duration_s, v.identity.key))
    out: list[TestRerun] = []
    planned = 0
    for v in failed:
        key, nid = v.identity.key, v.identity.id
        done = max(0, v.process_attempts - 1)
        left = tp.max_reruns_per_test - done
        if changed(v):
            out.append(TestRerun(key, nid, False, 0, "the PR changed this test: a pass on rerun would not count"))
        elif has(quarantined_set, v):
            out.append(TestRerun(key, nid, False, 0, "quarantined: it does not gate, so no rerun is needed"))
        elif left <= 0:
            out.append(
                TestRerun(
                    key,
                    nid,
                    False,
                    0,
                    f"already rerun {done} times in a fresh process (max {tp.max_reruns_per_test})",
                )
            )
        elif planned >= tp.max_tests_per_job:
            out.append(TestRerun(key, nid, False, 0, f"job cap reached: {tp.max_tests_per_job} tests rerun already"))
        else:
            planned += 1
            kind = "known flaky" if has(flaky_set, v) else "failed"
            out.append(
                TestRerun(key, nid, True, left, f"{kind}: rerun in a fresh process, up to {left} more attempt(s)")
            )
    return out, f"{planned} of {len(failed)} failed tests to rerun ({share:.1%} of {len(ran)} failed)"


# --- tests: the final verdict ----------------------------------------------------------------------


@dataclass(frozen=True)
class FinalVerdict:
    test: str
    id: str
    gate: Gate  # what the job's conclusion uses: fail blocks, neutral does not
    recorded: str  # the verdict kept in history: pass / fail / flaky / skip
    flagged: bool  # shown for review (first flake of a healthy test, quarantined failure, ...)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "id": self.id,
            "gate": self.gate,
            "recorded": self.recorded,
            "flagged": self.flagged,
            "reason": self.reason,
        }


def final_verdict(
    v: Any,
    *,
    known_flaky: bool = False,
    quarantined: bool = False,
    changed_by_pr: bool = False,
    failing_on_base: bool = False,
) -> FinalVerdict:
    """The verdict of one test after all its attempts (``v``: a :class:`TestVerdict`)."""
    key, nid = v.identity.key, v.identity.id

    def fv(gate: Gate, recorded: str, flagged: bool, reason: str) -> FinalVerdict:
        return FinalVerdict(key, nid, gate, recorded, flagged, reason)

    if v.verdict == "skip":
        return fv("skip", "skip", False, "skipped")
    if v.verdict == "pass":
        return fv("pass", "pass", False, "passed every attempt")
    if v.verdict == "flaky":
        n = f"failed {v.failed_attempts} of {v.attempts} attempts"
        if v.final_outcome in ("fail", "error"):
            # passed once, then failed last: the same code failing is never hidden by an earlier pass
            if changed_by_pr:
                return fv("fail", "flaky", True, f"{n}, last attempt failed, and the PR changed this test")
            if quarantined:
                return fv("neutral", "flaky", True, f"{n}, last attempt failed; quarantined, so not gating")
            if failing_on_base:
                return fv("neutral", "flaky", True, f"{n}, last attempt failed; fails on the base commit too")
            return fv("fail", "flaky", True, f"{n}, last attempt failed")
        if changed_by_pr:
            return fv(
                "fail",
                "flaky",
                True,
                f"{n} then passed, but the PR changed this test: it may have made it flaky",
            )
        if known_flaky or quarantined:
            return fv("pass", "flaky", False, f"{n} then passed; a known flaky test: pass, recorded flaky")
        return fv("neutral", "flaky", True, f"{n} then passed; first flake of a healthy test: not blocking, flagged")
    # fails every attempt
    n = f"failed all {v.attempts} attempts"
    if quarantined:
        return fv("neutral", "fail", True, f"{n}; quarantined, so not gating")
    if failing_on_base:
        return fv("neutral", "fail", True, f"{n}; fails on the base commit too, so this PR did not cause it")
    return fv("fail", "fail", False, n)


def job_conclusion(finals: Iterable[FinalVerdict]) -> tuple[Literal["pass", "fail"], str]:
    """The job fails when any test's gate is fail; the reason names them (first five)."""
    bad = [f.id for f in finals if f.gate == "fail"]
    if not bad:
        return "pass", "no test gates the job"
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return "fail", f"{len(bad)} failing test(s): {', '.join(bad[:5])}{more}"


# --- performance workloads -------------------------------------------------------------------------


@dataclass(frozen=True)
class PerfCandidate:
    """One judged series: an entry of a ``guardrail.verdicts/v1`` document, or the same fields."""

    workload: str
    metric: str
    hardware: str
    verdict: str
    repeats_needed: int | None = None
    candidate_repeats: int | None = None
    informational: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.workload, self.metric, self.hardware)

    @classmethod
    def from_entry(cls, e: Mapping[str, Any]) -> PerfCandidate:
        return cls(
            workload=e["workload"],
            metric=e["metric"],
            hardware=e.get("hardware") or "",
            verdict=e["verdict"],
            repeats_needed=e.get("repeats_needed"),
            candidate_repeats=(e.get("candidate") or {}).get("repeats"),
            informational=bool(e.get("informational", False)),
        )


def plan_perf_reruns(
    candidates: Iterable[PerfCandidate],
    *,
    policy: RerunPolicy = RerunPolicy(),
    seen_regressions: Iterable[tuple[str, str, str]] = (),
) -> list[PerfRerun]:
    """Extra repeats for inconclusive and first-seen regression series; noisy series flagged.

    ``seen_regressions``: (workload, metric, hardware) already judged ``regression`` for this head
    commit in an earlier attempt -- a regression seen twice blocks instead of being rerun again.
    Several metrics of one workload share its rerun: the largest request wins.
    """
    pp = policy.performance
    seen = set(seen_regressions)
    out: list[PerfRerun] = []
    for c in candidates:
        need = c.repeats_needed
        base = dict(workload=c.workload, metric=c.metric, hardware=c.hardware, verdict=c.verdict, repeats_needed=need)
        if c.informational:
            out.append(PerfRerun(**base, action="none", extra_repeats=0, blocking=False, reason="informational metric"))
            continue
        if c.verdict == "noisy":
            how = (
                "no number of repeats resolves it"
                if need is not None and need >= REPEATS_UNREACHABLE
                else f"about {need} repeats would be needed"
                if need
                else "the repeats needed are unknown"
            )
            out.append(
                PerfRerun(**base, action="flag", extra_repeats=0, blocking=False,
                          reason=f"noisy series: {how}; flagged, never blocking")
            )  # fmt: skip
            continue
        first_seen = c.verdict == "regression" and c.key not in seen
        if c.verdict not in pp.rerun_verdicts or (c.verdict == "regression" and not first_seen):
            blocking = c.verdict in ("regression", "missing")
            why = "regression seen again after a rerun: confirmed" if c.verdict == "regression" else c.verdict
            out.append(PerfRerun(**base, action="none", extra_repeats=0, blocking=blocking, reason=why))
            continue
        if need is not None and need >= REPEATS_UNREACHABLE:
            out.append(
                PerfRerun(**base, action="flag", extra_repeats=0, blocking=c.verdict == "regression",
                          reason=f"{c.verdict}: no number of repeats resolves it; flagged for a human")
            )  # fmt: skip
            continue
        have = c.candidate_repeats or 0
        extra = need - have if need is not None else pp.default_extra_repeats
        extra = max(1, extra)
        capped = min(extra, pp.max_extra_repeats)
        note = f" (needs {extra}, capped at {pp.max_extra_repeats})" if capped < extra else ""
        what = "first-seen regression: confirm" if first_seen else "inconclusive: resolve"
        out.append(
            PerfRerun(**base, action="rerun", extra_repeats=capped, blocking=False,
                      reason=f"{what} with {capped} more repeats{note}")
        )  # fmt: skip
    return _cap_workloads(out, pp.max_workloads_per_job)


def _cap_workloads(decisions: list[PerfRerun], cap: int) -> list[PerfRerun]:
    chosen: list[tuple[str, str]] = []
    out = []
    for d in decisions:
        if d.action == "rerun":
            wl = (d.workload, d.hardware)
            if wl not in chosen and len(chosen) >= cap:
                d = PerfRerun(
                    d.workload, d.metric, d.hardware, d.verdict, "none", 0, d.repeats_needed,
                    d.verdict == "regression", f"job cap reached: {cap} workloads rerun already",
                )  # fmt: skip
            elif wl not in chosen:
                chosen.append(wl)
        out.append(d)
    return out


def rerun_plan(
    run_id: str | None,
    test_verdicts: Sequence[Any] = (),
    perf_candidates: Iterable[PerfCandidate] = (),
    *,
    policy: RerunPolicy = RerunPolicy(),
    known_flaky: Iterable[str] = (),
    quarantined: Iterable[str] = (),
    changed_tests: Iterable[str] = (),
    seen_regressions: Iterable[tuple[str, str, str]] = (),
) -> RerunPlan:
    """Everything ``guardrail rerun-plan --run ID`` prints: tests and workloads to rerun now."""
    tests, reason = plan_test_reruns(
        test_verdicts,
        policy=policy,
        known_flaky=known_flaky,
        quarantined=quarantined,
        changed_tests=changed_tests,
    )
    perf = plan_perf_reruns(perf_candidates, policy=policy, seen_regressions=seen_regressions)
    ran = [v for v in test_verdicts if v.verdict != "skip"]
    failed = sum(v.final_outcome in ("fail", "error") for v in ran)
    return RerunPlan(run_id, tuple(tests), tuple(perf), reason, failed_tests=failed, ran_tests=len(ran))
