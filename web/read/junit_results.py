"""Read models of the CI test results (the JUnit tables): the flaky list, one test case, reruns, CI health.

Built on :mod:`guardrail.store.junit_queries` (the same figures as `guardrail flaky`, `guardrail ci-health`);
this module only adds what a page needs: the test's row id for links, its recent verdicts for the strip,
executions and quarantine history, and reruns grouped per run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail import clock
from guardrail.analysis.ci_health import HealthRow
from guardrail.analysis.ci_health import ci_health as health
from guardrail.analysis.flaky_scores import FlakyStats, classify, window_counts
from guardrail.analysis.junit_model import VerdictKind, key_hash
from guardrail.errors import NotFound
from guardrail.rerun_policy import FlakinessPolicy
from guardrail.store import junit_models as tm
from guardrail.store import junit_queries as tq
from guardrail.store import models as m
from guardrail.store.flaky_window import filter_verdicts
from web.read.fields import iso

V = tm.CaseVerdictRow
T = tm.CaseRow
STRIP = 30  # verdicts in a history strip


def has_tests(session: Session) -> bool:
    return session.scalar(select(T.id).limit(1)) is not None


def filter_choices(session: Session) -> dict[str, list[str]]:
    """Lanes and hardware that test verdicts were stored under (the filter menus)."""
    lanes = sorted(x for x in session.scalars(select(V.lane).distinct()) if x)
    hw = set(session.scalars(select(V.hardware).distinct())) | set(session.scalars(select(T.hardware).distinct()))
    return {"lanes": lanes, "hardware": sorted(x for x in hw if x)}


def strips(session: Session, pks: list[int], *, n: int = STRIP) -> dict[int, list[dict[str, Any]]]:
    """The newest ``n`` verdicts of each test row, oldest first (one window-function query)."""
    if not pks:
        return {}
    rn = func.row_number().over(partition_by=V.test_pk, order_by=(V.at.desc(), V.id.desc())).label("rn")
    sub = (
        select(V.test_pk, V.verdict, V.at, V.head_commit, V.run_id, V.attempts, V.infra_excluded, rn)
        .where(V.test_pk.in_(pks))
        .subquery()
    )
    out: dict[int, list[dict[str, Any]]] = {pk: [] for pk in pks}
    for r in session.execute(select(sub).where(sub.c.rn <= n).order_by(sub.c.test_pk, sub.c.rn.desc())):
        out[r.test_pk].append(
            {
                "verdict": r.verdict,
                "at": iso(r.at),
                "commit": r.head_commit,
                "run_id": r.run_id,
                "attempts": r.attempts,
                "infra_excluded": bool(r.infra_excluded),
            }
        )
    return out


def _pks(session: Session, keys: list[str]) -> dict[str, int]:
    hashes = {key_hash(k): k for k in keys}
    if not hashes:
        return {}
    rows = session.execute(select(T.key_hash, T.id).where(T.key_hash.in_(list(hashes))))
    return {hashes[h]: pk for h, pk in rows}


def flaky(
    session: Session,
    *,
    lane: str | None = None,
    hardware: str | None = None,
    limit: int = 50,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Top tests by flakiness score and by CI minutes lost to reruns, each with its history strip."""
    when = at or clock.now()
    # one flaky_stats pass serves both tables (flaky_top would run it three times: ~0.7 s each at 120k verdicts)
    stats = tq.flaky_stats(session, now=when, lane=lane, hardware=hardware)
    by_key = {x.test: x for x in stats}
    # ranked by score alone (flaky_top puts broken tests first; their score is low by definition)
    ranked = sorted((x for x in stats if x.state != "healthy"), key=lambda x: (-x.score, x.test))
    by_score = [x.to_dict() for x in ranked[:limit]]
    # what flaky_top(by="minutes") gives: every test with reruns in the last 14 days
    by_minutes = tq.minutes_lost(session, by_key, now=when, limit=limit, days=14, lane=lane, hardware=hardware)
    pks = _pks(session, [r["key"] for r in by_score + by_minutes])
    active = tq.active_quarantine(session)
    hist = strips(session, sorted(set(pks.values())))
    for row in by_score + by_minutes:
        pk = pks.get(row["key"])
        row["test_pk"] = pk
        row["strip"] = hist.get(pk, []) if pk else []
        q = active.get(row["key"])
        row["quarantine"] = {"since": iso(q.since), "reason": q.reason, "by": q.by} if q else None
    return {
        "schema": "guardrail.web.flaky/v1",
        "lane": lane,
        "hardware": hardware,
        "tests": by_score,
        "by_minutes": by_minutes,
        "generated_at": iso(when),
    }


def _one_case_stats(session: Session, t: tm.CaseRow, when: datetime) -> FlakyStats:
    """Score and state of one test from its own history (what flaky_stats gives for it, without scoring
    every test): infra-excluded and skipped verdicts out, then the pure window and classification."""
    vs = [v for v in tq.history(session, tests=[t.id], include_excluded=False) if v.verdict != "skip" and v.at <= when]
    counts = window_counts(t.key, vs, when, FlakinessPolicy())
    if counts.test_id is None:
        counts = dataclasses.replace(counts, test_id=t.test_id, hardware=t.hardware)
    return classify(counts, quarantine=tq.active_quarantine(session).get(t.key))


def case_detail(session: Session, pk: int, *, executions: int = 200, at: datetime | None = None) -> dict[str, Any]:
    """One test row: state, history strip, recent verdicts, executions (attempts) and quarantine history."""
    t = session.get(T, pk)
    if t is None:
        raise NotFound(f"no test {pk}")
    when = at or clock.now()
    stats = _one_case_stats(session, t, when)
    verdicts = strips(session, [pk], n=100)[pk]
    E = tm.ExecutionRow
    ex = session.execute(
        select(E, m.Run.lane, m.Run.hardware, m.Run.ci_run_id)
        .join(m.Run, m.Run.id == E.run_id)
        .where(E.test_pk == pk)
        .order_by(E.run_id.desc(), E.job_attempt.desc(), E.process_attempt.desc(), E.inprocess_attempt.desc())
        .limit(executions)
    ).all()
    quarantine = session.scalars(
        select(tm.QuarantineRow).where(tm.QuarantineRow.test_pk == pk).order_by(tm.QuarantineRow.since.desc())
    ).all()
    return {
        "schema": "guardrail.web.test/v1",
        "id": t.id,
        "key": t.key,
        "test_id": t.test_id,
        "suite": t.suite,
        "file": t.file,
        "classname": t.classname,
        "name": t.name,
        "params": t.params,
        "hardware": t.hardware,
        "first_seen_at": iso(t.first_seen_at),
        "state": stats.state,
        "stats": stats.to_dict(),
        "strip": verdicts[-STRIP:],
        "verdicts": list(reversed(verdicts)),
        "executions": [
            {
                "run_id": e.run_id,
                "ci_run_id": ci_run_id,
                "lane": lane,
                "hardware": hw,
                "job_attempt": e.job_attempt,
                "process_attempt": e.process_attempt,
                "inprocess_attempt": e.inprocess_attempt,
                "outcome": e.outcome,
                "final": e.final,
                "phase": e.phase,
                "duration_s": round(e.duration_s, 3),
                "signature": e.signature,
                "failure_type": e.failure_type,
                "message": e.message,
            }
            for e, lane, hw, ci_run_id in ex
        ],
        "quarantine": [
            {
                "since": iso(r.since),
                "reason": r.reason,
                "by": r.by,
                "released_at": iso(r.released_at),
                "release_reason": r.release_reason,
                "released_by": r.released_by,
                "active": r.released_at is None,
            }
            for r in quarantine
        ],
    }


def _workload_outcome(session: Session, run_id: int, target: str) -> dict[str, Any] | None:
    """A workload rerun's outcome so far: the verdict of the run's newest check for that workload/metric."""
    # "workload/metric@hardware": split at the last "/" (a workload name may hold one, a metric name does not)
    workload, _, rest = target.rpartition("/") if "/" in target else (target, "", "")
    metric = rest.rsplit("@", 1)[0] if rest else None
    check = session.scalar(select(m.Check).where(m.Check.run_id == run_id).order_by(m.Check.id.desc()).limit(1))
    if check is None:
        return None
    q = select(m.Verdict.verdict).where(m.Verdict.check_id == check.id, m.Verdict.workload == workload)
    if metric:
        q = q.where(m.Verdict.metric == metric)
    verdict = session.scalar(q.limit(1))
    return {"verdict": verdict, "check_id": check.id} if verdict else None


def reruns(session: Session, *, run_id: int | None = None, kind: str | None = None, limit: int = 500) -> dict[str, Any]:
    """Stored rerun decisions (tests, workloads' extra repeats, jobs, quarantine rules), newest first,
    grouped per run, each with its reason and its outcome so far."""
    items = tq.reruns(session, run_id=run_id, limit=limit)
    if kind:
        items = [d for d in items if d["kind"] == kind]
    pks = _pks(session, [d["target"] for d in items if d["kind"] in ("test", "quarantine")])
    groups: dict[int | None, dict[str, Any]] = {}
    for d in items:
        d["test_pk"] = pks.get(d["target"]) if d["kind"] in ("test", "quarantine") else None
        if d["kind"] == "workload" and d["run_id"] is not None and d["outcome"] is None:
            d["outcome"] = _workload_outcome(session, d["run_id"], d["target"])
        g = groups.get(d["run_id"])
        if g is None:
            run = session.get(m.Run, d["run_id"]) if d["run_id"] is not None else None
            g = groups[d["run_id"]] = {
                "run_id": d["run_id"],
                "lane": run.lane if run else None,
                "hardware": run.hardware if run else None,
                "commit": run.commit.sha if run and run.commit else None,
                "ci_run_id": run.ci_run_id if run else None,
                "started_at": iso(run.started_at) if run else None,
                "newest": d["created_at"],
                "decisions": [],
            }
        g["decisions"].append(d)
    rerun_targets = _rerun_targets(session, [d for d in items if d["action"] == "none"])
    for d in items:
        d["reason_shown"] = _reason_shown(d, rerun_targets)
        d["quiet"] = d["action"] == "none" and not d["blocking"]
    for g in groups.values():
        # what was rerun (or flagged, or blocks) and its outcome first; "nothing to do" rows are folded
        acted = [d for d in g["decisions"] if not d["quiet"]]
        g["acted"] = sorted(acted, key=lambda d: _ACTION_ORDER.get(d["action"], len(_ACTION_ORDER)))
        g["quiet"] = [d for d in g["decisions"] if d["quiet"]]
    runs = sorted(groups.values(), key=lambda g: g["newest"], reverse=True)
    return {"schema": "guardrail.web.reruns/v1", "runs": runs, "reruns": items}


SEEN_AGAIN = "regression seen again after a rerun"
# the order of a run's decisions on the reruns page: reruns, then what was flagged or blocks, the job's plan last
_ACTION_ORDER = {"rerun": 0, "flag": 1, "none": 2, "enter": 3, "release": 3, "keep": 3, "plan": 4}


def _rerun_targets(session: Session, decisions: list[dict[str, Any]]) -> set[tuple[int | None, str]]:
    """The (run, target) pairs among `decisions`' that a stored decision did rerun in that run."""
    targets = sorted({d["target"] for d in decisions})
    if not targets:
        return set()
    D = tm.RerunDecision
    q = select(D.run_id, D.target).where(D.target.in_(targets), D.action == "rerun").distinct()
    return {(rid, t) for rid, t in session.execute(q)}


def _reason_shown(d: dict[str, Any], rerun_targets: set[tuple[int | None, str]]) -> str:
    """The stored reason, except the rerun policy's "seen again after a rerun" where nothing was rerun: that
    decision comes from a regression already judged on this commit (or held by an open alert), not a rerun."""
    reason = d["reason"] or ""
    if reason.startswith(SEEN_AGAIN) and (d["run_id"], d["target"]) not in rerun_targets:
        return "regression already seen on this commit or open as an alert: confirmed, not rerun"
    return reason


def _health_rows(d: Any, lane: str, hw: str | None, verdict: str, n: int, rerun: float) -> Iterator[HealthRow]:
    """The rows of one (day, lane, hardware, verdict) group: the pure function counts rows, so n of them,
    the group's rerun time on the first."""
    at_day = datetime.fromisoformat(str(d)[:10]).replace(tzinfo=UTC)
    kind = cast(VerdictKind, verdict)  # stored by the JUnit writer from the same Literal
    return chain(
        [HealthRow(at_day, lane, hw, kind, float(rerun))], repeat(HealthRow(at_day, lane, hw, kind, 0.0), n - 1)
    )


def ci_health(
    session: Session,
    *,
    days: int = 14,
    lane: str | None = None,
    hardware: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """``guardrail.ci-health/v1`` (pass rate, flaky rate, CI minutes lost to reruns, infra errors by kind
    per lane x hardware x day) over the newest ``days`` days: what ``junit_queries.ci_health_doc`` gives
    (tested equal), with the verdicts counted per day in SQL instead of read one by one (1.6 s -> see
    docs/dashboard.md at 120k verdicts)."""
    when = at or clock.now()
    since = when - timedelta(days=days)
    pg = session.get_bind().dialect.name == "postgresql"
    day = func.date(func.timezone("UTC", V.at)) if pg else func.date(V.at)
    q = (
        select(day, V.lane, V.hardware, V.verdict, func.count(), func.coalesce(func.sum(V.rerun_duration_s), 0.0))
        .where(V.at >= since, V.at <= when)
        .group_by(day, V.lane, V.hardware, V.verdict)
    )
    groups = session.execute(filter_verdicts(q, lane=lane, hardware=hardware)).all()
    doc = health(
        chain.from_iterable(_health_rows(*g) for g in groups),
        tq.infra_events(session, since=since, lane=lane, hardware=hardware),
    )
    doc["since"], doc["until"] = since.isoformat(), when.isoformat()
    return doc


# --- one run's test results (the run page of a JUnit-only run, and a PR's pages) ------------------------

MAX_PASSED_LISTED = 300  # passing tests listed on a run page (the counts cover them all)
_VERDICT_ORDER = ("fail", "flaky", "error", "skip", "pass")


def _run_verdict(outcomes: list[tuple[str, bool]]) -> str:
    """A test's verdict in one run from its attempts (outcome, final): failed then passed is flaky."""
    finals = [o for o, final in outcomes if final] or [o for o, _ in outcomes]
    failed = any(o in ("fail", "error") for o, _ in outcomes)
    if any(o == "pass" for o in finals):
        return "flaky" if failed else "pass"
    if failed:
        return "fail"
    return "skip"


def run_tests(session: Session, run_ids: list[int], *, passed_listed: int = MAX_PASSED_LISTED) -> dict[str, Any] | None:
    """The test results of some runs (a run, or a PR's runs): per test its verdict there (fail, flaky, skip,
    pass), attempts and the last failure's message, with counts, the tests quarantined now, the reruns decided
    for those runs, and whether a run was excluded as an infrastructure failure. None without test results."""
    if not run_ids:
        return None
    E = tm.ExecutionRow
    q = (
        select(
            E.run_id,
            E.test_pk,
            T.test_id,
            T.key,
            T.hardware,
            E.outcome,
            E.final,
            E.job_attempt,
            E.process_attempt,
            E.inprocess_attempt,
            E.duration_s,
            E.failure_type,
            E.message,
        )
        .join(T, T.id == E.test_pk)
        .where(E.run_id.in_(run_ids))
        .order_by(E.run_id, E.test_pk, E.job_attempt, E.process_attempt, E.inprocess_attempt)
    )
    tests: dict[tuple[int, int], dict[str, Any]] = {}
    for r in session.execute(q):
        t = tests.get((r.run_id, r.test_pk))
        if t is None:
            t = tests[(r.run_id, r.test_pk)] = {
                "run_id": r.run_id,
                "test_pk": r.test_pk,
                "test_id": r.test_id,
                "key": r.key,
                "hardware": r.hardware,
                "attempts": 0,
                "outcomes": [],
                "duration_s": 0.0,
                "failure": None,
            }
        t["attempts"] += 1
        t["outcomes"].append((r.outcome, bool(r.final)))
        t["duration_s"] += r.duration_s or 0.0
        if r.outcome in ("fail", "error"):
            t["failure"] = f"{r.failure_type}: {r.message or ''}" if r.failure_type else (r.message or r.outcome)
    if not tests:
        return None
    quarantined = tq.active_quarantine(session)
    counts = dict.fromkeys(_VERDICT_ORDER, 0)
    rows = []
    for t in tests.values():
        t["verdict"] = _run_verdict(t.pop("outcomes"))
        t["duration_s"] = round(t["duration_s"], 3)
        q_entry = quarantined.get(t["key"])
        t["quarantine"] = {"since": iso(q_entry.since), "reason": q_entry.reason, "by": q_entry.by} if q_entry else None
        counts[t["verdict"]] = counts.get(t["verdict"], 0) + 1
        rows.append(t)
    rows.sort(key=lambda t: (_VERDICT_ORDER.index(t["verdict"]), t["test_id"], t["run_id"]))
    not_passed = [t for t in rows if t["verdict"] != "pass"]
    passed = [t for t in rows if t["verdict"] == "pass"]
    infra = session.execute(
        select(V.run_id).where(V.run_id.in_(run_ids), V.infra_excluded.is_(True)).distinct()
    ).scalars()
    decisions = [d for rid in run_ids for d in tq.reruns(session, run_id=rid, limit=500)]
    pks = _pks(session, [d["target"] for d in decisions if d["kind"] in ("test", "quarantine")])
    for d in decisions:
        d["test_pk"] = pks.get(d["target"]) if d["kind"] in ("test", "quarantine") else None
    return {
        "counts": {k: v for k, v in counts.items() if v},
        "total": len(rows),
        "tests": not_passed,
        "passed": passed[:passed_listed],
        "passed_total": len(passed),
        "flaky": [t for t in rows if t["verdict"] == "flaky"],
        "quarantined": [t for t in rows if t["quarantine"]],
        "reruns": [d for d in decisions if d["action"] == "rerun"],
        "infra_excluded_runs": sorted(infra),
    }
