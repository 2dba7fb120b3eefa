"""Failed test cases: which to rerun now in a fresh process, and the final verdict of a test after its attempts.

Pure functions over a job's :class:`CaseVerdict` list; every decision carries the reason that decided it.
Numbers: the ``tests`` section of baselines/rerun-policy.yaml; rules in docs/flaky.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from guardrail.analysis.flaky_scores import broken_in_quarantine
from guardrail.analysis.junit_model import CaseVerdict
from guardrail.rerun_policy import RerunPolicy

Gate = Literal["pass", "fail", "neutral", "skip"]


@dataclass(frozen=True)
class CaseRerun:
    test: str  # CaseIdentity.key
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


def plan_test_reruns(
    verdicts: Sequence[CaseVerdict],
    *,
    policy: RerunPolicy = RerunPolicy(),
    known_flaky: Iterable[str] = (),
    quarantined: Iterable[str] = (),
    changed_tests: Iterable[str] = (),
) -> tuple[list[CaseRerun], str]:
    """Which failed tests of one job to rerun now, each in a fresh process.

    ``verdicts``: the job's :class:`CaseVerdict` list so far. ``known_flaky`` / ``quarantined`` /
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
    allowed = tp.failed_allowed(len(ran))
    if len(failed) > allowed:
        reason = (
            f"no reruns: {len(failed)} of {len(ran)} tests failed ({share:.1%} > {tp.max_failed_share:.0%}), "
            f"at most {allowed} may fail and still get reruns: a broken change or broken infrastructure, not flakes"
        )
        return [CaseRerun(v.identity.key, v.identity.id, False, 0, reason) for v in failed], reason

    def has(s: set[str], v: CaseVerdict) -> bool:
        return v.identity.key in s or v.identity.id in s

    def changed(v: CaseVerdict) -> bool:  # by test key, node id, or the test's file (a PR's changed paths)
        return has(changed_set, v) or (v.identity.file is not None and v.identity.file in changed_set)

    # known-flaky first (most likely to pass), then the cheapest
    failed.sort(key=lambda v: (not has(flaky_set, v), v.duration_s, v.identity.key))
    out: list[CaseRerun] = []
    planned = 0
    for v in failed:
        key, nid = v.identity.key, v.identity.id
        done = max(0, v.process_attempts - 1)
        left = tp.max_reruns_per_test - done
        if changed(v):
            out.append(CaseRerun(key, nid, False, 0, "the PR changed this test: a pass on rerun would not count"))
        elif has(quarantined_set, v):
            out.append(CaseRerun(key, nid, False, 0, "quarantined: it does not gate, so no rerun is needed"))
        elif left <= 0:
            out.append(
                CaseRerun(
                    key,
                    nid,
                    False,
                    0,
                    f"already rerun {done} times in a fresh process (max {tp.max_reruns_per_test})",
                )
            )
        elif planned >= tp.max_tests_per_job:
            out.append(CaseRerun(key, nid, False, 0, f"job cap reached: {tp.max_tests_per_job} tests rerun already"))
        else:
            planned += 1
            kind = "known flaky" if has(flaky_set, v) else "failed"
            out.append(
                CaseRerun(key, nid, True, left, f"{kind}: rerun in a fresh process, up to {left} more attempt(s)")
            )
    return out, f"{planned} of {len(failed)} failed tests to rerun ({share:.1%} of {len(ran)} failed)"


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
    v: CaseVerdict,
    *,
    known_flaky: bool = False,
    quarantined: bool = False,
    changed_by_pr: bool = False,
    failing_on_base: bool = False,
    quarantined_for: Iterable[str] | None = None,
) -> FinalVerdict:
    """The verdict of one test after all its attempts.

    ``quarantined_for``: the failure signatures of a quarantine entered by rule (the flakes it mutes). Such a
    quarantine never mutes a broken test: failing every attempt, or failing with a signature not among them,
    gates again (:func:`~guardrail.analysis.flaky_scores.broken_in_quarantine`). ``None`` (a quarantine by
    hand, which may mute a known broken test on purpose) keeps the quarantine neutral.
    """
    key, nid = v.identity.key, v.identity.id

    def fv(gate: Gate, recorded: str, flagged: bool, reason: str) -> FinalVerdict:
        return FinalVerdict(key, nid, gate, recorded, flagged, reason)

    if v.verdict == "skip":
        return fv("skip", "skip", False, "skipped")
    if v.verdict == "pass":
        return fv("pass", "pass", False, "passed every attempt")
    if quarantined and quarantined_for is not None:
        broken = broken_in_quarantine(v.verdict, v.signatures, quarantined_for, attempts=v.attempts)
        if broken:
            return fv("fail", v.verdict, True, f"{broken}: it gates again, its quarantine is to be released")
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
