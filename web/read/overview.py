"""The overview: a headline naming the worst open regression, the open alerts (regressions apart from
improvements), the latest result of a lane per workload x hardware ordered by severity with its age, and CI
health (results per day, and the test side once JUnit results are stored)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail import clock
from guardrail.alerts import worse
from guardrail.schema import Status
from guardrail.store import models as m
from guardrail.verdicts import count
from guardrail.vocabulary import OPEN_STATES, VERDICT_RANK
from web.read import junit_results
from web.read.alerts import alerts
from web.read.fields import iso

RESULT_STATUSES: tuple[Status, ...] = get_args(Status)
STALE_AFTER = timedelta(days=14)  # a grid cell whose run started longer ago than this no longer says much
# Grid order by a row's worst cell: a failed run needs someone like a regression does, and a cell with no
# verdict sits just above the quiet ones.
STATUS_RANK: dict[str, int] = {"failed": VERDICT_RANK["regression"], "timeout": VERDICT_RANK["missing"]}
STATUS_RANK["infra_error"] = VERDICT_RANK["missing"]
HEADLINE_SAMPLE = 500  # open regressions read for the headline's worst; the lists show fewer


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
    now = clock.now()
    worst = _worst_verdicts(session, {r.run_id for r in rows})
    hardware = sorted({r.hardware for r in rows})
    grid: dict[str, dict[str, Any]] = {}
    for r in rows:
        verdict = worst.get((r.run_id, r.name))
        started = _utc(r.started_at)
        age = now - started if started else None
        state = r.status if r.status != "ok" else (verdict or "unchecked")
        cell = {
            "run_id": r.run_id,
            "result_id": r.result_id,
            "status": r.status,
            "verdict": verdict,
            "started_at": iso(r.started_at),
            "state": state,
            "severity": _severity(state),
            "age_days": round(age.total_seconds() / 86400, 2) if age is not None else None,
            "age": age_words(age) if age is not None else None,
            "stale": bool(age is not None and age > STALE_AFTER),
        }
        grid.setdefault(r.name, {"workload": r.name, "cells": {}})["cells"][r.hardware] = cell
    workloads = list(grid.values())
    for w in workloads:
        w["severity"] = max(c["severity"] for c in w["cells"].values())
    # Worst row first (regressions, then missing/suspect/noisy/inconclusive, then the quiet ones), by name within.
    workloads.sort(key=lambda w: (-w["severity"], w["workload"]))
    # Regressions are what needs someone now; an improvement is never listed as an open regression.
    regressions = alerts(session, states=list(OPEN_STATES), kind="regression", limit=HEADLINE_SAMPLE)
    improvements = alerts(session, states=list(OPEN_STATES), kind="improvement", limit=10)
    for a in regressions["alerts"] + improvements["alerts"]:
        _add_age(a, now)
    ranked = sorted(regressions["alerts"], key=lambda a: -_worse_change(a["metrics"]))
    open_alerts = ranked[:20]
    open_improvements = improvements["alerts"]
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
        "workloads": workloads,
        "headline": headline(ranked, regressions["total"], improvements["total"]),
        "open_regressions_total": regressions["total"],
        "open_improvements_total": improvements["total"],
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


def headline(ranked: Sequence[Mapping[str, Any]], n_regressions: int, n_improvements: int) -> dict[str, Any]:
    """What needs someone now, in one line: "2 regressions open on Ascend910B3, worst +6.2% denoise_step_latency
    on wan22-ti2v-5b since 3 nights"; with none open, "No open regressions" and the open improvements' count."""
    if not ranked:
        text = "No open regressions"
        if n_improvements:
            text += f" · {count(n_improvements, 'improvement')} open"
        return {"text": text, "worst": None}
    worst = ranked[0]
    metric = max((x for x in worst["metrics"] if worse(x)), key=lambda x: abs(x.get("change") or 0), default=None)
    hardware = sorted({a["hardware"] for a in ranked})
    where = " and ".join(hardware) if len(hardware) <= 2 else count(len(hardware), "hardware type")
    text = f"{count(n_regressions, 'regression')} open on {where}"
    if metric is not None and metric.get("change") is not None:
        text += f", worst {metric['change']:+.1%} {metric.get('name')} on {worst['workload']}"
        if len(hardware) > 1:
            text += f" ({worst['hardware']})"
    if worst.get("age_days") is not None:
        text += _since(worst["age_days"], worst.get("lane"))
    return {"text": text, "worst": {"alert_id": worst["id"], "metric": metric and metric.get("name")}}


def age_words(age: timedelta) -> str:
    """A duration as a reader says it: 3 days, 5 hours, 12 minutes."""
    seconds = max(age.total_seconds(), 0)
    if seconds < 60:
        return "under a minute"
    if seconds >= 86400:
        return count(int(seconds // 86400), "day")
    if seconds >= 3600:
        return count(int(seconds // 3600), "hour")
    return count(int(seconds // 60), "minute")


def _since(age_days: float, lane: str | None) -> str:
    """How long an alert has been open: " since 3 nights" on the nightly lane, else days; under a day " for 5
    hours"; under a minute ", just detected"."""
    days = int(age_days)
    if days >= 1:
        return f" since {count(days, 'night' if lane == 'nightly' else 'day')}"
    if age_days * 86400 < 60:
        return ", just detected"
    return f" for {age_words(timedelta(days=age_days))}"


def _add_age(a: dict[str, Any], now: datetime) -> None:
    detected = _utc(datetime.fromisoformat(a["detected_at"])) if a.get("detected_at") else None
    age = now - detected if detected else None
    a["age_days"] = round(age.total_seconds() / 86400, 2) if age is not None else None
    a["age"] = age_words(age) if age is not None else None
    for x in a["metrics"]:
        x["worse"] = worse(x)  # the page says of each metric whether it got worse or better


def _worse_change(metrics: Sequence[Mapping[str, Any]]) -> float:
    """The largest change in the worse direction among an alert's metrics (0 when none got worse)."""
    return max((abs(x.get("change") or 0) for x in metrics if worse(x)), default=0.0)


def _severity(state: str) -> int:
    return STATUS_RANK.get(state, VERDICT_RANK.get(state, VERDICT_RANK["new"]))


def _utc(t: datetime | None) -> datetime | None:
    """SQLite hands back naive instants; the store writes UTC."""
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
