"""Read-side queries over the JUnit tables, for the CLI and the dashboard.

The flaky report aggregates in SQL (one window-function query, ``WindowCounts``) and classifies with the
pure :func:`guardrail.analysis.flaky.classify`: the same result as :func:`assess` over the full history
(tested), without loading a million rows into Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, or_, select, text
from sqlalchemy.orm import Session

from guardrail.analysis.flaky import (
    FlakinessPolicy,
    FlakyStats,
    HealthRow,
    HistoricVerdict,
    InfraEvent,
    QuarantineEntry,
    WindowCounts,
    ci_health,
    classify,
)
from guardrail.ingest.junit_model import TestIdentity, TestVerdict
from guardrail.store import models as m
from guardrail.store import test_models as tm

V = tm.TestVerdictRow
T = tm.TestCase
_ORDER = {"broken": 0, "quarantined": 1, "flaky": 2, "healthy": 3}


def _filtered(q: Select, *, lane: str | None, hardware: str | None) -> Select:
    if lane:
        q = q.where(V.lane == lane)
    if hardware:
        # the run's hardware, or the test variant's own (a `hardware` property in the JUnit file)
        q = q.where(or_(V.hardware == hardware, V.test_pk.in_(select(T.id).where(T.hardware == hardware))))
    return q


def identity(t: tm.TestCase) -> TestIdentity:
    return TestIdentity(t.suite, t.file, t.classname, t.name, t.params, t.hardware)


def find_tests(session: Session, test: str) -> list[tm.TestCase]:
    """Tests whose key or node id is ``test`` (a node id matches every hardware variant)."""
    from guardrail.ingest.tests import key_hash

    q = select(T).where(or_(T.key_hash == key_hash(test), T.test_id == test)).order_by(T.key)
    return list(session.scalars(q))


# --- quarantine --------------------------------------------------------------------------------------


def active_quarantine(session: Session) -> dict[str, QuarantineEntry]:
    """Active entries (not released), by test key."""
    rows = session.scalars(select(tm.QuarantineRow).where(tm.QuarantineRow.released_at.is_(None)))
    return {r.test.key: QuarantineEntry(r.test.key, r.since, r.reason, r.by, tuple(r.signatures or ())) for r in rows}


# --- flakiness ---------------------------------------------------------------------------------------


def window_counts(
    session: Session,
    *,
    now: datetime,
    policy: FlakinessPolicy = FlakinessPolicy(),
    lane: str | None = None,
    hardware: str | None = None,
) -> list[WindowCounts]:
    """Per test variant: the counts of its window (last ``window_days`` days or last ``window_verdicts``
    verdicts, whichever holds more), skips and infrastructure-failed runs left out, aggregated in SQL."""
    if session.get_bind().dialect.name == "postgresql":
        rows = _pg_window_rows(session, now=now, policy=policy, lane=lane, hardware=hardware)
    else:
        rows = _generic_window_rows(session, now=now, policy=policy, lane=lane, hardware=hardware)
    out = []
    for key, test_id, hw, n, f, failed, first_ok, last_at in rows:
        trailing = n if first_ok is None else int(first_ok) - 1
        if last_at is not None and last_at.tzinfo is None:  # SQLite through an aggregate loses the type
            last_at = m.UTCDateTime().process_result_value(last_at, None)
        out.append(WindowCounts(key, int(n), int(f or 0), int(failed or 0), trailing, last_at, test_id, hw))
    return out


def _generic_window_rows(
    session: Session, *, now: datetime, policy: FlakinessPolicy, lane: str | None, hardware: str | None
) -> list[tuple]:
    """One window-function pass over every verdict (SQLite; any backend)."""
    rn = func.row_number().over(partition_by=V.test_pk, order_by=(V.at.desc(), V.id.desc())).label("rn")
    inner = select(V.test_pk, V.verdict, V.at, rn).where(V.infra_excluded.is_(False), V.verdict != "skip", V.at <= now)
    sub = _filtered(inner, lane=lane, hardware=hardware).subquery()
    since = now - timedelta(days=policy.window_days)
    in_window = or_(sub.c.rn <= policy.window_verdicts, sub.c.at >= since)
    q = (
        select(
            sub.c.test_pk,
            func.count(),
            func.sum(case((sub.c.verdict == "flaky", 1), else_=0)),
            func.sum(case((sub.c.verdict == "fail", 1), else_=0)),
            func.min(case((sub.c.verdict != "fail", sub.c.rn), else_=None)),
            func.max(sub.c.at),
        )
        .where(in_window)
        .group_by(sub.c.test_pk)
    )
    rows = session.execute(q).all()
    names = _test_names(session, [r[0] for r in rows])
    return [(*names[pk], *rest) for pk, *rest in rows]


# PostgreSQL: per test, read only its window -- newest first from ix_test_verdicts_window, LIMIT
# max(100, verdicts in the last 14 days) -- instead of numbering every verdict of every test. The 14-day count
# is an index-only count per test from the same index (a range scan of all verdicts by `at` read the heap
# for the filters: 0.47-0.56 s -> 0.34-0.38 s over 1M verdicts).
_PG_WINDOW_SQL = """
SELECT t.key, t.test_id, t.hardware, w.n, w.f, w.failed, w.first_ok, w.last_at
FROM tests t
CROSS JOIN LATERAL (
  SELECT count(*) AS n,
         count(*) FILTER (WHERE x.verdict = 'flaky') AS f,
         count(*) FILTER (WHERE x.verdict = 'fail') AS failed,
         min(x.rn) FILTER (WHERE x.verdict <> 'fail') AS first_ok,
         max(x.at) AS last_at
  FROM (
    SELECT v.verdict, v.at, row_number() OVER (ORDER BY v.at DESC, v.id DESC) AS rn
    FROM test_verdicts v
    WHERE v.test_pk = t.id AND NOT v.infra_excluded AND v.verdict <> 'skip' AND v.at <= :now {vfilter}
    ORDER BY v.at DESC, v.id DESC
    LIMIT greatest(:k, (
      SELECT count(*) FROM test_verdicts d
      WHERE d.test_pk = t.id AND NOT d.infra_excluded AND d.verdict <> 'skip' AND d.at <= :now AND d.at >= :since
      {dfilter}
    ))
  ) x
) w
WHERE w.n > 0
"""


def _pg_window_rows(
    session: Session, *, now: datetime, policy: FlakinessPolicy, lane: str | None, hardware: str | None
) -> list[tuple]:
    vfilter = ""
    if lane:
        vfilter += " AND v.lane = :lane"
    if hardware:
        vfilter += " AND (v.hardware = :hw OR t.hardware = :hw)"
    params: dict[str, Any] = {
        "now": now,
        "since": now - timedelta(days=policy.window_days),
        "k": policy.window_verdicts,
    }
    if lane:
        params["lane"] = lane
    if hardware:
        params["hw"] = hardware
    sql = text(_PG_WINDOW_SQL.format(vfilter=vfilter, dfilter=vfilter.replace("v.", "d.")))
    return [tuple(r) for r in session.execute(sql, params)]


def _test_names(session: Session, pks: list[int]) -> dict[int, tuple[str, str, str | None]]:
    out: dict[int, tuple[str, str, str | None]] = {}
    wanted = set(pks)
    if len(wanted) > 2000:  # cheaper to read the whole (small) table than to bind thousands of ids
        rows = session.execute(select(T.id, T.key, T.test_id, T.hardware))
        return {pk: (k, i, h) for pk, k, i, h in rows if pk in wanted}
    for i in range(0, len(pks), 500):
        q = select(T.id, T.key, T.test_id, T.hardware).where(T.id.in_(pks[i : i + 500]))
        out.update({pk: (k, t, h) for pk, k, t, h in session.execute(q)})
    return out


def flaky_stats(
    session: Session,
    *,
    now: datetime,
    policy: FlakinessPolicy = FlakinessPolicy(),
    lane: str | None = None,
    hardware: str | None = None,
) -> list[FlakyStats]:
    """What :func:`guardrail.analysis.flaky.assess` gives over the stored history, aggregated in SQL."""
    quarantined = active_quarantine(session)
    counts = window_counts(session, now=now, policy=policy, lane=lane, hardware=hardware)
    out = [classify(c, policy=policy, quarantine=quarantined.get(c.test)) for c in counts]
    seen = {c.test for c in counts}
    for key, q in quarantined.items():
        if key not in seen and not lane and not hardware:
            out.append(classify(WindowCounts(key, 0, 0, 0, 0), policy=policy, quarantine=q))
    out.sort(key=lambda s: (_ORDER[s.state], -s.score, s.test))
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
    q = _filtered(q.join(T, T.id == V.test_pk), lane=lane, hardware=hardware)
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
    q = _filtered(
        select(V.test_pk, total, func.count())
        .where(V.at >= now - timedelta(days=days), V.at <= now, V.rerun_duration_s > 0)
        .group_by(V.test_pk)
        .order_by(total.desc(), V.test_pk)
        .limit(limit),
        lane=filters.get("lane"),
        hardware=filters.get("hardware"),
    )
    rows = session.execute(q).all()
    names = _test_names(session, [r[0] for r in rows])
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


def test_strip(session: Session, test: str, *, limit: int = 30) -> dict[str, Any]:
    """A test's recent history strip: its latest verdicts, newest first, with attempts and signatures."""
    found = find_tests(session, test)
    out = {"test": test, "variants": []}
    for t in found:
        rows = session.scalars(select(V).where(V.test_pk == t.id).order_by(V.at.desc(), V.id.desc()).limit(limit))
        out["variants"].append(
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


test_strip.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name


# --- verdicts of a run (rerun-plan) ------------------------------------------------------------------


def run_verdicts(session: Session, run: m.Run) -> list[TestVerdict]:
    """The verdicts (regrouped over the commit pair) of the tests that ran in ``run``."""
    from guardrail.ingest.tests import pair_key

    key = pair_key(run.commit.sha if run.commit else None, run.base_commit, run.id)
    ran = select(tm.TestExecution.test_pk).where(tm.TestExecution.run_id == run.id).distinct()
    q = select(V, T).join(T, T.id == V.test_pk).where(V.pair_key == key, V.test_pk.in_(ran)).order_by(T.key)
    out = []
    for v, t in session.execute(q):
        out.append(
            TestVerdict(
                identity=identity(t),
                verdict=v.verdict,  # type: ignore[arg-type]
                head_commit=v.head_commit,
                base_commit=v.base_commit,
                final_outcome=v.final_outcome,  # type: ignore[arg-type]
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
    from guardrail.ingest.tests import pair_key

    D = tm.RerunDecision
    q = select(D).order_by(D.created_at.desc(), D.id.desc()).limit(limit)
    if run_id is not None:
        q = q.where(D.run_id == run_id)
    out = []
    runs: dict[int, m.Run | None] = {}
    for d in session.scalars(q):
        item = {
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
                from guardrail.ingest.tests import key_hash

                key = pair_key(run.commit.sha if run.commit else None, run.base_commit, run.id)
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
    for _, ln, hw, at in session.execute(_filtered(q, lane=lane, hardware=hardware)):
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
    q = _filtered(
        select(V.at, V.lane, V.hardware, V.verdict, V.rerun_duration_s).where(V.at >= since, V.at <= now),
        lane=lane,
        hardware=hardware,
    )
    rows = (HealthRow(at, ln, hw, verdict, rerun) for at, ln, hw, verdict, rerun in session.execute(q))
    doc = ci_health(rows, infra_events(session, since=since, lane=lane, hardware=hardware))
    doc["since"], doc["until"] = since.isoformat(), now.isoformat()
    return doc
