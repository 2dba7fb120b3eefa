"""The rerun plan of one run (``guardrail rerun-plan``): its failed tests and its performance workloads to rerun
now, with the job-level reason."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail.analysis.case_reruns import CaseRerun, plan_test_reruns
from guardrail.analysis.junit_model import CaseVerdict
from guardrail.analysis.perf_reruns import PerfCandidate, PerfRerun, plan_perf_reruns
from guardrail.rerun_policy import RerunPolicy

RERUN_PLAN_SCHEMA = "guardrail.rerun-plan/v1"


@dataclass(frozen=True)
class RerunPlan:
    run_id: str | None
    tests: tuple[CaseRerun, ...]
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


def rerun_plan(
    run_id: str | None,
    test_verdicts: Sequence[CaseVerdict] = (),
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
