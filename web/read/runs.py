"""Runs: the list, newest first, and one run with every workload x metric (verdict, repeats, stages, output
drift against the previous run) and the baseline pins on it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from guardrail.errors import NotFound
from guardrail.store import models as m
from web.charts import median
from web.read.baselines import pin_dict
from web.read.fields import commit_url, iso, safe_url
from web.read.statements import AnyRow, RunStatements, run_statements

STAGE_METRICS = ("text_encode_latency", "denoise_latency", "vae_decode_latency")
STAGE_PREFIX = "stage_mean."
# A run page lists what needs a look first: regressions, then what blocks or is unresolved, then the rest.
VERDICT_ORDER = (
    "regression",
    "output_mismatch",
    "missing",
    "suspect",
    "inconclusive",
    "noisy",
    "improvement",
    "new",
    "no_change",
)


def verdict_rank(v: str | None) -> int:
    return VERDICT_ORDER.index(v) if v in VERDICT_ORDER else len(VERDICT_ORDER)


def run_dict(r: m.Run) -> dict[str, Any]:
    return {
        "id": r.id,
        "lane": r.lane,
        "hardware": r.hardware,
        "started_at": iso(r.started_at),
        "commit": r.commit.sha if r.commit else None,
        "message": r.commit.message if r.commit else None,
        "repo": r.commit.repo if r.commit else None,
        "commit_url": commit_url(r.commit.repo, r.commit.sha) if r.commit else None,
        "branch": r.branch,
        "pr": r.pr,
        "base_commit": r.base_commit,
        "ci": {"provider": r.ci_provider, "run_id": r.ci_run_id, "attempt": r.ci_attempt, "url": safe_url(r.ci_url)},
    }


def _run_row_dict(r: AnyRow) -> dict[str, Any]:
    """run_dict for a row of RunStatements.run (the same keys and values)."""
    has_commit = r.commit_pk is not None
    return {
        "id": r.id,
        "lane": r.lane,
        "hardware": r.hardware,
        "started_at": iso(r.started_at),
        "commit": r.sha if has_commit else None,
        "message": r.message if has_commit else None,
        "repo": r.repo if has_commit else None,
        "commit_url": commit_url(r.repo, r.sha) if has_commit else None,
        "branch": r.branch,
        "pr": r.pr,
        "base_commit": r.base_commit,
        "ci": {"provider": r.ci_provider, "run_id": r.ci_run_id, "attempt": r.ci_attempt, "url": safe_url(r.ci_url)},
    }


def runs(
    session: Session,
    *,
    lane: str | None = None,
    hardware: str | None = None,
    pr: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    q = select(m.Run)
    if lane:
        q = q.where(m.Run.lane == lane)
    if hardware:
        q = q.where(m.Run.hardware == hardware)
    if pr is not None:
        q = q.where(m.Run.pr == pr)
    rows = list(session.scalars(q.order_by(m.Run.started_at.desc(), m.Run.id.desc()).limit(limit).offset(offset)))
    status = run_statuses(session, [r.id for r in rows])
    return {
        "schema": "guardrail.web.runs/v1",
        "limit": limit,
        "offset": offset,
        "runs": [{**run_dict(r), "status": status[r.id]} for r in rows],
    }


def run_statuses(session: Session, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Each run's check outcome for the runs list: `regression` (its newest check found some), `blocked` (the
    check failed without a regression: a missing baseline), `pass`, `error`, or `not checked`; a run of test
    results only says how its tests went instead (`tests failed`, `tests passed`). Two queries for the page."""
    from guardrail.store import junit_models as tm

    out: dict[int, dict[str, Any]] = {i: {"outcome": "not checked", "check_id": None, "summary": None} for i in run_ids}
    if not run_ids:
        return out
    ids = list(run_ids)
    q = select(m.Check.run_id, m.Check.id, m.Check.status, m.Check.summary).where(m.Check.run_id.in_(ids))
    for rid, cid, st, summary in session.execute(q.order_by(m.Check.id)):  # the newest check wins
        summary = summary or {}
        outcome = (
            "regression"
            if summary.get("regression")
            else "blocked"
            if st == "failure"
            else "error"
            if st == "error"
            else "pass"
        )
        out[rid] = {"outcome": outcome, "check_id": cid, "summary": summary}
    V = tm.CaseVerdictRow
    tq = (
        select(V.run_id, V.verdict, func.count())
        .where(V.run_id.in_([i for i in ids if out[i]["check_id"] is None]))
        .group_by(V.run_id, V.verdict)
    )
    tests: dict[int, dict[str, int]] = defaultdict(dict)
    for rid, verdict, n in session.execute(tq):
        tests[rid][verdict] = n
    for rid, counts in tests.items():
        counts = dict(sorted(counts.items()))  # the same order whatever order the database grouped them in
        out[rid] = {
            "outcome": "tests failed" if counts.get("fail") else "tests passed",
            "check_id": None,
            "summary": None,
            "tests": counts,
        }
    return out


def _error(kind: str | None, message: str | None) -> dict[str, Any]:
    """A failed result's error and its class by the failure rules (environment, code or unknown, and why)."""
    from guardrail.rerun_policy.failure_rules import load_failure_rules

    return {"kind": kind, "message": message, "failure": load_failure_rules().classify(kind, message)}


def telemetry_summary(tel: Any) -> dict[str, Any] | None:
    """The device telemetry beside a result (runners.telemetry), for its line on the run page: where it came from
    (or why there is none), the anomalies, and the clocks, temperature and power over its processes."""
    if not isinstance(tel, dict):
        return None
    procs = [p for p in tel.get("processes") or [] if isinstance(p, dict)]

    def over(key: str, stat: str) -> float | None:
        xs = [
            p[key][stat] for p in procs if isinstance(p.get(key), dict) and isinstance(p[key].get(stat), (int, float))
        ]
        return (min(xs) if stat == "min" else max(xs)) if xs else None

    return {
        "source": tel.get("source"),
        "absent": tel.get("absent"),
        "anomalies": [a for a in tel.get("anomalies") or [] if isinstance(a, str)],
        "processes": len(procs),
        "sm_mhz_min": over("sm_mhz", "min") or over("freq_mhz", "min"),
        "temp_c_max": over("temp_c", "max"),
        "power_w_max": over("power_w", "max"),
    }


def run_detail(session: Session, run_id: int) -> dict[str, Any]:
    # Core selects of the columns shown, from statements built once (web.read.statements): five small queries.
    conn = session.connection()
    sql = run_statements(conn.dialect.name)
    run = conn.execute(sql.run, {"run_id": run_id}).first()
    if run is None:
        raise NotFound(f"no run {run_id}")
    detail = _run_detail(conn, sql, run, run_id)
    pins = conn.execute(sql.pins, {"run_id": run_id})
    detail["pins"] = [pin_dict(p) for p in pins]
    return detail


def _run_detail(conn: Connection, sql: RunStatements, run: AnyRow, run_id: int) -> dict[str, Any]:
    results = conn.execute(sql.results, {"run_id": run_id}).all()
    check = conn.execute(sql.check, {"run_id": run_id}).first()
    verdicts: dict[int, AnyRow] = {}
    if check is not None:
        for row in conn.execute(sql.verdicts, {"check_id": check.id}):
            if row.series_id is not None:
                verdicts[row.series_id] = row
    meas = conn.execute(sql.measurements, {"ids": [r.id for r in results]}).all() if results else []
    series = {x.series_id: x for x in meas}  # metric, unit and direction of each series
    by_result: dict[int, dict[int, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    for x in meas:
        by_result[x.result_id][x.series_id].append(np.frombuffer(x.samples, dtype="<f8").tolist())
    previous = _previous_fingerprints(conn, sql, run, results)
    # the regressions' profile diffs (docs/profiles.md): read from the check's document only when it has one
    diffs = profile_diffs(conn, check.id) if check is not None and (check.summary or {}).get("regression") else {}
    out_results = []
    for r in results:
        metrics = []
        for sid, repeats in sorted(by_result[r.id].items(), key=lambda kv: series[kv[0]].metric):
            s = series[sid]
            v = verdicts.get(sid)
            medians = [median(rep) for rep in repeats if rep]
            metrics.append(
                {
                    "series_id": sid,
                    "metric": s.metric,
                    "unit": s.unit,
                    "direction": s.direction,
                    "median": median(medians) if medians else None,
                    "repeats": repeats,
                    "verdict": v.verdict if v else None,
                    "change": v.change if v else None,
                    "ci": [v.ci_low, v.ci_high] if v and v.ci_low is not None else None,
                    "explanation": v.explanation if v else None,
                    "baseline": v.baseline_median if v else None,
                    "baseline_runs": v.baseline_runs if v else None,
                }
            )
        metrics.sort(key=lambda x: verdict_rank(x["verdict"]))  # stable: by metric name within a verdict
        stages = [
            {"metric": x["metric"], "median": x["median"], "unit": x["unit"]}
            for x in metrics
            if (x["metric"] in STAGE_METRICS or x["metric"].startswith(STAGE_PREFIX)) and x["median"] is not None
        ]
        stages.sort(key=lambda x: STAGE_METRICS.index(x["metric"]) if x["metric"] in STAGE_METRICS else 99)
        fp = (r.extra or {}).get("output_fingerprint")
        out_results.append(
            {
                "id": r.id,
                "workload": r.name,
                "workload_id": r.workload_id,
                "status": r.status,
                "error": _error(r.error_kind, r.error_message) if r.status != "ok" else None,
                "source_format": r.source_format,
                "metrics": metrics,
                "stages": stages,
                "environment": {
                    "id": r.env_id,
                    "hardware": r.hardware,
                    "device_type": r.device_type,
                    "device_count": r.device_count,
                    "software": r.software,
                },
                "output_drift": _drift(fp, previous.get(r.workload_id)),
                "profile": profile_summary((r.extra or {}).get("profile")),
                "telemetry": telemetry_summary((r.extra or {}).get("telemetry")),
                "profile_diff": diffs.get(r.name),
            }
        )
    # the workloads with a regression first (then by their worst verdict), in stored order otherwise
    out_results.sort(key=lambda r: min((verdict_rank(x["verdict"]) for x in r["metrics"]), default=len(VERDICT_ORDER)))
    return {
        "schema": "guardrail.web.run/v1",
        "run": _run_row_dict(run),
        "results": out_results,
        "compare": _compare_runs(conn, sql, run, check),
        "check": None
        if check is None
        else {
            "id": check.id,
            "policy": check.policy,
            "status": check.status,
            "summary": check.summary,
            "created_at": iso(check.created_at),
            "expected_false_alarms": check.expected_false_alarms,
        },
    }


def profile_diffs(conn: Connection, check_id: int) -> dict[str, dict[str, Any]]:
    """workload -> the profile diff of its regression in a check's document (the step latency's where several of
    its metrics regressed); {} when none carries one."""
    rows = conn.execute(select(m.Check.doc["verdicts"]).where(m.Check.id == check_id)).scalar()
    out: dict[str, dict[str, Any]] = {}
    for v in rows if isinstance(rows, list) else []:
        d = v.get("profile_diff") if isinstance(v, dict) and v.get("verdict") == "regression" else None
        if isinstance(d, dict) and (v["workload"] not in out or v.get("metric") == "denoise_step_latency"):
            out[v["workload"]] = {**d, "metric": v.get("metric")}
    return out


def profile_summary(p: Any) -> dict[str, Any] | None:
    """What a result's own profile holds, in brief: its basis, its total per step, its costliest ops, its trace."""
    if not isinstance(p, dict):
        return None
    if "error" in p:
        return {"error": str(p["error"])[:500]}
    ops = [o for o in p.get("ops") or [] if isinstance(o, dict)][:5]
    return {
        "time_basis": p.get("time_basis"),
        "device": p.get("device"),
        "steps": len(p.get("steps") or []),
        "total_ms_per_step": p.get("total_ms_per_step"),
        "top_ops": [{"name": o.get("name"), "ms_per_step": o.get("ms_per_step")} for o in ops],
        "trace": p.get("trace"),
    }


def _compare_runs(conn: Connection, sql: RunStatements, run: AnyRow, check: AnyRow | None) -> dict[str, Any]:
    """The runs to compare this one with: the previous run of its lane and hardware (a PR run: its PR's previous
    push), and the baseline run, the newest run of the window its check judged it against."""
    if run.pr is not None:
        prev = conn.execute(
            sql.previous_pr_run, {"pr": run.pr, "hardware": run.hardware, "started_at": run.started_at}
        ).scalar()
    else:
        prev = conn.execute(
            sql.previous_run, {"lane": run.lane, "hardware": run.hardware, "started_at": run.started_at}
        ).scalar()
    baseline = None
    window = None
    if check is not None:
        info = conn.execute(sql.check_baseline, {"check_id": check.id}).scalar()
        windows = (info.get("windows") if isinstance(info, dict) else None) or []
        window = next((w for w in windows if w.get("to_commit")), None)
        if window is not None:
            until = _parse_time(window.get("last_at")) or run.started_at
            baseline = conn.execute(
                sql.commit_run, {"sha": window["to_commit"], "hardware": window.get("hardware"), "until": until}
            ).scalar()
    return {
        "previous_run": prev,
        "previous_kind": "push" if run.pr is not None else "run",
        "baseline_run": baseline if baseline != run.id else None,
        "baseline_window": window,
    }


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _previous_fingerprints(
    conn: Connection, sql: RunStatements, run: AnyRow, results: Sequence[AnyRow]
) -> dict[int, dict[str, Any]]:
    """Per workload: the output fingerprint of the newest earlier result on the same hardware and lane."""
    out: dict[int, dict[str, Any]] = {}
    for r in results:
        if not (r.extra or {}).get("output_fingerprint"):
            continue
        prev = conn.execute(
            sql.previous,
            {"workload_id": r.workload_id, "hardware": run.hardware, "lane": run.lane, "started_at": run.started_at},
        ).first()
        if prev is not None:
            out[r.workload_id] = {"run_id": prev.run_id, "fingerprint": (prev.extra or {}).get("output_fingerprint")}
    return out


def _drift(fp: Any, prev: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(fp, dict):
        return None
    out: dict[str, Any] = {
        "fingerprint": {k: v for k, v in fp.items() if not isinstance(v, list | dict)},
        "previous_run": None,
        "verdict": "no earlier fingerprint",
        "max_abs_diff": None,
    }
    if prev and isinstance(prev.get("fingerprint"), dict):
        p = prev["fingerprint"]
        out["previous_run"] = prev["run_id"]
        diffs = [
            abs(float(fp[k]) - float(p[k]))
            for k in ("mean", "std", "min", "max")
            if isinstance(fp.get(k), int | float) and isinstance(p.get(k), int | float)
        ]
        out["max_abs_diff"] = max(diffs) if diffs else None
        same_shape = fp.get("shape") == p.get("shape")
        drifted = not same_shape or (out["max_abs_diff"] or 0.0) > 1e-3
        out["verdict"] = "drifted" if drifted else "unchanged"
    return out
