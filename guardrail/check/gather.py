"""A stored run as the judge's inputs: its results' repeats per series, the baseline runs its policy selects,
the noise history, the cold-start references, whether a series is new and, for a short history, the noise prior
measured on its metric's family; `judge_run` hands them to guardrail.analysis.judgement."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail.analysis.judgement import Repeats, SeriesInput, judge
from guardrail.analysis.noise_model import FAMILY_MIN_RUNS, family_cv
from guardrail.check.baseline import Baseline, name_the_baseline, select_baseline
from guardrail.check.profiles import attach_profile_diffs
from guardrail.ingest.reference import load_reference_yaml
from guardrail.policy import ColdStart, Policy
from guardrail.rerun_policy.yaml_file import load_rerun_policy
from guardrail.store import models as m
from guardrail.verdicts import BaselineInfo, RunInfo, VerdictsDoc, WorkloadError

COLD_START = ColdStart(load_reference_yaml)


def run_info(run: m.Run) -> RunInfo:
    return RunInfo(
        id=run.id,
        lane=run.lane,
        hardware=[run.hardware],
        commit=run.commit.sha if run.commit else None,
        repo=run.commit.repo if run.commit else None,
        branch=run.branch,
        pr=run.pr,
        base_commit=run.base_commit,
        started_at=run.started_at.isoformat(),
        url=run.ci_url,
    )


def _samples_by_result(session: Session, result_ids: list[int]) -> dict[tuple[int, int], Repeats]:
    """(result id, series id) -> repeats, in repeat order; one query."""
    out: dict[tuple[int, int], Repeats] = defaultdict(list)
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


def _in_own_history(run: m.Run, policy: Policy) -> bool:
    """Whether the run is itself part of the history its lane's policy reads (a nightly on main is; a PR is not:
    a PR's series without a baseline stays `missing`, fail closed)."""
    spec = policy.baseline
    return spec.source == "history" and run.lane in spec.lanes and (not spec.branch or run.branch == spec.branch)


def _history_filter(run: m.Run, policy: Policy) -> list[Any]:
    """Earlier ok results of the policy's branch on the run's hardware (series carry the hardware)."""
    where = [m.Result.status == "ok", m.Run.id != run.id, m.Run.started_at <= run.started_at]
    if policy.baseline.branch:
        where.append(m.Run.branch == policy.baseline.branch)
    return where


def _series_with_history(session: Session, run: m.Run, policy: Policy, series_ids: set[int]) -> set[int]:
    """Those of `series_ids` recorded by an earlier run on the policy's branch, in any lane: main has history."""
    if not series_ids:
        return set()
    q = (
        select(m.Measurement.series_id)
        .join(m.Result, m.Measurement.result_id == m.Result.id)
        .join(m.Run, m.Result.run_id == m.Run.id)
        .where(m.Measurement.series_id.in_(series_ids), *_history_filter(run, policy))
        .distinct()
    )
    return set(session.scalars(q))


def _family_priors(session: Session, run: m.Run, policy: Policy, short: dict[int, str]) -> dict[str, float]:
    """metric -> the noise prior measured on the other series of that metric on this hardware, in the policy's
    lanes up to this run (noise_model.family_cv); metrics whose family is too thin are left out."""
    if not short:
        return {}
    level = func.avg(m.Measurement.mean)  # a run's level: the mean of its repeats' means
    rows = session.execute(
        select(m.Series.metric, m.Measurement.series_id, level)
        .join(m.Series, m.Measurement.series_id == m.Series.id)
        .join(m.Result, m.Measurement.result_id == m.Result.id)
        .join(m.Run, m.Result.run_id == m.Run.id)
        .where(
            m.Series.metric.in_(sorted(set(short.values()))),
            m.Series.hardware == run.hardware,
            m.Series.id.not_in(list(short)),
            m.Run.lane.in_(policy.baseline.lanes),
            *_history_filter(run, policy),
        )
        .group_by(m.Series.metric, m.Measurement.series_id, m.Result.run_id, m.Run.started_at)
        .order_by(m.Measurement.series_id, m.Run.started_at, m.Result.run_id)
    )
    levels: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for metric, sid, value in rows:
        levels[metric][sid].append(float(value))
    priors = {metric: family_cv(by_series.values()) for metric, by_series in levels.items()}
    return {metric: cv for metric, cv in priors.items() if cv is not None}


def _previously_regressed(session: Session, run: m.Run, series_ids: set[int]) -> set[int]:
    """Those of `series_ids` whose newest verdict in an earlier run's check on this lane (and branch) was
    `regression` or `suspect`: off its level already, so a regression now is confirmed, not suspect."""
    if not series_ids:
        return set()
    newest_first = func.row_number().over(
        partition_by=m.Verdict.series_id, order_by=(m.Run.started_at.desc(), m.Run.id.desc(), m.Check.id.desc())
    )
    ranked = (
        select(m.Verdict.series_id, m.Verdict.verdict, newest_first.label("nth"))
        .join(m.Check, m.Verdict.check_id == m.Check.id)
        .join(m.Run, m.Check.run_id == m.Run.id)
        .where(
            m.Verdict.series_id.in_(series_ids),
            m.Run.lane == run.lane,
            m.Run.branch.is_not_distinct_from(run.branch),
            m.Run.id != run.id,
            m.Run.started_at <= run.started_at,
        )
        .subquery()
    )
    latest = session.execute(select(ranked.c.series_id, ranked.c.verdict).where(ranked.c.nth == 1))
    return {sid for sid, verdict in latest if verdict in ("regression", "suspect")}


def _errors(run: m.Run) -> list[WorkloadError]:
    return [
        WorkloadError(
            workload=r.workload.name, hardware=run.hardware, status=r.status, kind=r.error_kind, message=r.error_message
        )
        for r in run.results
        if r.status != "ok"
    ]


def _node_anomaly(results: list[m.Result]) -> str | None:
    """The anomalies the device's telemetry saw while these results' processes ran (runners.telemetry), in one
    line; None when there were none (or no telemetry)."""
    seen: list[str] = []
    for r in results:
        tel = (r.extra or {}).get("telemetry")
        if isinstance(tel, dict):
            seen += [a for a in tel.get("anomalies") or [] if isinstance(a, str) and a not in seen]
    return "; ".join(seen[:3]) + (f" (+{len(seen) - 3} more)" if len(seen) > 3 else "") if seen else None


def judge_run(session: Session, run: m.Run, policy: Policy) -> VerdictsDoc:
    ok = [r for r in run.results if r.status == "ok"]
    # Results of one workload in one run are looks of one judgement: a rerun that adds repeats (the rerun
    # policy's confirmation) appends a result, and the candidate pools the repeats of all of them.
    groups: dict[int, list[m.Result]] = defaultdict(list)
    for r in ok:
        groups[r.workload_id].append(r)
    baselines: dict[int, Baseline] = {wid: select_baseline(session, run, rs[0], policy) for wid, rs in groups.items()}
    all_ids = [r.id for r in ok] + [b.id for chosen in baselines.values() for b in chosen.results]
    samples = _samples_by_result(session, all_ids)
    ok_ids = {r.id for r in ok}
    series_ids = {sid for (rid, sid) in samples if rid in ok_ids}
    series = {s.id: s for s in session.scalars(select(m.Series).where(m.Series.id.in_(series_ids)))}

    window, history_n = policy.baseline.window, policy.baseline.noise_history
    # Per workload: series id -> its baseline runs (newest first), each run the repeats of its results (a run
    # may hold several results of one workload).
    runs_of: dict[int, dict[int, list[Repeats]]] = {}
    for wid, results in groups.items():
        chosen = baselines[wid]
        by_run: dict[int, list[m.Result]] = defaultdict(list)
        for b in chosen.results:
            by_run[b.run_id].append(b)
        result_ids = {r.id for r in results}
        runs_of[wid] = {}
        for sid in sorted({s for (rid, s) in samples if rid in result_ids}):
            # Only the results in the segment of main's history this series is judged in (baseline.py).
            runs = [
                sum((samples.get((b.id, sid), []) for b in group if chosen.keeps(sid, b)), [])
                for group in by_run.values()
            ]
            runs_of[wid][sid] = [r for r in runs if r][:history_n]
    bare = {sid for per in runs_of.values() for sid, runs in per.items() if not runs}
    with_history = _series_with_history(session, run, policy, bare) if _in_own_history(run, policy) else bare
    short = {
        sid: series[sid].metric for per in runs_of.values() for sid, runs in per.items() if len(runs) < FAMILY_MIN_RUNS
    }
    priors = _family_priors(session, run, policy, short)
    regressed = _previously_regressed(session, run, series_ids) if policy.confirm_summary_regressions else set()

    inputs: list[SeriesInput] = []
    descriptions: set[str] = set()
    for wid, results in groups.items():
        descriptions.add(baselines[wid].description)
        workload = results[0].workload
        for sid, runs in runs_of[wid].items():
            s = series[sid]
            reference = None
            if not runs:
                reference = COLD_START.value(
                    policy, workload=workload.name, spec=workload.spec, metric=s.metric, hardware=s.hardware
                )
            if reference is not None:
                descriptions.add(ColdStart.NOTE)
            inputs.append(
                SeriesInput(
                    workload=workload.name,
                    metric=s.metric,
                    hardware=s.hardware,
                    unit=s.unit,
                    direction=s.direction,
                    candidate=[rep for r in results for rep in samples.get((r.id, sid), [])],
                    baseline=runs[:window],
                    history=runs,
                    look=len(results),
                    informational=policy.is_informational(s.metric, results[0].environment.device_type),
                    summary=s.summary is not None,
                    series_id=sid,
                    reference=reference,
                    prior_cv=priors.get(s.metric),
                    has_history=bool(runs) or sid in with_history,
                    previous_regressed=sid in regressed,
                    node_anomaly=_node_anomaly(results),
                )
            )
    doc = judge(
        inputs,
        policy,
        run=run_info(run),
        errors=_errors(run),
        baseline=BaselineInfo(policy=policy.lane, source="; ".join(sorted(descriptions))),
        confirm_summary_regressions=policy.confirm_summary_regressions,
        max_extra_repeats=load_rerun_policy().performance.max_extra_repeats,  # noisy: beyond the lane's repeats
    )
    doc = name_the_baseline(doc, baselines.values(), policy)  # its windows, and where main regressed already
    doc = _with_culprits(session, doc)
    return attach_profile_diffs(doc, groups, {wid: b.results for wid, b in baselines.items()})


def _with_culprits(session: Session, doc: VerdictsDoc) -> VerdictsDoc:
    """The commits `guardrail bisect` found for the main alerts the baseline names, newest bisection first."""
    info = doc.baseline
    ids = sorted({a for w in (info.windows if info and info.windows else []) for a in w.main_alerts})
    if not ids or info is None:
        return doc
    found: dict[str, str] = {}
    q = (
        select(m.Bisection.alert_id, m.Bisection.culprit)
        .where(m.Bisection.alert_id.in_(ids), m.Bisection.culprit.is_not(None))
        .order_by(m.Bisection.id.desc())
    )
    for aid, culprit in session.execute(q):
        if culprit:
            found.setdefault(str(aid), culprit)
    return doc.model_copy(update={"baseline": info.model_copy(update={"culprits": found})}) if found else doc
