"""A check kept: the Check row with its verdicts document (JSON, naming its own id) and one Verdict row per series
for the dashboard's queries."""

from __future__ import annotations

from sqlalchemy.orm import Session

from guardrail.policy import Policy
from guardrail.store import models as m
from guardrail.verdicts import VerdictRow, VerdictsDoc


def _verdict_row(check: m.Check, v: VerdictRow) -> m.Verdict:
    return m.Verdict(
        check=check,
        series_id=v.series_id,
        workload=v.workload,
        metric=v.metric,
        hardware=v.hardware,
        verdict=v.verdict,
        change=v.change,
        ci_low=v.ci[0] if v.ci else None,
        ci_high=v.ci[1] if v.ci else None,
        p_value=v.p_value,
        q_value=v.q_value,
        baseline_runs=v.baseline.runs,
        baseline_median=v.baseline.median,
        candidate_repeats=v.candidate.repeats,
        candidate_median=v.candidate.median,
        threshold=v.threshold,
        repeats_needed=v.repeats_needed,
        explanation=v.explanation,
    )


def store_check(session: Session, run: m.Run, policy: Policy, doc: VerdictsDoc) -> VerdictsDoc:
    """Store the check of `run`; returns the document as stored (with its `check_id`)."""
    check = m.Check(
        run_id=run.id,
        policy=policy.lane,
        status=doc.outcome(),
        expected_false_alarms=doc.expected_false_alarms or 0.0,
        summary=doc.summary or {},
        doc={},
    )
    session.add(check)
    session.add_all([_verdict_row(check, v) for v in doc.verdicts])
    session.flush()
    stored = doc.model_copy(update={"check_id": check.id})
    check.doc = stored.to_dict()  # written once the id is known, so the stored document names its check
    return stored
