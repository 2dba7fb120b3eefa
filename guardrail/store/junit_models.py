"""Tables for JUnit results: test identities, one execution per attempt, one verdict per test per commit
pair, quarantine entries and rerun decisions (docs/flaky.md, "What the store should keep").

Declared on :class:`guardrail.store.models.Base` (:mod:`guardrail.store.metadata` gathers both modules'
tables); a JUnit ingest reuses the ``runs`` table (lane, hardware, commit, PR, base commit, CI run id and
attempt). Migrations: ``migrations/versions/0002_tests_flaky_reruns.py``, ``0003_junit_ingest_indexes.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from guardrail.store.models import Base, Run, utcnow

_BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite only auto-increments INTEGER keys


def pair_key(head: str | None, base: str | None, run_id: int) -> str:
    """:attr:`CaseVerdictRow.pair_key`: the commit pair, or the run itself when no commit is known."""
    return f"{head}..{base or ''}" if head else f"run:{run_id}"


class CaseRow(Base):
    """One test *variant*: ``CaseIdentity.key`` (node id plus ``@hardware``); flakiness is tracked per row."""

    __tablename__ = "tests"
    id: Mapped[int] = mapped_column(primary_key=True)
    # the key can be long (parameters): a fixed-size hash carries the unique index
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key: Mapped[str] = mapped_column(Text)
    test_id: Mapped[str] = mapped_column(Text)  # CaseIdentity.id, without hardware
    suite: Mapped[str] = mapped_column(Text, default="")
    file: Mapped[str | None] = mapped_column(Text)
    classname: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    params: Mapped[str | None] = mapped_column(Text)
    hardware: Mapped[str | None] = mapped_column(String(200))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportRow(Base):
    """One JUnit file stored for one run: the content hash makes re-ingesting it a no-op."""

    __tablename__ = "test_reports"
    __table_args__ = (UniqueConstraint("run_id", "content_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    content_hash: Mapped[str] = mapped_column(String(71), index=True)
    path: Mapped[str] = mapped_column(Text)
    process_attempt: Mapped[int] = mapped_column(Integer, default=1)
    executions: Mapped[int] = mapped_column(Integer, default=0)
    tests: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExecutionRow(Base):
    """One attempt of one test (a ``CaseRecord``)."""

    __tablename__ = "test_executions"
    __table_args__ = (Index("ix_test_executions_run_test", "run_id", "test_pk"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    test_pk: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"), index=True)
    # the report's run, copied for per-run reads; no foreign key of its own: report_id already ties the row to
    # its run, with ON DELETE CASCADE through test_reports (migration 0004)
    run_id: Mapped[int] = mapped_column(Integer)
    report_id: Mapped[int] = mapped_column(ForeignKey("test_reports.id", ondelete="CASCADE"), index=True)
    job_attempt: Mapped[int] = mapped_column(Integer, default=1)
    process_attempt: Mapped[int] = mapped_column(Integer, default=1)
    inprocess_attempt: Mapped[int] = mapped_column(Integer, default=1)
    outcome: Mapped[str] = mapped_column(String(8))  # pass | fail | error | skip
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    phase: Mapped[str] = mapped_column(String(10), default="call")
    failure_type: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)  # at most 1,000 characters (the reader cuts it)
    # not indexed: no query filters executions by signature (migration 0003)
    signature: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(30), default="testcase")
    final: Mapped[bool] = mapped_column(Boolean, default=True)
    properties: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    system_out: Mapped[str | None] = mapped_column(Text)  # the last 2,000 characters


class CaseVerdictRow(Base):
    """One verdict per test per (head commit, base commit), regrouped over all attempts after each ingest.

    ``pair_key`` is ``head..base`` (or ``run:<id>`` for a run without a commit): NULLs never collide in a
    unique index, so the pair gets a non-null key. ``run_id``/``at``/``lane`` are those of the newest run
    the test ran in; ``infra_excluded`` is set when that run is an infrastructure failure.
    """

    __tablename__ = "test_verdicts"
    __table_args__ = (
        # also serves every per-test read (a test's few verdicts are sorted after): no (test_pk, at) index,
        # one less per inserted row (migration 0003)
        UniqueConstraint("test_pk", "pair_key"),
        # the flaky window (newest first per test, skips and infra-excluded runs out): PostgreSQL reads it
        # in order from this index, so the window function needs no sort of a million rows
        Index(
            "ix_test_verdicts_window",
            "test_pk",
            text("at DESC"),
            text("id DESC"),
            postgresql_include=["verdict"],
            postgresql_where=text("NOT infra_excluded AND verdict <> 'skip'"),
            sqlite_where=text("NOT infra_excluded AND verdict <> 'skip'"),
        ),
        Index("ix_test_verdicts_at", "at"),
        Index("ix_test_verdicts_pair", "pair_key"),
    )
    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    test_pk: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"))
    pair_key: Mapped[str] = mapped_column(String(140))
    head_commit: Mapped[str | None] = mapped_column(String(64))
    base_commit: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    lane: Mapped[str] = mapped_column(String(50))
    hardware: Mapped[str] = mapped_column(String(200))  # the run's hardware (the test's own is on `tests`)
    at: Mapped[datetime]
    verdict: Mapped[str] = mapped_column(String(8))  # pass | fail | flaky | skip
    final_outcome: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer)
    failed_attempts: Mapped[int] = mapped_column(Integer)
    signatures: Mapped[list[Any]] = mapped_column(default=list)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    rerun_duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    process_attempts: Mapped[int] = mapped_column(Integer, default=1)
    infra_excluded: Mapped[bool] = mapped_column(Boolean, default=False)

    test: Mapped[CaseRow] = relationship(lazy="joined")
    run: Mapped[Run] = relationship()


class QuarantineRow(Base):
    """A muted test (it runs, it does not gate). Active while ``released_at`` is NULL; kept after release."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(primary_key=True)
    test_pk: Mapped[int] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"), index=True)
    since: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(200))  # "rule" or a person
    signatures: Mapped[list[Any]] = mapped_column(default=list)
    released_at: Mapped[datetime | None]
    release_reason: Mapped[str | None] = mapped_column(Text)
    released_by: Mapped[str | None] = mapped_column(String(200))

    test: Mapped[CaseRow] = relationship(lazy="joined")


class RerunDecision(Base):
    """One decision of ``guardrail rerun-plan`` (or of ``quarantine apply-rules``), with its reason."""

    __tablename__ = "rerun_decisions"
    __table_args__ = (Index("ix_rerun_decisions_run_created", "run_id", "created_at"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # test | workload | job | quarantine
    target: Mapped[str] = mapped_column(Text)  # test key, "workload/metric@hardware", or the run
    action: Mapped[str] = mapped_column(String(20))  # rerun | none | flag | enter | release | keep
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # test reruns, or extra repeats of a workload
    blocking: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
