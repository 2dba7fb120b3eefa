"""Attempts -> verdicts: one verdict per test variant per (head commit, base commit)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from guardrail.analysis.junit_model import FAILED, CaseIdentity, CaseRecord, CaseVerdict


def _attempt(r: CaseRecord) -> tuple[int, int, int]:
    return (r.job_attempt, r.process_attempt, r.inprocess_attempt)


class AttemptView(NamedTuple):
    """What :func:`verdict_fields` reads of an attempt, for callers that hold plain tuples."""

    outcome: str
    duration_s: float
    job_attempt: int
    process_attempt: int
    inprocess_attempt: int
    phase: str
    signature: str | None


def single_verdict(outcome: str, duration_s: float, signature: str | None, phase: str) -> tuple[Any, ...]:
    """:func:`verdict_fields` of a test with one attempt (the common case), from the attempt's values."""
    if outcome == "skip":
        return ("skip", outcome, 0, 0, (), 0 + duration_s, 0, (), 1)
    if outcome in FAILED:
        return ("fail", outcome, 1, 1, (signature,) if signature else (), 0 + duration_s, 0, (phase,), 1)
    return ("pass", outcome, 1, 0, (), 0 + duration_s, 0, (), 1)


def verdict_fields(recs: list[Any]) -> tuple[Any, ...]:
    """The verdict of one test's attempts (:class:`CaseRecord` or :class:`AttemptView`; sorted in place,
    latest last), as the :class:`CaseVerdict` fields after the commits: (verdict, final_outcome, attempts,
    failed_attempts, signatures, duration_s, rerun_duration_s, phases, process_attempts). Writers that only
    need the values skip the dataclass."""
    if len(recs) == 1:
        r = recs[0]
        return single_verdict(r.outcome, r.duration_s, r.signature, r.phase)
    recs.sort(key=_attempt)
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
    return (
        verdict,
        recs[-1].outcome,
        len(ran),
        len(failed),
        tuple(dict.fromkeys(r.signature for r in failed if r.signature)),
        sum(r.duration_s for r in recs),
        sum(r.duration_s for r in recs[1:]),
        tuple(dict.fromkeys(r.phase for r in failed)),
        len({(r.job_attempt, r.process_attempt) for r in recs}),
    )


def group_records(executions: Iterable[CaseRecord]) -> dict[CaseIdentity, list[CaseRecord]]:
    by_test: dict[CaseIdentity, list[CaseRecord]] = {}
    for r in executions:
        group = by_test.get(r.identity)
        if group is None:
            by_test[r.identity] = [r]
        else:
            group.append(r)
    return by_test


def group_verdicts(
    executions: Iterable[CaseRecord],
    *,
    head_commit: str | None = None,
    base_commit: str | None = None,
) -> list[CaseVerdict]:
    """Group attempts by test identity; the latest attempt (job, process, in-process) is the final one.

    All ``executions`` must belong to the same (head commit, base commit) pair: the caller groups by
    that first (the store query does). Mixed pass and fail on the same code is ``flaky``.
    """
    out: list[CaseVerdict] = []
    for ident, recs in group_records(executions).items():
        verdict, final, attempts, failed, sigs, duration, rerun, phases, procs = verdict_fields(recs)
        out.append(
            CaseVerdict(
                identity=ident,
                verdict=verdict,
                head_commit=head_commit,
                base_commit=base_commit,
                final_outcome=final,
                attempts=attempts,
                failed_attempts=failed,
                signatures=sigs,
                duration_s=duration,
                rerun_duration_s=rerun,
                phases=phases,
                process_attempts=procs,
            )
        )
    return out
