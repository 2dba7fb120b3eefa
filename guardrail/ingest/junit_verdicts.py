"""Attempts -> verdicts: one verdict per test variant per (head commit, base commit)."""

from __future__ import annotations

from collections.abc import Iterable

from guardrail.ingest.junit_model import FAILED, TestCaseRecord, TestIdentity, TestVerdict


def group_verdicts(
    executions: Iterable[TestCaseRecord],
    *,
    head_commit: str | None = None,
    base_commit: str | None = None,
) -> list[TestVerdict]:
    """Group attempts by test identity; the latest attempt (job, process, in-process) is the final one.

    All ``executions`` must belong to the same (head commit, base commit) pair: the caller groups by
    that first (the store query does). Mixed pass and fail on the same code is ``flaky``.
    """
    by_test: dict[TestIdentity, list[TestCaseRecord]] = {}
    for r in executions:
        by_test.setdefault(r.identity, []).append(r)
    out: list[TestVerdict] = []
    for ident, recs in by_test.items():
        recs.sort(key=lambda r: r.attempt)
        ran = [r for r in recs if r.outcome != "skip"]
        failed = [r for r in ran if r.outcome in FAILED]
        if not ran:
            verdict = "skip"
        elif not failed:
            verdict = "pass"
        elif len(failed) == len(ran):
            verdict = "fail"
        else:
            verdict = "flaky"
        sigs = tuple(dict.fromkeys(r.signature for r in failed if r.signature))
        phases = tuple(dict.fromkeys(r.phase for r in failed))
        out.append(
            TestVerdict(
                identity=ident,
                verdict=verdict,
                head_commit=head_commit,
                base_commit=base_commit,
                final_outcome=recs[-1].outcome,
                attempts=len(ran),
                failed_attempts=len(failed),
                signatures=sigs,
                duration_s=sum(r.duration_s for r in recs),
                rerun_duration_s=sum(r.duration_s for r in recs[1:]),
                phases=phases,
                process_attempts=len({(r.job_attempt, r.process_attempt) for r in recs}),
            )
        )
    return out
