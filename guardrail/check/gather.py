"""A stored run as the judge's inputs: its results' repeats per series, the baseline runs its policy selects,
the noise history and the cold-start references; `judge_run` hands them to guardrail.analysis.judgement."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from guardrail.analysis.judgement import Repeats, SeriesInput, judge
from guardrail.check.baseline import Baseline, select_baseline
from guardrail.ingest.reference import load_reference_yaml
from guardrail.policy import ColdStart, Policy
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


def _errors(run: m.Run) -> list[WorkloadError]:
    return [
        WorkloadError(
            workload=r.workload.name, hardware=run.hardware, status=r.status, kind=r.error_kind, message=r.error_message
        )
        for r in run.results
        if r.status != "ok"
    ]


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

    inputs: list[SeriesInput] = []
    descriptions: set[str] = set()
    window, history_n = policy.baseline.window, policy.baseline.noise_history
    for wid, results in groups.items():
        chosen = baselines[wid]
        descriptions.add(chosen.description)
        workload = results[0].workload
        # Group baseline results by run (a run may hold several results of one workload), newest first.
        by_run: dict[int, list[m.Result]] = defaultdict(list)
        for b in chosen.results:
            by_run[b.run_id].append(b)
        result_ids = {r.id for r in results}
        for sid in sorted({s for (rid, s) in samples if rid in result_ids}):
            s = series[sid]
            runs = [sum((samples.get((b.id, sid), []) for b in group), []) for group in by_run.values()]
            runs = [r for r in runs if r][:history_n]
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
                    informational=s.metric in policy.informational,
                    summary=s.summary is not None,
                    series_id=sid,
                    reference=reference,
                )
            )
    return judge(
        inputs,
        policy,
        run=run_info(run),
        errors=_errors(run),
        baseline=BaselineInfo(policy=policy.lane, source="; ".join(sorted(descriptions))),
    )
