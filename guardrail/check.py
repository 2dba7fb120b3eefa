"""`guardrail check`: judge a stored run against the baseline its lane's policy selects.

Reads the store, hands plain numbers to the analysis layer, stores the check and its verdicts, and raises
alerts for regressions on lanes that watch main.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail import clock
from guardrail.analysis.compare import compare_metric
from guardrail.errors import InputError
from guardrail.policy import BASELINES_DIR, Policy, load_policy
from guardrail.store import models as m
from guardrail.verdicts import SeriesJudged, apply_fdr, build_doc

Samples = list[list[float]]  # repeats -> values


@dataclass
class Baseline:
    """Per series id: baseline runs (newest first), each a list of repeats; and where they came from."""

    runs: dict[int, list[Samples]]
    run_ids: list[int]
    description: str


def run_info(run: m.Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "lane": run.lane,
        "hardware": [run.hardware],
        "commit": run.commit.sha if run.commit else None,
        "repo": run.commit.repo if run.commit else None,
        "branch": run.branch,
        "pr": run.pr,
        "base_commit": run.base_commit,
        "started_at": run.started_at.isoformat(),
        "url": run.ci_url,
    }


def _anchor_time(session: Session, run: m.Run, policy: Policy) -> tuple[datetime, str]:
    spec = policy.baseline
    if spec.anchor == "base_commit" and run.base_commit:
        t = session.scalar(
            select(func.max(m.Run.started_at))
            .join(m.Commit, m.Run.commit_id == m.Commit.id)
            .where(m.Commit.sha == run.base_commit, m.Run.lane.in_(spec.lanes), m.Run.hardware == run.hardware)
        )
        if t is not None:
            return t, f"at or before the merge-base {run.base_commit[:10]}"
        return (
            run.started_at,
            f"merge-base {run.base_commit[:10]} has no {'/'.join(spec.lanes)} run; latest before",
        )
    return run.started_at, "latest before this run"


def _baseline_results(session: Session, run: m.Run, result: m.Result, policy: Policy) -> tuple[list[m.Result], str]:
    spec = policy.baseline
    if spec.source == "pinned":
        pin = session.scalar(
            select(m.BaselinePin)
            .where(
                m.BaselinePin.lane == policy.lane,
                m.BaselinePin.hardware == run.hardware,
                m.BaselinePin.active.is_(True),
            )
            .order_by(m.BaselinePin.id.desc())
        )
        if pin is None:
            return [], f"no run pinned for {policy.lane} on {run.hardware}"
        rows = session.scalars(
            select(m.Result).where(
                m.Result.run_id == pin.run_id,
                m.Result.workload_id == result.workload_id,
                m.Result.status == "ok",
            )
        ).all()
        return list(rows), f"pinned run {pin.run_id} ({pin.reason}, by {pin.author})"
    anchor, how = _anchor_time(session, run, policy)
    since = _rebaselined_since(session, run, result, policy, anchor)
    q = (
        select(m.Result)
        .join(m.Run, m.Result.run_id == m.Run.id)
        .where(
            m.Result.workload_id == result.workload_id,
            m.Result.status == "ok",
            m.Run.id != run.id,
            m.Run.hardware == run.hardware,
            m.Run.lane.in_(spec.lanes),
            m.Run.started_at <= anchor,
        )
        .order_by(m.Run.started_at.desc(), m.Result.id.desc())
        .limit(spec.noise_history * 3)
    )
    if spec.branch:
        q = q.where(m.Run.branch == spec.branch)
    if since is not None:
        q = q.where(m.Run.started_at >= since[0])
        how += f", since the expected change at {since[1][:10]}"
    rows = session.scalars(q).all()
    pinned_sw = {k: result.environment.software.get(k) for k in spec.same_software}
    rows = [r for r in rows if all(r.environment.software.get(k) == v for k, v in pinned_sw.items())]
    where = f"{'/'.join(spec.lanes)} runs" + (f" on {spec.branch}" if spec.branch else "")
    sw = ", ".join(f"{k} {v}" for k, v in pinned_sw.items() if v)
    return rows, f"{where}, {how}, same hardware" + (f" and {sw}" if sw else "")


def _rebaselined_since(
    session: Session, run: m.Run, result: m.Result, policy: Policy, anchor: datetime
) -> tuple[datetime, str] | None:
    """An alert triaged `expected` (an intended change) re-baselines its series: history starts at the first
    run of the commit that changed it."""
    alert = session.scalar(
        select(m.Alert)
        .where(
            m.Alert.workload_id == result.workload_id,
            m.Alert.hardware == run.hardware,
            m.Alert.state == "expected",
            m.Alert.to_commit.is_not(None),
        )
        .order_by(m.Alert.updated_at.desc())
        .limit(1)
    )
    if alert is None:
        return None
    start = session.scalar(
        select(func.min(m.Run.started_at))
        .join(m.Commit, m.Run.commit_id == m.Commit.id)
        .where(
            m.Commit.sha == alert.to_commit,
            m.Run.hardware == run.hardware,
            m.Run.lane.in_(policy.baseline.lanes),
            m.Run.started_at <= anchor,
        )
    )
    return (start, alert.to_commit) if start is not None else None


def _samples_by_result(session: Session, result_ids: list[int]) -> dict[tuple[int, int], Samples]:
    """(result id, series id) -> repeats, in repeat order; one query."""
    out: dict[tuple[int, int], Samples] = defaultdict(list)
    if not result_ids:
        return out
    rows = session.execute(
        select(m.Measurement.result_id, m.Measurement.series_id, m.Measurement.samples)
        .where(m.Measurement.result_id.in_(result_ids))
        .order_by(m.Measurement.result_id, m.Measurement.series_id, m.Measurement.repeat_index)
    )
    for result_id, series_id, blob in rows:
        out[(result_id, series_id)].append(np.frombuffer(blob, dtype="<f8").tolist())
    return out


@functools.cache
def _reference_index() -> dict[tuple[str, str, str], list[Any]]:
    """Pinned per-hardware reference values (baselines/reference/*.yaml), by (workload, metric, hardware)."""
    from guardrail.ingest.reference import load_reference_yaml

    ref_dir = BASELINES_DIR / "reference"
    index: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    if ref_dir.is_dir():
        for ref in load_reference_yaml(ref_dir):
            if ref.hardware is not None:  # a value that names no hardware applies to none (fail closed)
                index[(ref.workload, ref.metric, ref.hardware)].append(ref)
    return index


def _reference(workload: m.Workload, series: m.Series) -> float | None:
    for ref in _reference_index().get((workload.name, series.metric, series.hardware), []):
        if all(str(workload.spec.get(k, "")) == v for k, v in ref.dims.items()):
            return ref.value
    return None


def _look(baseline: list[Samples], cand: Samples, look: int, max_looks: int, kwargs: dict[str, Any]) -> Any:
    """Sequential confirmation: the verdict at look `look` of `max_looks` is tested at its alpha-spending level,
    so the error rate holds however many looks are taken; an unclear or not yet overwhelming result is
    `inconclusive` and says how many repeats the next look needs. The interval shown stays the plain 95% one."""
    from dataclasses import replace

    from guardrail.analysis.sequential import sequential_decision

    plain = compare_metric(baseline, cand, **kwargs)
    decision = sequential_decision(baseline, cand, look, max_looks, **kwargs)
    note = f"look {look} of {max_looks}"
    if decision.action == "stop":
        if decision.comparison.verdict == plain.verdict:
            return replace(plain, explanation=f"{plain.explanation.rstrip('.')} ({note}).")
        return decision.comparison
    if plain.verdict == "noisy":  # more repeats of this kind cannot settle it: say so, don't ask for a rerun
        return plain
    more = max(plain.repeats_needed or 0, plain.candidate_repeats)
    was = {"regression": "looks like a regression", "improvement": "looks like an improvement"}.get(plain.verdict)
    why = f"{was} but must be confirmed" if was else "unresolved"
    return replace(
        plain,
        verdict="inconclusive",
        repeats_needed=more,
        explanation=f"{plain.explanation.rstrip('.')}; {why} ({note}): rerun with {more} more repeats.",
    )


def judge_run(session: Session, run: m.Run, policy: Policy) -> dict[str, Any]:
    ok = [r for r in run.results if r.status == "ok"]
    errors = [
        {
            "workload": r.workload.name,
            "hardware": run.hardware,
            "status": r.status,
            "kind": r.error_kind,
            "message": r.error_message,
        }
        for r in run.results
        if r.status != "ok"
    ]
    # Results of one workload in one run are looks of one judgement: a rerun that adds repeats (the rerun
    # policy's confirmation) appends a result, and the candidate pools the repeats of all of them.
    groups: dict[int, list[m.Result]] = defaultdict(list)
    for r in ok:
        groups[r.workload_id].append(r)
    baselines = {wid: _baseline_results(session, run, rs[0], policy) for wid, rs in groups.items()}
    all_ids = [r.id for r in ok] + [b.id for rows, _ in baselines.values() for b in rows]
    samples = _samples_by_result(session, all_ids)
    ok_ids = {r.id for r in ok}
    series_ids = {sid for (rid, sid) in samples if rid in ok_ids}
    series = {s.id: s for s in session.scalars(select(m.Series).where(m.Series.id.in_(series_ids)))}

    judged: list[SeriesJudged] = []
    descriptions: set[str] = set()
    window, history_n = policy.baseline.window, policy.baseline.noise_history
    sequential = policy.max_looks > 1
    for wid, results in groups.items():
        rows, how = baselines[wid]
        descriptions.add(how)
        workload = results[0].workload
        # Group baseline results by run (a run may hold several results of one workload), newest first.
        by_run: dict[int, list[m.Result]] = defaultdict(list)
        for b in rows:
            by_run[b.run_id].append(b)
        look = min(len(results), policy.max_looks)
        for sid in sorted({s for (rid, s) in samples if rid in {r.id for r in results}}):
            s = series[sid]
            cand = [rep for r in results for rep in samples.get((r.id, sid), [])]
            runs = [sum((samples.get((b.id, sid), []) for b in group), []) for group in by_run.values()]
            runs = [r for r in runs if r][:history_n]
            summary = s.summary is not None
            if not runs and policy.baseline.cold_start == "reference":
                ref = _reference(workload, s)
                if ref is not None:
                    runs, summary = [[[ref]]], True
                    descriptions.add("pinned reference values (cold start)")
            kwargs = dict(
                direction=s.direction,
                threshold=policy.threshold(s.metric),
                history=runs,
                summary=summary,
                alpha=policy.alpha,
            )
            if sequential:
                comparison = _look(runs[:window], cand, look, policy.max_looks, kwargs)
            else:
                comparison = compare_metric(runs[:window], cand, **kwargs)
            judged.append(
                SeriesJudged(
                    workload.name,
                    s.metric,
                    s.hardware,
                    s.unit,
                    s.direction,
                    comparison,
                    s.metric in policy.informational,
                    sid,
                    s.summary is not None,
                )
            )
    judged, judgement = apply_fdr(judged, policy.fdr)
    return build_doc(
        judged,
        expected_false_alarms=judgement.expected_false_alarms,
        method=judgement.method,
        run=run_info(run),
        errors=errors,
        baseline={"policy": policy.lane, "source": "; ".join(sorted(descriptions))},
    )


def find_runs(session: Session, *, run_id: int | None, commit: str | None, lane: str | None) -> list[m.Run]:
    if run_id is not None:
        run = session.get(m.Run, run_id)
        if run is None:
            raise InputError(f"no run {run_id} in this database", field="--run")
        return [run]
    if not commit:
        raise InputError("give --run ID or --commit SHA", field="--run")
    q = select(m.Run).join(m.Commit, m.Run.commit_id == m.Commit.id).where(m.Commit.sha.startswith(commit))
    if lane:
        q = q.where(m.Run.lane == lane)
    runs = session.scalars(q.order_by(m.Run.started_at.desc(), m.Run.id.desc())).all()
    if not runs:
        raise InputError(f"no run for commit {commit}" + (f" in lane {lane}" if lane else ""), field="--commit")
    latest: dict[tuple[str, str], m.Run] = {}
    for r in runs:  # the newest attempt per lane and hardware
        latest.setdefault((r.lane, r.hardware), r)
    return sorted(latest.values(), key=lambda r: r.id)


def merge_docs(docs: list[dict[str, Any]]) -> dict[str, Any]:
    if len(docs) == 1:
        return docs[0]
    merged = dict(docs[0])
    merged["runs"] = [d["run"] for d in docs]
    merged["run"] = {**docs[0]["run"], "hardware": sorted({h for d in docs for h in d["run"]["hardware"]})}
    merged["verdicts"] = [v for d in docs for v in d["verdicts"]]
    merged["errors"] = [e for d in docs for e in d["errors"]]
    merged["summary"] = {k: sum(d["summary"][k] for d in docs) for k in docs[0]["summary"]}
    merged["expected_false_alarms"] = round(sum(d["expected_false_alarms"] for d in docs), 4)
    rank = {"failure": 2, "error": 1, "success": 0}
    merged["status"] = max((d["status"] for d in docs), key=rank.__getitem__)
    return merged


def store_check(session: Session, run: m.Run, policy: Policy, doc: dict[str, Any]) -> m.Check:
    check = m.Check(
        run_id=run.id,
        policy=policy.lane,
        status=doc["status"],
        expected_false_alarms=doc["expected_false_alarms"],
        summary=doc["summary"],
        doc={},
    )
    session.add(check)
    for v in doc["verdicts"]:
        session.add(
            m.Verdict(
                check=check,
                series_id=v["series_id"],
                workload=v["workload"],
                metric=v["metric"],
                hardware=v["hardware"],
                verdict=v["verdict"],
                change=v["change"],
                ci_low=v["ci"][0] if v["ci"] else None,
                ci_high=v["ci"][1] if v["ci"] else None,
                p_value=v["p_value"],
                q_value=v["q_value"],
                baseline_runs=v["baseline"]["runs"],
                baseline_median=v["baseline"]["median"],
                candidate_repeats=v["candidate"]["repeats"],
                candidate_median=v["candidate"]["median"],
                threshold=v["threshold"],
                repeats_needed=v["repeats_needed"],
                explanation=v["explanation"],
            )
        )
    if policy.raise_alerts:
        raise_regression_alerts(session, run, doc)
        resolve_returned_alerts(session, run, doc)
    session.flush()
    doc["check_id"] = check.id
    check.doc = dict(doc)  # stored once the id is known, so the stored document names its check
    return check


def raise_regression_alerts(session: Session, run: m.Run, doc: dict[str, Any]) -> None:
    """One alert per workload and hardware for the regressions of this run (its metrics grouped).

    Series of per-run summaries (one value per run, e.g. vLLM-Omni's latency_mean) raise no alert from a single
    run: one value cannot tell an outlier night from a step, so those are left to the change-point scan, which
    waits for the later points that confirm a step (docs/statistics.md measures why)."""
    by_workload: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in doc["verdicts"]:
        if v["verdict"] == "regression" and not v["informational"] and not v.get("summary"):
            by_workload[v["workload"]].append(v)
    workloads = {r.workload.name: r.workload for r in run.results}
    sha = run.commit.sha if run.commit else None
    for name, vs in by_workload.items():
        key = f"regression:{run.lane}:{run.hardware}:{workloads[name].digest}:{sha or run.id}"
        if session.scalar(select(m.Alert.id).where(m.Alert.dedup_key == key)) is not None:
            continue
        worst = max(vs, key=lambda v: abs(v["change"] or 0))
        session.add(
            m.Alert(
                dedup_key=key,
                kind="regression",
                workload_id=workloads[name].id,
                hardware=run.hardware,
                lane=run.lane,
                metrics=[
                    {
                        "metric": v["metric"],
                        "series_id": v["series_id"],
                        "change": v["change"],
                        "p_value": v["p_value"],
                        "before": v["baseline"]["median"],
                        "threshold": v["threshold"],
                    }
                    for v in vs
                ],
                change=worst["change"],
                to_commit=sha,
                run_id=run.id,
                updated_at=clock.now(),
            )
        )


OPEN_STATES = ("untriaged", "acknowledged", "confirmed")


def resolve_returned_alerts(session: Session, run: m.Run, doc: dict[str, Any]) -> None:
    """An open alert resolves itself when every metric it names is back at the level it had before the change:
    this run's median is within the threshold of that level, or closer to it than to the changed level."""
    now_level = {v["series_id"]: v["candidate"]["median"] for v in doc["verdicts"]}
    workload_ids = {r.workload_id for r in run.results}
    alerts = session.scalars(
        select(m.Alert).where(
            m.Alert.workload_id.in_(workload_ids),
            m.Alert.hardware == run.hardware,
            m.Alert.lane == run.lane,
            m.Alert.state.in_(OPEN_STATES),
            m.Alert.run_id != run.id,
        )
    )
    for alert in alerts:
        metrics = [x for x in alert.metrics if x.get("before")]
        if not metrics or any(now_level.get(x["series_id"]) is None for x in metrics):
            continue

        def returned(x: dict[str, Any]) -> bool:
            off = abs(now_level[x["series_id"]] / x["before"] - 1)
            return off <= max(x.get("threshold", 0.01), abs(x.get("change") or 0) / 2)

        if all(returned(x) for x in metrics):
            note = f"series returned to its earlier level in run {run.id}"
            alert.state, alert.resolved_at, alert.updated_at = "fixed", clock.now(), clock.now()
            alert.updated_by = "guardrail"
            session.add(m.AlertEvent(alert_id=alert.id, state="fixed", note=note, author="guardrail"))


def check_runs(session: Session, runs: list[m.Run], *, store: bool = True) -> dict[str, Any]:
    docs = []
    for run in runs:
        policy = load_policy(run.lane)
        doc = judge_run(session, run, policy)
        if store:
            store_check(session, run, policy, doc)
        docs.append(doc)
    return merge_docs(docs)
