"""Read-side queries over the JUnit tables, for the CLI and the dashboard: tests, quarantine, flaky scores
(from the SQL window of :mod:`guardrail.store.flaky_window`), verdict history, rerun decisions, CI health."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from guardrail.analysis.ci_health import HealthRow, InfraEvent, ci_health
from guardrail.analysis.flaky_scores import (
    STATE_ORDER,
    FlakyStats,
    HistoricVerdict,
    QuarantineEntry,
    WindowCounts,
    classify,
)
from guardrail.analysis.junit_model import CaseIdentity, CaseVerdict, Outcome, VerdictKind, key_hash
from guardrail.rerun_policy import FlakinessPolicy
from guardrail.store import junit_models as jm
from guardrail.store import models as m
from guardrail.store.flaky_window import case_names, filter_verdicts, window_counts

V = jm.CaseVerdictRow
T = jm.CaseRow


def case_identity(t: jm.CaseRow) -> CaseIdentity:
    return CaseIdentity(t.suite, t.file, t.classname, t.name, t.params, t.hardware)


def find_tests(session: Session, test: str) -> list[jm.CaseRow]:
    """Tests whose key or node id is ``test`` (a node id matches every hardware variant)."""
    q = select(T).where(or_(T.key_hash == key_hash(test), T.test_id == test)).order_by(T.key)
    return list(session.scalars(q))


# --- quarantine --------------------------------------------------------------------------------------


def active_quarantine(session: Session) -> dict[str, QuarantineEntry]:
    """Active entries (not released), by test key."""
    rows = session.scalars(select(jm.QuarantineRow).where(jm.QuarantineRow.released_at.is_(None)))
    return {r.test.key: QuarantineEntry(r.test.key, r.since, r.reason, r.by, tuple(r.signatures or ())) for r in rows}


# --- flakiness ---------------------------------------------------------------------------------------


def flaky_stats(
    session: Session,
    *,
    now: datetime,
    policy: FlakinessPolicy = FlakinessPolicy(),
    lane: str | None = None,
    hardware: str | None = None,
) -> list[FlakyStats]:
    """What :func:`guardrail.analysis.flaky_scores.assess` gives over the stored history, aggregated in SQL."""
    quarantined = active_quarantine(session)
    counts = window_counts(session, now=now, policy=policy, lane=lane, hardware=hardware)
    out = [classify(c, policy=policy, quarantine=quarantined.get(c.test)) for c in counts]
    seen = {c.test for c in counts}
    for key, q in quarantined.items():
        if key not in seen and not lane and not hardware:
            out.append(classify(WindowCounts(key, 0, 0, 0, 0), policy=policy, quarantine=q))
    out.sort(key=lambda s: (STATE_ORDER[s.state], -s.score, s.test))
    return out


def history(
    session: Session,
    *,
    lane: str | None = None,
    hardware: str | None = None,
    tests: list[int] | None = None,
    include_excluded: bool = True,
) -> Iterator[HistoricVerdict]:
    """Stored verdicts as :class:`HistoricVerdict` (the pure functions' input), oldest first."""
    q = select(V.verdict, V.at, V.head_commit, V.run_id, V.signatures, V.infra_excluded, T.key, T.test_id, T.hardware)
    q = filter_verdicts(q.join(T, T.id == V.test_pk), lane=lane, hardware=hardware)
    if tests is not None:
        q = q.where(V.test_pk.in_(tests))
    if not include_excluded:
        q = q.where(V.infra_excluded.is_(False))
    for r in session.execute(q.order_by(V.at, V.id)):
        yield HistoricVerdict(
            test=r.key,
            verdict=r.verdict,
            at=r.at,
            commit=r.head_commit,
            run_id=str(r.run_id),
            signatures=tuple(r.signatures or ()),
            test_id=r.test_id,
            hardware=r.hardware,
        )


def flaky_top(
    session: Session, *, now: datetime, by: str = "score", limit: int = 20, days: int = 14, **filters: Any
) -> list[dict[str, Any]]:
    """The flaky top list: by score (flaky and broken first), or by CI minutes lost to reruns in ``days``."""
    stats = flaky_stats(session, now=now, **filters)
    if by == "score":
        return [s.to_dict() for s in stats if s.state != "healthy"][:limit]
    if by != "minutes":
        raise ValueError("by is 'score' or 'minutes'")
    return minutes_lost(session, {s.test: s for s in stats}, now=now, limit=limit, days=days, **filters)


def minutes_lost(
    session: Session, stats: dict[str, Any], *, now: datetime, limit: int = 20, days: int = 14, **filters: Any
) -> list[dict[str, Any]]:
    """Tests by CI minutes lost to reruns in the last ``days`` days; `stats` (test key -> FlakyStats, from
    :func:`flaky_stats`) gives each its state and score (a test not in it is healthy)."""
    total = func.sum(V.rerun_duration_s)
    q = filter_verdicts(
        select(V.test_pk, total, func.count())
        .where(V.at >= now - timedelta(days=days), V.at <= now, V.rerun_duration_s > 0)
        .group_by(V.test_pk)
        .order_by(total.desc(), V.test_pk)
        .limit(limit),
        lane=filters.get("lane"),
        hardware=filters.get("hardware"),
    )
    rows = session.execute(q).all()
    names = case_names(session, [r[0] for r in rows])
    out = []
    for pk, seconds, n in rows:
        key, test_id, hw = names[pk]
        s = stats.get(key)
        out.append(
            {
                "id": test_id,
                "key": key,
                "hardware": hw,
                "rerun_minutes": round(float(seconds) / 60, 2),
                "rerun_seconds": round(float(seconds), 1),
                "reruns_in": int(n),
                "state": s.state if s else "healthy",
                "score": round(s.score, 4) if s else None,
            }
        )
    return out


def verdict_strip(session: Session, test: str, *, limit: int = 30) -> dict[str, Any]:
    """A test's recent history strip: its latest verdicts, newest first, with attempts and signatures."""
    found = find_tests(session, test)
    variants: list[dict[str, Any]] = []
    out = {"test": test, "variants": variants}
    for t in found:
        rows = session.scalars(select(V).where(V.test_pk == t.id).order_by(V.at.desc(), V.id.desc()).limit(limit))
        variants.append(
            {
                "key": t.key,
                "hardware": t.hardware,
                "verdicts": [
                    {
                        "verdict": v.verdict,
                        "at": v.at.isoformat(),
                        "commit": v.head_commit,
                        "base_commit": v.base_commit,
                        "run_id": v.run_id,
                        "lane": v.lane,
                        "attempts": v.attempts,
                        "failed_attempts": v.failed_attempts,
                        "signatures": list(v.signatures or ()),
                        "infra_excluded": v.infra_excluded,
                    }
                    for v in rows
                ],
            }
        )
    return out


# --- verdicts of a run (rerun-plan) ------------------------------------------------------------------


def run_verdicts(session: Session, run: m.Run) -> list[CaseVerdict]:
    """The verdicts (regrouped over the commit pair) of the tests that ran in ``run``."""
    key = jm.pair_key(run.commit.sha if run.commit else None, run.base_commit, run.id)
    ran = select(jm.ExecutionRow.test_pk).where(jm.ExecutionRow.run_id == run.id).distinct()
    q = select(V, T).join(T, T.id == V.test_pk).where(V.pair_key == key, V.test_pk.in_(ran)).order_by(T.key)
    out = []
    for v, t in session.execute(q):
        out.append(
            CaseVerdict(
                identity=case_identity(t),
                verdict=cast(VerdictKind, v.verdict),  # the column holds only the model's kinds
                head_commit=v.head_commit,
                base_commit=v.base_commit,
                final_outcome=cast(Outcome, v.final_outcome),
                attempts=v.attempts,
                failed_attempts=v.failed_attempts,
                signatures=tuple(v.signatures or ()),
                duration_s=v.duration_s,
                rerun_duration_s=v.rerun_duration_s,
                process_attempts=v.process_attempts,
            )
        )
    return out


# --- reruns -----------------------------------------------------------------------------------------


def reruns(session: Session, *, run_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Stored rerun decisions, newest first, with the outcome so far: for a test, its current verdict on
    the run's commit pair (``flaky`` = failed then passed on rerun); for a workload, the newest check."""
    D = jm.RerunDecision
    q = select(D).order_by(D.created_at.desc(), D.id.desc()).limit(limit)
    if run_id is not None:
        q = q.where(D.run_id == run_id)
    out = []
    runs: dict[int, m.Run | None] = {}
    for d in session.scalars(q):
        item: dict[str, Any] = {
            "id": d.id,
            "run_id": d.run_id,
            "kind": d.kind,
            "target": d.target,
            "action": d.action,
            "attempts": d.attempts,
            "blocking": d.blocking,
            "reason": d.reason,
            "created_at": d.created_at.isoformat(),
            "outcome": None,
        }
        if d.kind == "test" and d.action == "rerun" and d.run_id is not None:
            run = runs.get(d.run_id) or runs.setdefault(d.run_id, session.get(m.Run, d.run_id))
            if run is not None:
                key = jm.pair_key(run.commit.sha if run.commit else None, run.base_commit, run.id)
                v = session.execute(
                    select(V.verdict, V.process_attempts, V.final_outcome)
                    .join(T, T.id == V.test_pk)
                    .where(T.key_hash == key_hash(d.target), V.pair_key == key)
                ).first()
                if v is not None:
                    item["outcome"] = {"verdict": v[0], "process_attempts": v[1], "final_outcome": v[2]}
        out.append(item)
    return out


# --- CI health --------------------------------------------------------------------------------------


def infra_events(
    session: Session, *, since: datetime, lane: str | None = None, hardware: str | None = None
) -> list[InfraEvent]:
    """Infrastructure errors: test runs excluded as mass failures, and results with status infra_error
    or timeout (by their error kind)."""
    out: list[InfraEvent] = []
    q = (
        select(V.run_id, V.lane, V.hardware, func.max(V.at))
        .where(V.infra_excluded.is_(True), V.at >= since)
        .group_by(V.run_id, V.lane, V.hardware)
    )
    for _, ln, hw, at in session.execute(filter_verdicts(q, lane=lane, hardware=hardware)):
        if at is not None and at.tzinfo is None:
            at = m.UTCDateTime().process_result_value(at, None)
        out.append(InfraEvent(at, ln, hw, "tests_mass_failure"))
    rq = (
        select(m.Run.started_at, m.Run.lane, m.Run.hardware, m.Result.status, m.Result.error_kind)
        .join(m.Result, m.Result.run_id == m.Run.id)
        .where(m.Result.status.in_(("infra_error", "timeout")), m.Run.started_at >= since)
    )
    if lane:
        rq = rq.where(m.Run.lane == lane)
    if hardware:
        rq = rq.where(m.Run.hardware == hardware)
    for at, ln, hw, status, kind in session.execute(rq):
        out.append(InfraEvent(at, ln, hw, kind or status))
    return out


def ci_health_doc(
    session: Session, *, now: datetime, days: int = 14, lane: str | None = None, hardware: str | None = None
) -> dict[str, Any]:
    """``guardrail.ci-health/v1`` over the last ``days`` days, per lane × hardware × day."""
    since = now - timedelta(days=days)
    q = filter_verdicts(
        select(V.at, V.lane, V.hardware, V.verdict, V.rerun_duration_s).where(V.at >= since, V.at <= now),
        lane=lane,
        hardware=hardware,
    )
    rows = (HealthRow(at, ln, hw, verdict, rerun) for at, ln, hw, verdict, rerun in session.execute(q))
    doc = ci_health(rows, infra_events(session, since=since, lane=lane, hardware=hardware))
    doc["since"], doc["until"] = since.isoformat(), now.isoformat()
    return doc
