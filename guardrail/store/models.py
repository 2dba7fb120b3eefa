"""The database schema (SQLAlchemy 2). Alembic migrations under `migrations/` are the only way it changes.

The data model, in one line: a *run* (one lane on one environment at one commit) holds *results* (one per
workload execution), which hold *measurements* (one row per fresh process: the repeat structure is kept);
a *series* is (workload digest, metric, hardware); *checks* judge a run against a baseline and keep their
*verdicts*; *alerts* are regressions and change points under triage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from guardrail import clock

if TYPE_CHECKING:
    import numpy as np


def utcnow() -> datetime:
    return clock.now()


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone, so it is restored on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; all times are UTC-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class Environment(Base):
    """Hardware plus software fingerprint. Identical fingerprints share one row."""

    __tablename__ = "environments"
    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(71), unique=True)  # sha256 of the canonical JSON
    hardware: Mapped[str] = mapped_column(String(200), index=True)
    device_type: Mapped[str] = mapped_column(String(20))
    device_count: Mapped[int] = mapped_column(Integer, default=1)
    software: Mapped[dict[str, Any]] = mapped_column(default=dict)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Commit(Base):
    __tablename__ = "commits"
    __table_args__ = (UniqueConstraint("repo", "sha"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    repo: Mapped[str] = mapped_column(String(200), default="")
    sha: Mapped[str] = mapped_column(String(64), index=True)
    branch: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)


class Run(Base):
    """One lane executed on one environment for one commit (one CI job attempt, or one local invocation)."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_lane_hw_started", "lane", "hardware", "started_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_key: Mapped[str] = mapped_column(String(71), unique=True)
    lane: Mapped[str] = mapped_column(String(50))
    hardware: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    commit_id: Mapped[int | None] = mapped_column(ForeignKey("commits.id"), index=True)
    branch: Mapped[str | None] = mapped_column(String(200))
    pr: Mapped[int | None] = mapped_column(Integer, index=True)
    base_commit: Mapped[str | None] = mapped_column(String(64))
    ci_provider: Mapped[str | None] = mapped_column(String(50))
    ci_run_id: Mapped[str | None] = mapped_column(String(100))
    ci_attempt: Mapped[int | None] = mapped_column(Integer)
    ci_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    commit: Mapped[Commit | None] = relationship(lazy="joined")
    results: Mapped[list[Result]] = relationship(back_populates="run", order_by="Result.id")


class Workload(Base):
    __tablename__ = "workloads"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(300), index=True)
    family: Mapped[str | None] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Result(Base):
    """One workload execution inside a run. Re-ingesting identical content is a no-op (content_hash)."""

    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("run_id", "workload_id", "content_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id"), index=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    error_kind: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(71))
    source_format: Mapped[str] = mapped_column(String(50), default="result")
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship(back_populates="results")
    workload: Mapped[Workload] = relationship(lazy="joined")
    environment: Mapped[Environment] = relationship(lazy="joined")


class Series(Base):
    """What history is made of: one metric of one workload digest on one hardware."""

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("workload_id", "metric", "hardware"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id"), index=True)
    metric: Mapped[str] = mapped_column(String(200))
    hardware: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(50))
    direction: Mapped[str] = mapped_column(String(20))
    summary: Mapped[str | None] = mapped_column(String(50))

    workload: Mapped[Workload] = relationship(lazy="joined")


class Measurement(Base):
    """One fresh process's samples of one metric. Samples are float64 little-endian bytes; the summary
    columns make history queries cheap without decoding them."""

    __tablename__ = "measurements"
    __table_args__ = (Index("ix_measurements_series_result", "series_id", "result_id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"))
    repeat_index: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(Integer)
    median: Mapped[float] = mapped_column(Float)
    mean: Mapped[float] = mapped_column(Float)
    minimum: Mapped[float] = mapped_column(Float)
    maximum: Mapped[float] = mapped_column(Float)
    samples: Mapped[bytes] = mapped_column(LargeBinary)

    def values(self) -> np.ndarray:
        import numpy as np  # lazily: the CLI's store commands need no numpy

        return np.frombuffer(self.samples, dtype="<f8")


class Check(Base):
    """One judgement of a run against its baseline policy; `doc` is the verdicts/v1 document as printed."""

    __tablename__ = "checks"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    policy: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))  # success | failure | error
    expected_false_alarms: Mapped[float] = mapped_column(Float, default=0.0)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    doc: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    verdicts: Mapped[list[Verdict]] = relationship(back_populates="check", order_by="Verdict.id")


class Verdict(Base):
    __tablename__ = "verdicts"
    id: Mapped[int] = mapped_column(primary_key=True)
    check_id: Mapped[int] = mapped_column(ForeignKey("checks.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id"), index=True)
    workload: Mapped[str] = mapped_column(String(300))
    metric: Mapped[str] = mapped_column(String(200))
    hardware: Mapped[str] = mapped_column(String(200))
    verdict: Mapped[str] = mapped_column(String(20), index=True)
    change: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    q_value: Mapped[float | None] = mapped_column(Float)
    baseline_runs: Mapped[int] = mapped_column(Integer, default=0)
    baseline_median: Mapped[float | None] = mapped_column(Float)
    candidate_repeats: Mapped[int] = mapped_column(Integer, default=0)
    candidate_median: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    repeats_needed: Mapped[int | None] = mapped_column(Integer)
    explanation: Mapped[str] = mapped_column(Text, default="")

    check: Mapped[Check] = relationship(back_populates="verdicts")


class Alert(Base):
    """A regression or change point under triage. Metrics of one workload at one commit range share one alert."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # regression | changepoint
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id"), index=True)
    hardware: Mapped[str] = mapped_column(String(200))
    lane: Mapped[str] = mapped_column(String(50))
    metrics: Mapped[list[Any]] = mapped_column(default=list)  # [{"metric", "series_id", "change", "p_value"}]
    change: Mapped[float | None] = mapped_column(Float)  # the largest relative change among its metrics
    from_commit: Mapped[str | None] = mapped_column(String(64))  # last good
    to_commit: Mapped[str | None] = mapped_column(String(64))  # first bad
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(20), default="untriaged", index=True)
    note: Mapped[str | None] = mapped_column(Text)
    issue_url: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]

    workload: Mapped[Workload] = relationship(lazy="joined")


class AlertEvent(Base):
    """Who changed an alert, when, and to what: the triage history."""

    __tablename__ = "alert_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BaselinePin(Base):
    """A run pinned as the baseline of a lane on a hardware (release baselines; manual overrides)."""

    __tablename__ = "baseline_pins"
    id: Mapped[int] = mapped_column(primary_key=True)
    lane: Mapped[str] = mapped_column(String(50))
    hardware: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[datetime | None]
    removed_by: Mapped[str | None] = mapped_column(String(200))
    removed_reason: Mapped[str | None] = mapped_column(Text)


class ApiToken(Base):
    """Write tokens for the API. Only a SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Bisection(Base):
    """One bisection of a first-parent commit range for one workload x metric x hardware (guardrail bisect)."""

    __tablename__ = "bisections"
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"), index=True)
    workload: Mapped[str] = mapped_column(String(300))
    metric: Mapped[str] = mapped_column(String(200))
    hardware: Mapped[str | None] = mapped_column(String(200))
    good: Mapped[str] = mapped_column(String(64))
    bad: Mapped[str] = mapped_column(String(64))
    commits: Mapped[list[Any]] = mapped_column(default=list)  # first-parent SHAs, the good end first
    dispatch: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default="running")  # running | culprit | stopped
    stop_reason: Mapped[str | None] = mapped_column(String(40))
    culprit: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[dict[str, Any]] = mapped_column(default=dict)  # both sides' p-values at the culprit
    low: Mapped[int] = mapped_column(Integer, default=0)  # the open range: last good position ...
    high: Mapped[int] = mapped_column(Integer, default=0)  # ... first bad position
    budget_minutes: Mapped[float | None] = mapped_column(Float)
    spent_minutes: Mapped[float] = mapped_column(Float, default=0.0)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    steps: Mapped[list[BisectionStep]] = relationship(order_by="BisectionStep.seq", cascade="all, delete-orphan")


class BisectionStep(Base):
    """One step of a bisection: what was asked for at which commit, why, and what the commit read as."""

    __tablename__ = "bisection_steps"
    id: Mapped[int] = mapped_column(primary_key=True)
    bisection_id: Mapped[int] = mapped_column(ForeignKey("bisections.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(20))  # run | culprit | stop
    position: Mapped[int | None] = mapped_column(Integer)
    sha: Mapped[str | None] = mapped_column(String(64))
    why: Mapped[str] = mapped_column(Text, default="")
    repeats: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str | None] = mapped_column(String(40))  # dispatched | ok | infra_error | printed ...
    readings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # position -> good | bad | unclear | skipped
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)  # dispatch reference, minutes, sides
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("bisection_id", "seq"),)
