"""The series and run pages' statements, built once per dialect: building and cache-keying a fresh statement
cost SQLAlchemy more CPU than PostgreSQL spent running it. Each page runs them as Core selects of the columns
shown, on the session's connection (the ORM's object loading cost more than the queries themselves)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, bindparam, select
from sqlalchemy.orm import aliased

from guardrail.history import id_in
from guardrail.store import models as m

Statement = Select[*tuple[Any, ...]]
AnyRow = Row[*tuple[Any, ...]]  # a row of any of them: columns read by name (or, for SERIES_COLS, by position)

# The columns of a series row, in the order web.read.series reads them.
SERIES_COLS = (
    m.Series.id,
    m.Workload.name,
    m.Series.workload_id,
    m.Series.metric,
    m.Series.hardware,
    m.Series.unit,
    m.Series.direction,
)

PIN_COLS = (
    m.BaselinePin.id,
    m.BaselinePin.lane,
    m.BaselinePin.hardware,
    m.BaselinePin.run_id,
    m.BaselinePin.reason,
    m.BaselinePin.author,
    m.BaselinePin.active,
    m.BaselinePin.created_at,
    m.BaselinePin.removed_at,
    m.BaselinePin.removed_by,
    m.BaselinePin.removed_reason,
)


@dataclass(frozen=True)
class SeriesStatements:
    series: Statement  # the series and its siblings (same workload and metric), by hardware
    band: Statement  # the newest verdict's baseline median and threshold
    cp_alerts: Statement  # change-point alerts of the series' workload on its hardware
    envs: Statement  # environments by id
    samples: Statement  # every repeat's samples of the series in one run


@dataclass(frozen=True)
class RunStatements:
    run: Statement  # the run with its commit
    results: Statement  # its results with workload and environment
    check: Statement  # its newest check
    verdicts: Statement  # a check's verdicts
    measurements: Statement  # the measurements of a list of results
    previous: Statement  # the newest earlier ok result of a workload on the same hardware and lane
    pins: Statement  # baseline pins of the run, active first
    check_baseline: Statement  # a check's baseline (its windows name the runs it was judged against)
    previous_run: Statement  # the newest earlier run of the same lane, hardware and PR (or main)
    previous_pr_run: Statement  # the same for a PR run: its PR's previous push
    commit_run: Statement  # the newest run of a commit on a hardware outside PRs, at or before a time


@functools.cache
def series_statements(dialect: str) -> SeriesStatements:
    me = aliased(m.Series)
    return SeriesStatements(
        series=select(*SERIES_COLS)
        .select_from(me)
        .join(m.Series, (m.Series.workload_id == me.workload_id) & (m.Series.metric == me.metric))
        .join(m.Workload, m.Workload.id == m.Series.workload_id)
        .where(me.id == bindparam("series_id"))
        .order_by(m.Series.hardware),
        band=select(m.Verdict.check_id, m.Verdict.baseline_median, m.Verdict.threshold)
        .where(m.Verdict.series_id == bindparam("series_id"), m.Verdict.baseline_median.is_not(None))
        .order_by(m.Verdict.id.desc())
        .limit(1),
        cp_alerts=select(m.Alert.id, m.Alert.to_commit, m.Alert.state, m.Alert.metrics).where(
            m.Alert.workload_id == bindparam("workload_id"),
            m.Alert.hardware == bindparam("hardware"),
            m.Alert.dedup_key.startswith("changepoint:"),  # placed at a change point (guardrail.alerts)
        ),
        envs=select(
            m.Environment.id, m.Environment.software, m.Environment.device_type, m.Environment.device_count
        ).where(id_in(dialect, m.Environment.id)),
        samples=select(m.Measurement.result_id, m.Measurement.repeat_index, m.Measurement.samples)
        .join(m.Result, m.Measurement.result_id == m.Result.id)
        .where(m.Measurement.series_id == bindparam("series_id"), m.Result.run_id == bindparam("run_id"))
        .order_by(m.Measurement.result_id, m.Measurement.repeat_index),
    )


@functools.cache
def run_statements(dialect: str) -> RunStatements:
    return RunStatements(
        run=select(
            m.Run.id,
            m.Run.lane,
            m.Run.hardware,
            m.Run.started_at,
            m.Run.branch,
            m.Run.pr,
            m.Run.base_commit,
            m.Run.ci_provider,
            m.Run.ci_run_id,
            m.Run.ci_attempt,
            m.Run.ci_url,
            m.Commit.id.label("commit_pk"),
            m.Commit.sha,
            m.Commit.message,
            m.Commit.repo,
        )
        .outerjoin(m.Commit, m.Run.commit_id == m.Commit.id)
        .where(m.Run.id == bindparam("run_id")),
        results=select(
            m.Result.id,
            m.Result.workload_id,
            m.Result.status,
            m.Result.error_kind,
            m.Result.error_message,
            m.Result.source_format,
            m.Result.extra,
            m.Workload.name,
            m.Environment.id.label("env_id"),
            m.Environment.hardware,
            m.Environment.device_type,
            m.Environment.device_count,
            m.Environment.software,
        )
        .join(m.Workload, m.Result.workload_id == m.Workload.id)
        .join(m.Environment, m.Result.environment_id == m.Environment.id)
        .where(m.Result.run_id == bindparam("run_id"))
        .order_by(m.Result.id),
        check=select(
            m.Check.id,
            m.Check.policy,
            m.Check.status,
            m.Check.summary,
            m.Check.created_at,
            m.Check.expected_false_alarms,
        )
        .where(m.Check.run_id == bindparam("run_id"))
        .order_by(m.Check.id.desc())
        .limit(1),
        verdicts=select(
            m.Verdict.series_id,
            m.Verdict.verdict,
            m.Verdict.change,
            m.Verdict.ci_low,
            m.Verdict.ci_high,
            m.Verdict.explanation,
            m.Verdict.baseline_median,
            m.Verdict.baseline_runs,
        ).where(m.Verdict.check_id == bindparam("check_id")),
        measurements=select(
            m.Measurement.result_id,
            m.Measurement.series_id,
            m.Measurement.samples,
            m.Series.metric,
            m.Series.unit,
            m.Series.direction,
        )
        .join(m.Series, m.Measurement.series_id == m.Series.id)
        .where(id_in(dialect, m.Measurement.result_id))
        .order_by(m.Measurement.result_id, m.Measurement.series_id, m.Measurement.repeat_index),
        previous=select(m.Result.run_id, m.Result.extra)
        .join(m.Run, m.Result.run_id == m.Run.id)
        .where(
            m.Result.workload_id == bindparam("workload_id"),
            m.Run.hardware == bindparam("hardware"),
            m.Run.lane == bindparam("lane"),
            m.Run.started_at < bindparam("started_at"),
            m.Result.status == "ok",
        )
        .order_by(m.Run.started_at.desc())
        .limit(1),
        pins=select(*PIN_COLS)
        .where(m.BaselinePin.run_id == bindparam("run_id"))
        .order_by(m.BaselinePin.active.desc(), m.BaselinePin.id.desc()),
        # the document's baseline part only (its verdicts, most of it, are not read here)
        check_baseline=select(m.Check.doc["baseline"]).where(m.Check.id == bindparam("check_id")),
        previous_run=select(m.Run.id)
        .where(
            m.Run.lane == bindparam("lane"),
            m.Run.hardware == bindparam("hardware"),
            m.Run.pr.is_(None),
            m.Run.started_at < bindparam("started_at"),
        )
        .order_by(m.Run.started_at.desc(), m.Run.id.desc())
        .limit(1),
        previous_pr_run=select(m.Run.id)
        .where(
            m.Run.pr == bindparam("pr"),
            m.Run.hardware == bindparam("hardware"),
            m.Run.started_at < bindparam("started_at"),
        )
        .order_by(m.Run.started_at.desc(), m.Run.id.desc())
        .limit(1),
        commit_run=select(m.Run.id)
        .join(m.Commit, m.Run.commit_id == m.Commit.id)
        .where(
            m.Commit.sha == bindparam("sha"),
            m.Run.hardware == bindparam("hardware"),
            m.Run.pr.is_(None),
            m.Run.started_at <= bindparam("until"),
        )
        .order_by(m.Run.started_at.desc(), m.Run.id.desc())
        .limit(1),
    )
