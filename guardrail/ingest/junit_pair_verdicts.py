"""The verdicts of a commit pair (one per test per head and base commit), after each JUnit ingest: written
straight from the file when it is the pair's only run, else regrouped from every stored attempt of the pair;
then the runs that are infrastructure failures are marked, so that flakiness leaves them out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from guardrail.analysis.flaky_scores import run_infra_failure
from guardrail.analysis.junit_model import CaseIdentity, CaseRecord
from guardrail.ingest.junit_verdicts import group_verdicts
from guardrail.rerun_policy import FlakinessPolicy
from guardrail.store import junit_models as jm
from guardrail.store import models as m
from guardrail.store.bulk_insert import BulkInsert, datetime_bind


class FreshVerdicts:
    """Writes the verdicts that ``junit_batches`` grouped straight from the file's attempts, for the common case
    -- one new file, the only run of its commit pair -- so that nothing is read back."""

    def __init__(self, session: Session, run: m.Run, pk: str, head: str | None, base: str | None):
        at = datetime_bind(session, jm.CaseVerdictRow.__table__.c.at)(run.started_at)
        self.common = (pk, head, base, run.id, run.lane, run.hardware, at)
        self.insert_rows = BulkInsert(session, jm.CaseVerdictRow.__table__, VERDICT_COLUMNS)
        self.total = 0
        self.kinds: Counter[str] = Counter()  # verdicts written, by kind (the infrastructure-failure rule's input)

    def write(self, verdicts: list[tuple], pks: list[int]) -> None:
        """``verdicts`` name their test by its number in the file; ``pks`` are the file's test ids by number."""
        common, kinds = self.common, self.kinds
        self.insert_rows([(pks[v[0]], *common, *v[1:], False) for v in verdicts])
        for v in verdicts:
            kinds[v[1]] += 1
        self.total += len(verdicts)


VERDICT_COLUMNS = (
    "test_pk", "pair_key", "head_commit", "base_commit", "run_id", "lane", "hardware", "at", "verdict",
    "final_outcome", "attempts", "failed_attempts", "signatures", "duration_s", "rerun_duration_s",
    "process_attempts", "infra_excluded",
)  # fmt: skip
_ATTEMPT_COLUMNS = (
    jm.ExecutionRow.test_pk,
    jm.ExecutionRow.run_id,
    jm.ExecutionRow.job_attempt,
    jm.ExecutionRow.process_attempt,
    jm.ExecutionRow.inprocess_attempt,
    jm.ExecutionRow.outcome,
    jm.ExecutionRow.duration_s,
    jm.ExecutionRow.phase,
    jm.ExecutionRow.signature,
)


def regroup_pair(
    session: Session,
    run: m.Run,
    policy: FlakinessPolicy | None = None,
    *,
    batch: int,
    reports: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Replace the verdicts of ``run``'s (head, base) pair, regrouped over every attempt of the pair.

    Only the tests in ``reports`` (this ingest's files) are regrouped when given: a verdict depends on its
    own test's executions only, so a sharded job ingested file by file stays linear. Streams the pair's
    executions ordered by test, groups ``batch`` attempts' tests at a time with :func:`group_verdicts`, inserts
    them; then re-marks the runs that :func:`run_infra_failure` calls infrastructure failures.
    Returns {"verdicts": n regrouped, "infra": {run_id: reason}}.
    """
    policy = policy or FlakinessPolicy()
    head, base, pk, runs = pair_runs(session, run)
    stale = delete(jm.CaseVerdictRow).where(jm.CaseVerdictRow.pair_key == pk)
    q = select(*_ATTEMPT_COLUMNS).where(jm.ExecutionRow.run_id.in_(list(runs)))
    if reports is not None:
        touched = select(jm.ExecutionRow.test_pk).where(jm.ExecutionRow.report_id.in_(list(reports))).distinct()
        stale = stale.where(jm.CaseVerdictRow.test_pk.in_(touched))
        q = q.where(jm.ExecutionRow.test_pk.in_(touched))
    session.execute(stale)
    q = q.order_by(
        jm.ExecutionRow.test_pk,
        jm.ExecutionRow.job_attempt,
        jm.ExecutionRow.process_attempt,
        jm.ExecutionRow.inprocess_attempt,
        jm.ExecutionRow.id,
    ).execution_options(yield_per=batch)
    total = 0
    insert_rows = BulkInsert(session, jm.CaseVerdictRow.__table__, VERDICT_COLUMNS)
    at_bind = datetime_bind(session, jm.CaseVerdictRow.__table__.c.at)
    # the newest run of a set of runs, and its stored timestamp (one bind per run, not per row)
    newest_of: dict[frozenset[int], tuple[Any, Any]] = {}

    def newest(run_ids: frozenset[int]) -> tuple[Any, Any]:
        if run_ids not in newest_of:
            r = max((runs[i] for i in run_ids), key=lambda r: (r.started_at, r.id))
            newest_of[run_ids] = (r, at_bind(r.started_at))
        return newest_of[run_ids]

    # group_verdicts runs over many tests at once (one identity per test, its pk as the name)
    pending: list[CaseRecord] = []
    pending_runs: dict[int, frozenset[int]] = {}

    def flush() -> None:
        nonlocal total
        rows = []
        for v in group_verdicts(pending, head_commit=head, base_commit=base):
            test_pk = int(v.identity.name)
            r, at = newest(pending_runs[test_pk])
            rows.append(
                (
                    test_pk, pk, head, base, r.id, r.lane, r.hardware, at, v.verdict, v.final_outcome,
                    v.attempts, v.failed_attempts, json.dumps(list(v.signatures)), v.duration_s,
                    v.rerun_duration_s, v.process_attempts, False,
                )
            )  # fmt: skip
        insert_rows(rows)
        total += len(rows)
        pending.clear()
        pending_runs.clear()

    current: int | None = None
    ident = CaseIdentity("", None, None, "")
    run_ids: set[int] = set()
    for e in session.execute(q):
        if e.test_pk != current:
            if current is not None:
                pending_runs[current] = frozenset(run_ids)
                if len(pending) >= batch:
                    flush()
            current, run_ids = e.test_pk, set()
            ident = CaseIdentity("", None, None, str(e.test_pk))
        run_ids.add(e.run_id)
        pending.append(
            CaseRecord(
                identity=ident,
                outcome=e.outcome,
                duration_s=e.duration_s,
                job_attempt=e.job_attempt,
                process_attempt=e.process_attempt,
                inprocess_attempt=e.inprocess_attempt,
                phase=e.phase,
                signature=e.signature,
            )
        )
    if current is not None:
        pending_runs[current] = frozenset(run_ids)
    if pending:
        flush()

    return {"verdicts": total, "infra": mark_infra(session, pk, runs, policy)}


def pair_runs(session: Session, run: m.Run) -> tuple[str | None, str | None, str, dict[int, Any]]:
    """(head, base, pair key, {run id: (id, started_at, lane, hardware)}) of every run of ``run``'s pair."""
    head = run.commit.sha if run.commit is not None else None
    base = run.base_commit
    runs_q = select(m.Run.id, m.Run.started_at, m.Run.lane, m.Run.hardware)
    if head:
        runs_q = runs_q.join(m.Commit, m.Commit.id == m.Run.commit_id).where(m.Commit.sha == head)
        runs_q = runs_q.where(m.Run.base_commit.is_(None) if base is None else m.Run.base_commit == base)
    else:
        runs_q = runs_q.where(m.Run.id == run.id)
    return head, base, jm.pair_key(head, base, run.id), {r.id: r for r in session.execute(runs_q)}


# This run's `fail` verdicts whose test's previous verdict (another commit pair, earlier, skips aside) was a
# `fail` too: broken tests, which the infrastructure-failure rule does not count.
_STILL_FAILING = text(
    """
SELECT count(*) FROM test_verdicts v
WHERE v.pair_key = :pk AND v.run_id = :rid AND v.verdict = 'fail'
  AND (SELECT p.verdict FROM test_verdicts p
       WHERE p.test_pk = v.test_pk AND p.pair_key <> :pk AND p.verdict <> 'skip' AND p.at < v.at
       ORDER BY p.at DESC, p.id DESC LIMIT 1) = 'fail'
"""
)


class _Kind(NamedTuple):
    verdict: str


def mark_infra(
    session: Session, pk: str, runs: dict[int, Any], policy: FlakinessPolicy, fresh: FreshVerdicts | None = None
) -> dict[int, str]:
    """Flag the verdicts of runs that :func:`run_infra_failure` calls infrastructure failures. ``fresh``: the
    pair's only run was just written, none flagged, and its verdict kinds counted -- nothing to read back."""
    # a verdict may have moved to a newer run: judge every run of the pair afresh
    # (only rows that change: an UPDATE rewrites every row it touches on PostgreSQL)
    V = jm.CaseVerdictRow
    if fresh is None:
        session.execute(update(V).where(V.pair_key == pk, V.infra_excluded.is_(True)).values(infra_excluded=False))
    infra: dict[int, str] = {}
    for rid in runs:
        if fresh is not None:
            verdicts: Any = (_Kind(k) for k, n in fresh.kinds.items() for _ in range(n))
        else:
            verdicts = session.execute(select(V.verdict).where(V.pair_key == pk, V.run_id == rid))
        reason = run_infra_failure(verdicts, policy)
        if reason:
            # a mass failure? Not the tests that were failing already (their previous verdict failed too):
            # read only for runs that look like one, so the common ingest pays nothing
            still = session.execute(_STILL_FAILING, {"pk": pk, "rid": rid}).scalar_one()
            if still:
                reason = run_infra_failure(
                    session.execute(select(V.verdict).where(V.pair_key == pk, V.run_id == rid)),
                    policy,
                    still_failing=int(still),
                )
        if reason:
            infra[rid] = reason
            session.execute(
                update(jm.CaseVerdictRow)
                .where(jm.CaseVerdictRow.pair_key == pk, jm.CaseVerdictRow.run_id == rid)
                .values(infra_excluded=True)
            )
    return infra
