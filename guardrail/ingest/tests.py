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
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

import guardrail
from guardrail.analysis.flaky import FlakinessPolicy, run_infra_failure
from guardrail.errors import InfraError, InputError
from guardrail.ingest import IngestReport, expand_paths
from guardrail.ingest.junit import junit_batches, key_hash
from guardrail.ingest.junit_model import TestCaseRecord, TestIdentity
from guardrail.ingest.junit_verdicts import group_verdicts
from guardrail.schema import RunInfo, Source
from guardrail.store import models as m
from guardrail.store import test_models as tm

DEFAULT_LANE = "tests"
DEFAULT_HARDWARE = "any"
BATCH = 5000
_SQLITE_CACHE_KIB = 16 * 1024  # page cache of the ingesting connection (bounded; grows only as used)
_LOOKUP_CHUNK = 500  # keys per IN (...) lookup: well under SQLite's bound-parameter limit
# Files at least this large are parsed in a child process while this one writes; below it, a process start
# (~0.1 s) would cost more than the overlap saves.
CHILD_MIN_BYTES = 2 << 20
_AHEAD = 4  # pickled batches (~2 MB each) the reader process may be ahead of the writes

__all__ = ["ingest_junit", "key_hash", "pair_key", "regroup_pair"]


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


class _Parsed:
    """One file's :func:`junit_batches` messages. A large file is parsed in a child process that pickles them
    to a pipe, so that parsing and the database writes overlap on two cores; a small one is parsed here. A
    thread moves the child's frames from the pipe into a queue of up to ``_AHEAD`` (as bytes: compact), so that
    the child keeps parsing while this process waits on the database -- the 64 KiB pipe alone made the two
    take turns. Bad input in the child arrives as an ``InputError``; a child that dies without finishing
    raises :class:`InfraError` -- either way inside the ingest's transaction, so nothing is written."""

    def __init__(self, path: Path, *, job_attempt: int, hardware: str | None, verdicts: bool):
        self.path = path
        self.args = {"job_attempt": job_attempt, "hardware": hardware, "batch": BATCH, "verdicts": verdicts}
        self.proc: subprocess.Popen | None = None
        try:
            big = path.stat().st_size >= CHILD_MIN_BYTES
        except OSError:
            big = False  # the parse in this process names the problem
        if big:
            self.stderr = tempfile.TemporaryFile()
            root = str(Path(guardrail.__file__).resolve().parent.parent)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
            arg = json.dumps([str(path), job_attempt, hardware, BATCH, verdicts])
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from guardrail.ingest.junit import _child_main; _child_main()", arg],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr, env=env,
            )  # fmt: skip
            self.frames: queue.Queue[bytes | None] = queue.Queue(maxsize=_AHEAD)
            self.pump = threading.Thread(target=self._pump, name="junit-reader-pipe", daemon=True)
            self.pump.start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        f = self.proc.stdout
        try:
            while True:
                head = f.read(8)  # a frame: its length, then one pickled message
                if len(head) < 8:
                    break
                n = int.from_bytes(head, "little")
                data = f.read(n)
                if len(data) < n:
                    break
                self.frames.put(data)
        except (OSError, ValueError):
            pass
        self.frames.put(None)  # the end of the pipe: after "done", or a crash

    def messages(self) -> Iterator[tuple]:
        if self.proc is None:
            yield from junit_batches(self.path, **self.args)
            return
        while True:
            data = self.frames.get()
            if data is None:
                self._died()
            msg = pickle.loads(data)
            if msg[0] == "error":
                raise InputError(msg[1], file=msg[2], field=msg[3])
            yield msg
            if msg[0] == "done":
                return

    def _died(self) -> None:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - 4000))
        lines = [ln for ln in self.stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        why = f": {lines[-1].strip()}" if lines else ""
        raise InfraError(
            f"{self.path}: the JUnit reader process ended before the end of the file (exit code {rc}){why}; "
            "nothing was stored"
        )

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()  # the ingest failed while the child was still reading
        self.proc.wait()
        while self.pump.is_alive():  # let the thread see the end of the pipe: make room for its last put
            try:
                self.frames.get(timeout=0.1)
            except queue.Empty:
                pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()
        self.proc = None


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
    """Test rows -> ``tests.id``: insert-if-absent (the test may be stored already, or a concurrent ingest may
    have created it a moment ago), then read the ids back. Nothing is kept between batches: a file's rows name
    each test once, and a dict of every key of a 100k-test file cost ~15 MiB."""

    def __init__(self, session: Session):
        self.s = session
        self.conn = session.connection()
        self.ph = "?" if self.conn.dialect.paramstyle == "qmark" else "%s"
        self.now = _datetime_bind(session, tm.TestCase.__table__.c.first_seen_at)(m.utcnow())
        self.scratch = False
        self.look_first = True

    def add(self, tests: list[tuple]) -> list[int]:
        """The ids of the test rows ``tests`` (``_TEST_COLS``, distinct keys), in order."""
        if not tests:
            return []
        if self.conn.dialect.name == "postgresql":
            found = self._insert_pg(tests)
        else:
            # the ingest holds SQLite's write lock (BEGIN IMMEDIATE): the rows past the largest id are ours,
            # read back in one statement; only keys that already existed are looked up by hash
            (top,) = self.conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM tests").one()
            now = self.now
            _Bulk(self.s, tm.TestCase.__table__, (*_TEST_COLS, "first_seen_at"), " ON CONFLICT (key_hash) DO NOTHING")(
                [(*t, now) for t in tests]
            )
            found = self.conn.exec_driver_sql("SELECT id, key_hash FROM tests WHERE id > ?", (top,)).all()
            if len(found) < len(tests):
                inserted = {h for _, h in found}
                found += self._by_hash([t[0] for t in tests if t[0] not in inserted])
        by_hash = {h: pk for pk, h in found}
        return [by_hash[t[0]] for t in tests]

    def _by_hash(self, hashes: list[str]) -> list[tuple[int, str]]:
        found: list[tuple[int, str]] = []
        for i in range(0, len(hashes), _LOOKUP_CHUNK):
            chunk = hashes[i : i + _LOOKUP_CHUNK]
            sql = f"SELECT id, key_hash FROM tests WHERE key_hash IN ({', '.join([self.ph] * len(chunk))})"
            found += self.conn.exec_driver_sql(sql, tuple(chunk)).all()
        return found

    def _insert_pg(self, new: list[tuple]) -> list[tuple[int, str]]:
        """``COPY`` into a scratch table, insert-if-absent from it ``RETURNING`` the new ids; the keys already
        stored (or inserted by a concurrent ingest in between) read back by a join. Measured on 97k new tests:
        1.3 s; the same from ``unnest`` arrays 3 s, from a multi-row ``VALUES`` 5 s. While batches keep finding
        stored keys (the steady CI case), they are looked up first and only the rest go through the scratch."""
        cols = ", ".join(f'"{c}"' for c in (*_TEST_COLS, "first_seen_at"))
        raw = self.conn.connection.driver_connection
        known: list[tuple[int, str]] = []
        if self.look_first:
            # a steady CI run stores next to nothing new: look the keys up by index, insert only the rest
            with raw.cursor() as cur:
                cur.execute("SELECT id, key_hash FROM tests WHERE key_hash = ANY(%s)", ([t[0] for t in new],))
                known = cur.fetchall()
            self.look_first = bool(known)  # a fresh file's first batch finds none: insert first from then on
            if len(known) == len(new):
                return known
            stored = {h for _, h in known}
            new = [t for t in new if t[0] not in stored]
        if not self.scratch:
            self.conn.exec_driver_sql(
                f"CREATE TEMP TABLE guardrail_new_tests ON COMMIT DROP AS SELECT {cols} FROM tests WITH NO DATA"
            )
            self.scratch = True
        else:
            self.conn.exec_driver_sql("TRUNCATE guardrail_new_tests")
        now = self.now
        with raw.cursor() as cur:
            with cur.copy(f"COPY guardrail_new_tests ({cols}) FROM STDIN") as cp:
                for row in new:
                    cp.write_row((*row, now))
            cur.execute(
                f"INSERT INTO tests ({cols}) SELECT {cols} FROM guardrail_new_tests "
                "ON CONFLICT (key_hash) DO NOTHING RETURNING id, key_hash"
            )
            found: list[tuple[int, str]] = cur.fetchall()
            if len(found) < len(new):  # keys stored before (a steady CI run: nearly all of them)
                # without statistics on the scratch table the join below was planned as a scan of all tests
                cur.execute("ANALYZE guardrail_new_tests")
                cur.execute(
                    "SELECT t.id, t.key_hash FROM tests t JOIN guardrail_new_tests n ON n.key_hash = t.key_hash"
                )
                found = cur.fetchall()
        return known + found


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
    """Writes the verdicts that :func:`junit_batches` grouped straight from the file's attempts, for the common
    case -- one new file, the only run of its commit pair -- so that nothing is read back."""

    def __init__(self, session: Session, run: m.Run, pk: str, head: str | None, base: str | None):
        at = _datetime_bind(session, tm.TestVerdictRow.__table__.c.at)(run.started_at)
        self.common = (pk, head, base, run.id, run.lane, run.hardware, at)
        self.insert_rows = _Bulk(session, tm.TestVerdictRow.__table__, _VERDICT_INSERT_COLS)
        self.total = 0
        self.kinds: Counter[str] = Counter()  # verdicts written, by kind (the infrastructure-failure rule's input)

    def write(self, verdicts: list[tuple], pks: list[int]) -> None:
        """``verdicts`` name their test by its number in the file; ``pks`` are the file's test ids by number."""
        common, kinds = self.common, self.kinds
        self.insert_rows([(pks[v[0]], *common, *v[1:], False) for v in verdicts])
        for v in verdicts:
            kinds[v[1]] += 1
        self.total += len(verdicts)


def _store_file(
    session: Session,
    parsed: _Parsed,
    report: tm.TestReport,
    run: m.Run,
    ids: _TestIds,
    *,
    job_attempt: int,
    run_is_new: bool,
    fresh: _FreshVerdicts | None = None,
) -> tuple[int, dict[str, int], list[str], bool]:
    """Stream one file into ``test_executions`` (and its verdicts through ``fresh``); returns (executions,
    verdict counts, suite names, whether ``fresh`` got every verdict)."""
    n = 0
    insert_rows = _Bulk(session, tm.TestExecution.__table__, _EXEC_INSERT_COLS)
    run_id, report_id = run.id, report.id
    id_of: list[int] = []  # the file's test ids, by test number
    for msg in parsed.messages():
        if msg[0] == "done":
            _, counts, suites, complete = msg
            return n, counts, suites, complete
        _, tests, execs, verdicts = msg
        id_of += ids.add(tests)
        if run_is_new:
            rows = [(id_of[e[0]], run_id, report_id, *e[1:]) for e in execs]
        else:
            # A test seen again in the same run and job attempt (another file: a rerun round) ran in a fresh
            # process: number its process attempt after the ones stored.
            pks = [id_of[e[0]] for e in execs]
            earlier: dict[int, int] = {}
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
            rows = [
                (pk, run_id, report_id, e[1], earlier[pk] + e[2] if pk in earlier else e[2], *e[3:])
                for pk, e in zip(pks, execs, strict=True)
            ]
        insert_rows(rows)
        n += len(rows)
        if fresh is not None and verdicts:
            fresh.write(verdicts, id_of)
    raise AssertionError("junit_batches ends with a done message")  # pragma: no cover


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


class _Kind(NamedTuple):
    verdict: str


def _mark_infra(
    session: Session, pk: str, runs: dict[int, Any], policy: FlakinessPolicy, fresh: _FreshVerdicts | None = None
) -> dict[int, str]:
    """Flag the verdicts of runs that :func:`run_infra_failure` calls infrastructure failures. ``fresh``: the
    pair's only run was just written, none flagged, and its verdict kinds counted -- nothing to read back."""
    # a verdict may have moved to a newer run: judge every run of the pair afresh
    # (only rows that change: an UPDATE rewrites every row it touches on PostgreSQL)
    V = tm.TestVerdictRow
    if fresh is None:
        session.execute(update(V).where(V.pair_key == pk, V.infra_excluded.is_(True)).values(infra_excluded=False))
    infra: dict[int, str] = {}
    for rid in runs:
        if fresh is not None:
            verdicts: Any = (_Kind(k) for k, n in fresh.kinds.items() for _ in range(n))
        else:
            verdicts = session.execute(select(V.verdict).where(V.pair_key == pk, V.run_id == rid))
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

    files = expand_paths(paths, (".xml",))
    src = source or Source()
    job_attempt = (src.ci.attempt if src.ci and src.ci.attempt else None) or 1
    # a single file's verdicts are grouped as it is read (used when it turns out to be the pair's only run)
    verdicts = len(files) == 1
    parsers: dict[Path, _Parsed] = {}
    if files:  # started first: the parse overlaps the hashing and the database set-up below
        parsers[files[0]] = _Parsed(files[0], job_attempt=job_attempt, hardware=hardware, verdicts=verdicts)
    try:
        return _ingest(db_url, files, parsers, src, job_attempt, verdicts, lane, hardware, started_at, policy)
    finally:
        for p in parsers.values():
            p.close()


def _ingest(
    db_url: str,
    files: list[Path],
    parsers: dict[Path, _Parsed],
    src: Source,
    job_attempt: int,
    verdicts: bool,
    lane: str | None,
    hardware: str | None,
    started_at: datetime | None,
    policy: FlakinessPolicy | None,
) -> IngestReport:
    from guardrail.store.db import session_scope
    from guardrail.store.writer import _Cache, run_key

    hashes = [(f, file_hash(f)) for f in files]
    run_doc = _RunDoc(
        run=RunInfo(lane=lane or DEFAULT_LANE, started_at=started_at or m.utcnow(), source=src),
        environment=SimpleNamespace(hardware=hardware or DEFAULT_HARDWARE),
    )
    key = run_key(run_doc)  # type: ignore[arg-type]  # duck-typed: reads .run and .environment.hardware
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
            fresh = _FreshVerdicts(session, run, pk, head, base)
        stored_reports: list[int] = []
        complete = False
        for path, content in to_store:
            rep = tm.TestReport(run_id=run.id, content_hash=content, path=str(path))
            session.add(rep)
            session.flush()
            stored_reports.append(rep.id)
            parsed = parsers.get(path)
            if parsed is None:
                parsed = parsers[path] = _Parsed(path, job_attempt=job_attempt, hardware=hardware, verdicts=verdicts)
            n, counts, suites, complete = _store_file(
                session, parsed, rep, run, ids, job_attempt=job_attempt, run_is_new=run_is_new, fresh=fresh
            )
            parsed.close()
            run_is_new = False  # later files of this invocation may rerun tests of earlier ones
            rep.executions, rep.tests = n, sum(counts.values())
            status = f"{counts['passed']} passed, {counts['failed']} failed, {counts['flaky']} flaky"
            if counts["skipped"]:
                status += f", {counts['skipped']} skipped"
            names = [x for x in suites if x]
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
        if fresh is not None and complete:
            infra = _mark_infra(session, pk, runs, policy or FlakinessPolicy(), fresh)
            grouped = {"verdicts": fresh.total, "infra": infra}
        else:
            if fresh is not None:  # a test's attempts were not contiguous: start over from the store
                session.execute(delete(tm.TestVerdictRow).where(tm.TestVerdictRow.pair_key == pk))
            grouped = regroup_pair(session, run, policy, reports=stored_reports)
        for s in report.stored:
            s["verdicts"] = grouped["verdicts"]
            if run.id in grouped["infra"]:
                s["infra_failure"] = grouped["infra"][run.id]
    return report
