"""The overview: the latest result of a lane per workload x hardware with its worst verdict, the open alerts,
and CI health (results per day, and the test side once JUnit results are stored)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, get_args

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail.schema import Status
from guardrail.store import models as m
from guardrail.vocabulary import OPEN_STATES, VERDICT_RANK
from web.read import junit_results
from web.read.alerts import alerts
from web.read.fields import iso

RESULT_STATUSES: tuple[Status, ...] = get_args(Status)


def overview(session: Session, *, lane: str = "nightly") -> dict[str, Any]:
    """Latest `lane` result per workload x hardware with its worst verdict, open alerts, and CI health."""
    rn = (
        func.row_number()
        .over(
            partition_by=(m.Result.workload_id, m.Run.hardware), order_by=(m.Run.started_at.desc(), m.Result.id.desc())
        )
        .label("rn")
    )
    latest = (
        select(
            m.Result.id.label("result_id"),
            m.Result.workload_id,
            m.Run.hardware,
            m.Run.id.label("run_id"),
            m.Run.started_at,
            m.Result.status,
            rn,
        )
        .join(m.Run, m.Result.run_id == m.Run.id)
        .where(m.Run.lane == lane)
        .subquery()
    )
    rows = session.execute(
        select(
            latest.c.result_id,
            latest.c.workload_id,
            latest.c.hardware,
            latest.c.run_id,
            latest.c.started_at,
            latest.c.status,
            m.Workload.name,
        )
        .join(m.Workload, m.Workload.id == latest.c.workload_id)
        .where(latest.c.rn == 1)
        .order_by(m.Workload.name, latest.c.hardware)
    ).all()
    worst = _worst_verdicts(session, {r.run_id for r in rows})
    hardware = sorted({r.hardware for r in rows})
    grid: dict[str, dict[str, Any]] = {}
    for r in rows:
        verdict = worst.get((r.run_id, r.name))
        cell = {
            "run_id": r.run_id,
            "result_id": r.result_id,
            "status": r.status,
            "verdict": verdict,
            "started_at": iso(r.started_at),
            "state": r.status if r.status != "ok" else (verdict or "unchecked"),
        }
        grid.setdefault(r.name, {"workload": r.name, "cells": {}})["cells"][r.hardware] = cell
    # Regressions are what needs someone now; an improvement is never listed as an open regression.
    open_alerts = alerts(session, states=list(OPEN_STATES), kind="regression", limit=20)["alerts"]
    open_improvements = alerts(session, states=list(OPEN_STATES), kind="improvement", limit=10)["alerts"]
    health = _results_health(session)
    # The JUnit side of CI health (pass/flaky rate, minutes lost to reruns, infra errors by kind) per lane x
    # hardware x day, once test results are stored.
    tests = junit_results.ci_health(session, days=14) if junit_results.has_tests(session) else None
    if tests is not None:
        # the per-day table gains the flaky rate of the test verdicts stored that day (all lanes)
        per_day: dict[str, list[int]] = {}
        for f in tests["figures"]:
            acc = per_day.setdefault(f["day"], [0, 0])
            acc[0] += f["flaky"]
            acc[1] += f["tests"]
        for d in health["days"]:
            f, n = per_day.get(d["day"], (0, 0))
            d["flaky_rate"] = round(f / n, 4) if n else None
        flaky, total = sum(f for f, _ in per_day.values()), sum(n for _, n in per_day.values())
        health["flaky_rate"] = round(flaky / total, 4) if total else None
    return {
        "schema": "guardrail.web.overview/v1",
        "lane": lane,
        "hardware": hardware,
        "workloads": list(grid.values()),
        "open_alerts": open_alerts,
        "open_improvements": open_improvements,
        "ci_health": health,
        "test_health": tests,
    }


def _worst_verdicts(session: Session, run_ids: set[int]) -> dict[tuple[int, str], str]:
    """(run id, workload name) -> worst gating verdict of the run's newest check."""
    if not run_ids:
        return {}
    newest = (
        select(func.max(m.Check.id).label("check_id"))
        .where(m.Check.run_id.in_(run_ids))
        .group_by(m.Check.run_id)
        .subquery()
    )
    out: dict[tuple[int, str], str] = {}
    q = (
        select(m.Check.run_id, m.Verdict.workload, m.Verdict.verdict)
        .join(m.Verdict, m.Verdict.check_id == m.Check.id)
        .where(m.Check.id.in_(select(newest.c.check_id)))
    )
    for run_id, workload, verdict in session.execute(q):
        key = (run_id, workload)
        if VERDICT_RANK.get(verdict, 0) >= VERDICT_RANK.get(out.get(key, "no_change"), 0):
            out[key] = verdict
    return out


def _results_health(session: Session, *, days: int = 14) -> dict[str, Any]:
    """Per day (the newest `days` days with data): runs, results by status, pass rate."""
    newest = session.scalar(select(func.max(m.Run.started_at)))
    if newest is None:
        return {"days": [], "flaky_rate": None}
    day = func.date(m.Run.started_at)
    q = (
        select(day, m.Result.status, func.count(m.Result.id), func.count(func.distinct(m.Run.id)))
        .join(m.Result, m.Result.run_id == m.Run.id)
        .where(m.Run.started_at > newest - timedelta(days=days))
        .group_by(day, m.Result.status)
    )
    per_day: dict[str, dict[str, Any]] = {}
    for d, status, n, n_runs in session.execute(q):
        key = str(d)[:10]
        row = per_day.setdefault(key, {"day": key, "runs": 0, "results": 0, **dict.fromkeys(RESULT_STATUSES, 0)})
        row["runs"] = max(row["runs"], n_runs)  # a run's results may differ in status; count it once
        row["results"] += n
        row[status if status in RESULT_STATUSES else "failed"] += n
    out = [{**per_day[k], "pass_rate": round(per_day[k]["ok"] / per_day[k]["results"], 4)} for k in sorted(per_day)]
    # The flaky rate comes from JUnit results: overview() fills it in when tests are stored.
    return {"days": out, "flaky_rate": None}
