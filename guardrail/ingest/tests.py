"""Storing JUnit results: ``guardrail ingest --format junit``.

One transaction per invocation. Each file is hashed first (re-ingesting the same file for the same CI run
and attempt is a no-op that says so), then streamed through :func:`guardrail.ingest.junit.iter_junit` and
written in batches with Core ``insert()`` (flat memory for 100k test cases). A broken or hostile file
raises :class:`InputError` from inside the transaction, which rolls everything back: nothing is written.
After the files, the verdicts of the run's (head commit, base commit) pair are regrouped over every attempt
of that pair (all job attempts, all fresh-process reruns) and replaced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from guardrail.analysis.flaky import FlakinessPolicy, run_infra_failure
from guardrail.errors import InputError
from guardrail.ingest import IngestReport, expand_paths
from guardrail.ingest.junit import iter_junit
from guardrail.ingest.junit_model import FAILED, TestCaseRecord, TestIdentity
from guardrail.ingest.junit_verdicts import group_verdicts, verdict_fields
from guardrail.schema import RunInfo, Source
from guardrail.store import models as m
from guardrail.store import test_models as tm

DEFAULT_LANE = "tests"
DEFAULT_HARDWARE = "any"
BATCH = 5000
_SQLITE_CACHE_KIB = 16 * 1024  # page cache of the ingesting connection (bounded; grows only as used)
_LOOKUP_CHUNK = 500  # keys per IN (...) lookup: well under SQLite's bound-parameter limit


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=str(path)) from None
    return "sha256:" + h.hexdigest()


def pair_key(head: str | None, base: str | None, run_id: int) -> str:
    """The verdict grouping key: the commit pair, or the run itself when no commit is known."""
    return f"{head}..{base or ''}" if head else f"run:{run_id}"


@dataclass(frozen=True)
class _RunDoc:
    """What ``writer.run_key`` and ``writer._Cache.run`` read of a result document."""

    run: RunInfo
    environment: SimpleNamespace


def _batched(it: Iterable[TestCaseRecord], n: int) -> Iterator[list[TestCaseRecord]]:
    it = iter(it)
    while chunk := list(islice(it, n)):
        yield chunk


class _Bulk:
    """Plain DBAPI ``executemany`` of tuples: SQLAlchemy's per-row parameter processing cost more than the
    database did (measured: ~3 s of 10 for 35k rows). Values arrive already in storage form: JSON as text,
    datetimes through the column type's own bind processor (the UTC rule of ``UTCDateTime``)."""

    def __init__(self, session: Session, table: Any, columns: Sequence[str], suffix: str = ""):
        self.conn = session.connection()
        dialect = self.conn.dialect
        ph = "?" if dialect.paramstyle == "qmark" else "%s"
        quote = dialect.identifier_preparer.quote
        cols = ", ".join(quote(c) for c in columns)
        self.sql = f"INSERT INTO {quote(table.name)} ({cols}) VALUES ({', '.join([ph] * len(columns))}){suffix}"
        # PostgreSQL: COPY, inside the same transaction (a plain insert has no ON CONFLICT clause)
        self.copy = (
            f"COPY {quote(table.name)} ({cols}) FROM STDIN" if dialect.name == "postgresql" and not suffix else None
        )

    def __call__(self, rows: list[tuple]) -> None:
        if not rows:
            return
        if self.copy is None:
            self.conn.exec_driver_sql(self.sql, rows)
            return
        raw = self.conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(self.copy) as cp:
            for row in rows:
                cp.write_row(row)


def _datetime_bind(session: Session, column: Any):
    dialect = session.get_bind().dialect
    proc = column.type.dialect_impl(dialect).bind_processor(dialect)
    return proc or (lambda v: v)


_TEST_COLS = ("key_hash", "key", "test_id", "suite", "file", "classname", "name", "params", "hardware")


class _TestIds:
    """test identity -> ``tests.id``, created on first sight: insert-if-absent (a concurrent ingest may
    have created the same test a moment ago), then read the ids back."""

    def __init__(self, session: Session):
        self.s = session
        self.ids: dict[str, int] = {}  # by key
        self.by_ident: dict[TestIdentity, int] = {}  # hashing an identity is cheaper than building its key
        self.conn = session.connection()
        self.ph = "?" if self.conn.dialect.paramstyle == "qmark" else "%s"
        self.scratch = False

    def resolve(self, idents: Iterable[TestIdentity]) -> list[int]:
        """The ids of ``idents``, in order."""
        idents = list(idents)
        missing: dict[str, TestIdentity] = {}
        by_ident, ids = self.by_ident, self.ids
        test_ids: dict[str, str] = {}  # key -> test id (built once: the key is the id plus the hardware)
        for ident in idents:
            if ident not in by_ident:
                tid = ident.id
                k = f"{tid}@{ident.hardware}" if ident.hardware else tid
                if k in ids:
                    by_ident[ident] = ids[k]
                elif k not in missing:
                    missing[k] = ident
                    test_ids[k] = tid
        if missing:
            now = _datetime_bind(self.s, tm.TestCase.__table__.c.first_seen_at)(m.utcnow())
            new = [
                (key_hash(k), k, test_ids[k], i.suite, i.file, i.classname, i.name, i.params, i.hardware, now)
                for k, i in missing.items()
            ]
            by_hash = {r[0]: r[1] for r in new}
            if self.conn.dialect.name == "postgresql":
                found = self._insert_pg(new)
            else:
                cols = (*_TEST_COLS, "first_seen_at")
                # the ingest holds SQLite's write lock (BEGIN IMMEDIATE): the rows past the largest id are ours,
                # read back in one statement; only keys that already existed are looked up by hash
                (top,) = self.conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM tests").one()
                _Bulk(self.s, tm.TestCase.__table__, cols, " ON CONFLICT (key_hash) DO NOTHING")(new)
                found = self.conn.exec_driver_sql("SELECT id, key_hash FROM tests WHERE id > ?", (top,)).all()
                inserted = {h for _, h in found}
                hashes = [h for h in by_hash if h not in inserted]
                for i in range(0, len(hashes), _LOOKUP_CHUNK):
                    chunk = hashes[i : i + _LOOKUP_CHUNK]
                    sql = f"SELECT id, key_hash FROM tests WHERE key_hash IN ({', '.join([self.ph] * len(chunk))})"
                    found += self.conn.exec_driver_sql(sql, tuple(chunk)).all()
            for pk, h in found:
                k = by_hash[h]
                self.ids[k] = pk
                self.by_ident[missing[k]] = pk
        return [by_ident[i] for i in idents]

    def _insert_pg(self, new: list[tuple]) -> list[tuple[int, str]]:
        """COPY into a scratch table, insert-if-absent from it, read the ids back: three statements."""
        cols = ", ".join(f'"{c}"' for c in (*_TEST_COLS, "first_seen_at"))
        if not self.scratch:
            self.conn.exec_driver_sql(
                f"CREATE TEMP TABLE guardrail_new_tests ON COMMIT DROP AS SELECT {cols} FROM tests WITH NO DATA"
            )
            self.scratch = True
        else:
            self.conn.exec_driver_sql("TRUNCATE guardrail_new_tests")
        raw = self.conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY guardrail_new_tests ({cols}) FROM STDIN") as cp:
            for row in new:
                cp.write_row(row)
        self.conn.exec_driver_sql(
            f"INSERT INTO tests ({cols}) SELECT {cols} FROM guardrail_new_tests ON CONFLICT (key_hash) DO NOTHING"
        )
        sql = "SELECT t.id, t.key_hash FROM tests t JOIN guardrail_new_tests n ON n.key_hash = t.key_hash"
        return self.conn.exec_driver_sql(sql).all()


def _existing_report(session: Session, run_doc: _RunDoc, key: str, content: str) -> tuple[int, int] | None:
    """(report id, run id) when this file's content is already stored for the same run identity.

    With a CI run id the run key decides; without one (a local ingest), the same content for the same
    lane, hardware, commit and PR counts as the same report.
    """
    q = select(tm.TestReport.id, tm.TestReport.run_id).join(m.Run, m.Run.id == tm.TestReport.run_id)
    q = q.where(tm.TestReport.content_hash == content)
    src = run_doc.run.source
    if src.ci and src.ci.run_id:
        q = q.where(m.Run.run_key == key)
    else:
        q = q.where(
            m.Run.lane == run_doc.run.lane,
            m.Run.hardware == run_doc.environment.hardware,
            m.Run.ci_run_id.is_(None),
            m.Run.pr.is_(None) if src.pr is None else m.Run.pr == src.pr,
        )
        if src.commit:
            q = q.join(m.Commit, m.Commit.id == m.Run.commit_id).where(m.Commit.sha == src.commit)
        else:
            q = q.where(m.Run.commit_id.is_(None))
    row = session.execute(q.limit(1)).first()
    return (row[0], row[1]) if row else None


class _FreshVerdicts:
    """Verdicts straight from the parsed records, for the common case -- one new file, the only run of its
    commit pair -- so that nothing is read back. A test's group is complete at its ``final`` attempt; a
    test seen again after its group was written (beyond the reader's rerun window) sets ``broken``, and
    the caller then regroups from the store instead."""

    def __init__(self, session: Session, run: m.Run, ids: _TestIds, pk: str, head: str | None, base: str | None):
        self.ids, self.pk, self.head, self.base = ids, pk, head, base
        self.run = (
            run.id,
            run.lane,
            run.hardware,
            _datetime_bind(session, tm.TestVerdictRow.__table__.c.at)(run.started_at),
        )
        self.insert_rows = _Bulk(session, tm.TestVerdictRow.__table__, _VERDICT_INSERT_COLS)
        # complete groups (a test's attempts, its final one last) waiting to be written, by test
        self.pending: dict[TestIdentity, list[TestCaseRecord]] = {}
        self.n_pending = 0
        self.open: dict[TestIdentity, list[TestCaseRecord]] = {}
        self.written: set[int] = set()
        self.broken = False
        self.total = 0

    def add(self, batch: list[TestCaseRecord]) -> None:
        if self.broken:
            return
        # a test's earlier attempts leave the reader before its final one (up to its rerun window
        # later): hold them until the final attempt arrives
        open_, pending = self.open, self.pending
        for r in batch:
            ident = r.identity
            group = open_.pop(ident, None)
            if group is None:
                if r.final:
                    group = [r]
                else:
                    open_[ident] = [r]
                    continue
            else:
                group.append(r)
                if not r.final:
                    open_[ident] = group
                    continue
            done = pending.get(ident)
            if done is None:
                pending[ident] = group
            else:
                done.extend(group)
            self.n_pending += len(group)
        if self.n_pending >= BATCH:
            self._write()

    def finish(self) -> None:
        if not self.broken:
            for ident, group in self.open.items():
                done = self.pending.get(ident)
                if done is None:
                    self.pending[ident] = group
                else:
                    done.extend(group)
            self._write()
        self.pending.clear()
        self.open.clear()

    def _write(self) -> None:
        groups, self.pending, self.n_pending = self.pending, {}, 0
        if not groups:
            return
        run_id, lane, hw, at = self.run
        head, base, pk = self.head, self.base, self.pk
        by_ident, written = self.ids.by_ident, self.written
        rows = []
        for ident, recs in groups.items():
            test_pk = by_ident[ident]
            if test_pk in written:
                self.broken = True
                return
            written.add(test_pk)
            verdict, final, attempts, failed, sigs, duration, rerun, _, procs = verdict_fields(recs)
            rows.append(
                (
                    test_pk, pk, head, base, run_id, lane, hw, at, verdict, final, attempts, failed,
                    json.dumps(list(sigs)) if sigs else "[]", duration, rerun, procs, False,
                )
            )  # fmt: skip
        self.insert_rows(rows)
        self.total += len(rows)


def _store_file(
    session: Session,
    path: Path,
    report: tm.TestReport,
    run: m.Run,
    ids: _TestIds,
    *,
    job_attempt: int,
    hardware: str | None,
    run_is_new: bool,
    fresh: _FreshVerdicts | None = None,
) -> tuple[int, dict[str, int], set[str]]:
    """Stream one file into ``test_executions``; returns (executions, verdict counts, suite names).

    The ``<system-out>`` tail is kept for failed attempts only (where "device lost" shows up): in a
    realistic 50 MB file half the passing cases carry a log, 30 MB the store would never show.
    """
    # per test: bit 1 an attempt passed, 2 an attempt failed, 4 skipped -- enough for the file's summary
    seen: dict[int, int] = {}
    suites: set[str] = set()
    n = 0
    insert_rows = _Bulk(session, tm.TestExecution.__table__, _EXEC_INSERT_COLS)
    for batch in _batched(iter_junit(path, job_attempt=job_attempt, hardware=hardware), BATCH):
        pks = ids.resolve(r.identity for r in batch)
        earlier: dict[int, int] = {}
        if not run_is_new:
            # A test seen again in the same run and job attempt (another file: a rerun round) ran in a fresh
            # process: number its process attempt after the ones stored.
            uniq = sorted(set(pks))
            for i in range(0, len(uniq), _LOOKUP_CHUNK):
                q = (
                    select(tm.TestExecution.test_pk, func.max(tm.TestExecution.process_attempt))
                    .where(
                        tm.TestExecution.run_id == run.id,
                        tm.TestExecution.job_attempt == job_attempt,
                        tm.TestExecution.report_id != report.id,
                        tm.TestExecution.test_pk.in_(uniq[i : i + _LOOKUP_CHUNK]),
                    )
                    .group_by(tm.TestExecution.test_pk)
                )
                earlier.update(dict(session.execute(q).all()))
        rows = []
        run_id, report_id = run.id, report.id
        for r, pk in zip(batch, pks, strict=True):
            suites.add(r.identity.suite)
            bit = 4 if r.outcome == "skip" else 2 if r.outcome in FAILED else 1
            seen[pk] = seen.get(pk, 0) | bit
            rows.append(
                (
                    pk, run_id, report_id, r.job_attempt,
                    earlier[pk] + r.process_attempt if pk in earlier else r.process_attempt,
                    r.inprocess_attempt, r.outcome, r.duration_s, r.phase, r.failure_type, r.message,
                    r.signature, r.source, r.final, json.dumps(dict(r.properties)) if r.properties else None,
                    r.system_out if r.outcome in FAILED else None,
                )
            )  # fmt: skip
        insert_rows(rows)
        n += len(rows)
        if fresh is not None:
            fresh.add(batch)
    counts = {"passed": 0, "failed": 0, "flaky": 0, "skipped": 0}
    for bits in seen.values():
        ran = bits & 3
        counts["flaky" if ran == 3 else "failed" if ran == 2 else "passed" if ran == 1 else "skipped"] += 1
    return n, counts, suites


_EXEC_INSERT_COLS = (
    "test_pk", "run_id", "report_id", "job_attempt", "process_attempt", "inprocess_attempt", "outcome",
    "duration_s", "phase", "failure_type", "message", "signature", "source", "final", "properties", "system_out",
)  # fmt: skip
_VERDICT_INSERT_COLS = (
    "test_pk", "pair_key", "head_commit", "base_commit", "run_id", "lane", "hardware", "at", "verdict",
    "final_outcome", "attempts", "failed_attempts", "signatures", "duration_s", "rerun_duration_s",
    "process_attempts", "infra_excluded",
)  # fmt: skip
_EXEC_COLS = (
    tm.TestExecution.test_pk,
    tm.TestExecution.run_id,
    tm.TestExecution.job_attempt,
    tm.TestExecution.process_attempt,
    tm.TestExecution.inprocess_attempt,
    tm.TestExecution.outcome,
    tm.TestExecution.duration_s,
    tm.TestExecution.phase,
    tm.TestExecution.signature,
)


def regroup_pair(
    session: Session, run: m.Run, policy: FlakinessPolicy | None = None, *, reports: Sequence[int] | None = None
) -> dict[str, Any]:
    """Replace the verdicts of ``run``'s (head, base) pair, regrouped over every attempt of the pair.

    Only the tests in ``reports`` (this ingest's files) are regrouped when given: a verdict depends on its
    own test's executions only, so a sharded job ingested file by file stays linear. Streams the pair's
    executions ordered by test, groups one test at a time with :func:`group_verdicts`, inserts in
    batches; then re-marks the runs that :func:`run_infra_failure` calls infrastructure failures.
    Returns {"verdicts": n regrouped, "infra": {run_id: reason}}.
    """
    policy = policy or FlakinessPolicy()
    head, base, pk, runs = _pair_runs(session, run)
    stale = delete(tm.TestVerdictRow).where(tm.TestVerdictRow.pair_key == pk)
    q = select(*_EXEC_COLS).where(tm.TestExecution.run_id.in_(list(runs)))
    if reports is not None:
        touched = select(tm.TestExecution.test_pk).where(tm.TestExecution.report_id.in_(list(reports))).distinct()
        stale = stale.where(tm.TestVerdictRow.test_pk.in_(touched))
        q = q.where(tm.TestExecution.test_pk.in_(touched))
    session.execute(stale)
    q = q.order_by(
        tm.TestExecution.test_pk,
        tm.TestExecution.job_attempt,
        tm.TestExecution.process_attempt,
        tm.TestExecution.inprocess_attempt,
        tm.TestExecution.id,
    ).execution_options(yield_per=BATCH)
    total = 0
    insert_rows = _Bulk(session, tm.TestVerdictRow.__table__, _VERDICT_INSERT_COLS)
    at_bind = _datetime_bind(session, tm.TestVerdictRow.__table__.c.at)
    # the newest run of a set of runs, and its stored timestamp (one bind per run, not per row)
    newest_of: dict[frozenset[int], tuple[Any, Any]] = {}

    def newest(run_ids: frozenset[int]) -> tuple[Any, Any]:
        if run_ids not in newest_of:
            r = max((runs[i] for i in run_ids), key=lambda r: (r.started_at, r.id))
            newest_of[run_ids] = (r, at_bind(r.started_at))
        return newest_of[run_ids]

    # group_verdicts runs over many tests at once (one identity per test, its pk as the name)
    pending: list[TestCaseRecord] = []
    pending_runs: dict[int, frozenset[int]] = {}

    def flush() -> None:
        nonlocal total
        rows = []
        for v in group_verdicts(pending, head_commit=head, base_commit=base):
            test_pk = int(v.identity.name)
            r, at = newest(pending_runs[test_pk])
            rows.append(
                (
                    test_pk, pk, head, base, r.id, r.lane, r.hardware, at, v.verdict, v.final_outcome,
                    v.attempts, v.failed_attempts, json.dumps(list(v.signatures)), v.duration_s,
                    v.rerun_duration_s, v.process_attempts, False,
                )
            )  # fmt: skip
        insert_rows(rows)
        total += len(rows)
        pending.clear()
        pending_runs.clear()

    current: int | None = None
    ident = TestIdentity("", None, None, "")
    run_ids: set[int] = set()
    for e in session.execute(q):
        if e.test_pk != current:
            if current is not None:
                pending_runs[current] = frozenset(run_ids)
                if len(pending) >= BATCH:
                    flush()
            current, run_ids = e.test_pk, set()
            ident = TestIdentity("", None, None, str(e.test_pk))
        run_ids.add(e.run_id)
        pending.append(
            TestCaseRecord(
                identity=ident,
                outcome=e.outcome,
                duration_s=e.duration_s,
                job_attempt=e.job_attempt,
                process_attempt=e.process_attempt,
                inprocess_attempt=e.inprocess_attempt,
                phase=e.phase,
                signature=e.signature,
            )
        )
    if current is not None:
        pending_runs[current] = frozenset(run_ids)
    if pending:
        flush()

    return {"verdicts": total, "infra": _mark_infra(session, pk, runs, policy)}


def _pair_runs(session: Session, run: m.Run) -> tuple[str | None, str | None, str, dict[int, Any]]:
    """(head, base, pair key, {run id: (id, started_at, lane, hardware)}) of every run of ``run``'s pair."""
    head = run.commit.sha if run.commit is not None else None
    base = run.base_commit
    runs_q = select(m.Run.id, m.Run.started_at, m.Run.lane, m.Run.hardware)
    if head:
        runs_q = runs_q.join(m.Commit, m.Commit.id == m.Run.commit_id).where(m.Commit.sha == head)
        runs_q = runs_q.where(m.Run.base_commit.is_(None) if base is None else m.Run.base_commit == base)
    else:
        runs_q = runs_q.where(m.Run.id == run.id)
    return head, base, pair_key(head, base, run.id), {r.id: r for r in session.execute(runs_q)}


def _mark_infra(session: Session, pk: str, runs: dict[int, Any], policy: FlakinessPolicy) -> dict[int, str]:
    """Flag the verdicts of runs that :func:`run_infra_failure` calls infrastructure failures."""
    # a verdict may have moved to a newer run: judge every run of the pair afresh
    # (only rows that change: an UPDATE rewrites every row it touches on PostgreSQL)
    V = tm.TestVerdictRow
    session.execute(update(V).where(V.pair_key == pk, V.infra_excluded.is_(True)).values(infra_excluded=False))
    infra: dict[int, str] = {}
    for rid in runs:
        verdicts = session.execute(
            select(tm.TestVerdictRow.verdict).where(tm.TestVerdictRow.pair_key == pk, tm.TestVerdictRow.run_id == rid)
        )
        reason = run_infra_failure(verdicts, policy)
        if reason:
            infra[rid] = reason
            session.execute(
                update(tm.TestVerdictRow)
                .where(tm.TestVerdictRow.pair_key == pk, tm.TestVerdictRow.run_id == rid)
                .values(infra_excluded=True)
            )
    return infra


def ingest_junit(
    db_url: str,
    paths: Sequence[str | Path],
    *,
    source: Source | None,
    lane: str | None,
    hardware: str | None,
    started_at: datetime | None = None,
    policy: FlakinessPolicy | None = None,
) -> IngestReport:
    """Store JUnit files as one run (lane ``tests`` and hardware ``any`` unless given), all or nothing.

    ``hardware`` is also the default hardware variant of each test (a ``hardware`` property in the file
    wins). ``started_at`` (default: now) dates the run and so its verdicts.
    """
    from guardrail.store.db import session_scope
    from guardrail.store.writer import _Cache, run_key

    files = expand_paths(paths, (".xml",))
    hashes = [(f, file_hash(f)) for f in files]
    src = source or Source()
    run_doc = _RunDoc(
        run=RunInfo(lane=lane or DEFAULT_LANE, started_at=started_at or m.utcnow(), source=src),
        environment=SimpleNamespace(hardware=hardware or DEFAULT_HARDWARE),
    )
    key = run_key(run_doc)  # type: ignore[arg-type]  # duck-typed: reads .run and .environment.hardware
    job_attempt = (src.ci.attempt if src.ci and src.ci.attempt else None) or 1
    report = IngestReport()
    with session_scope(db_url, write=True) as session:
        if session.get_bind().dialect.name == "sqlite":
            # 100k random-order index inserts: with the default 2 MB page cache, SQLite spills dirty pages to
            # the WAL and reads them back over and over. This connection only; reset when the ingest ends.
            session.connection().exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
        cache = _Cache(session)
        ids = _TestIds(session)
        to_store: list[tuple[Path, str]] = []
        for path, content in hashes:
            found = _existing_report(session, run_doc, key, content)
            if found is None and content not in {c for _, c in to_store}:
                to_store.append((path, content))
                continue
            report.skipped.append(
                {"file": str(path), "workload": path.name, "hardware": run_doc.environment.hardware,
                 "status": "already stored", "run_id": found[1] if found else None,
                 "reason": "already stored (same file content for the same run)"}
            )  # fmt: skip
        if not to_store:
            return report
        run, run_is_new = cache.run(run_doc)  # type: ignore[arg-type]
        session.flush()
        for s in report.skipped:
            s["run_id"] = s["run_id"] or run.id
        head, base, pk, runs = _pair_runs(session, run)
        fresh = None
        if run_is_new and len(to_store) == 1 and list(runs) == [run.id]:
            fresh = _FreshVerdicts(session, run, ids, pk, head, base)
        stored_reports: list[int] = []
        for path, content in to_store:
            rep = tm.TestReport(run_id=run.id, content_hash=content, path=str(path))
            session.add(rep)
            session.flush()
            stored_reports.append(rep.id)
            n, counts, suites = _store_file(
                session, path, rep, run, ids, job_attempt=job_attempt, hardware=hardware, run_is_new=run_is_new,
                fresh=fresh,
            )  # fmt: skip
            run_is_new = False  # later files of this invocation may rerun tests of earlier ones
            rep.executions, rep.tests = n, sum(counts.values())
            status = f"{counts['passed']} passed, {counts['failed']} failed, {counts['flaky']} flaky"
            if counts["skipped"]:
                status += f", {counts['skipped']} skipped"
            names = sorted(x for x in suites if x)
            report.stored.append(
                {
                    "file": str(path),
                    "workload": ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
                    if names
                    else path.name,
                    "status": status,
                    "hardware": run.hardware,
                    "run_id": run.id,
                    "lane": run.lane,
                    "tests": rep.tests,
                    "executions": n,
                    **counts,
                }
            )
        session.flush()
        if fresh is not None:
            fresh.finish()
        if fresh is not None and not fresh.broken:
            grouped = {"verdicts": fresh.total, "infra": _mark_infra(session, pk, runs, policy or FlakinessPolicy())}
        else:
            if fresh is not None:  # a test's attempts were not contiguous: start over from the store
                session.execute(delete(tm.TestVerdictRow).where(tm.TestVerdictRow.pair_key == pk))
            grouped = regroup_pair(session, run, policy, reports=stored_reports)
        for s in report.stored:
            s["verdicts"] = grouped["verdicts"]
            if run.id in grouped["infra"]:
                s["infra_failure"] = grouped["infra"][run.id]
    return report
