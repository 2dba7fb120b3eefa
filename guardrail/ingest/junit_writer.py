"""Storing JUnit results: ``guardrail ingest --format junit``.

One transaction per invocation. Each file is hashed first (re-ingesting the same file for the same CI run
and attempt is a no-op that says so), then streamed through :func:`guardrail.ingest.junit_batches.junit_batches`
(in a reader process for a large file: :mod:`guardrail.ingest.junit_process`) and written in batches below the
ORM (flat memory for 100k test cases). A broken or hostile file raises :class:`InputError` from inside the
transaction, which rolls everything back: nothing is written. After the files, the verdicts of the run's
(head commit, base commit) pair are regrouped over every attempt of that pair (all job attempts, all
fresh-process reruns) and replaced (:mod:`guardrail.ingest.junit_pair_verdicts`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from guardrail.errors import InputError
from guardrail.ingest import expand_paths
from guardrail.ingest.documents import IngestReport
from guardrail.ingest.junit_pair_verdicts import FreshVerdicts, mark_infra, pair_runs, regroup_pair
from guardrail.ingest.junit_process import ParsedFile
from guardrail.rerun_policy import FlakinessPolicy
from guardrail.schema import RunInfo, Source
from guardrail.store import junit_models as jm
from guardrail.store import models as m
from guardrail.store.bulk_insert import BulkInsert
from guardrail.store.case_ids import CaseIds
from guardrail.store.shared_rows import SharedRows, insert_if_absent, run_key

DEFAULT_LANE = "tests"
DEFAULT_HARDWARE = "any"
BATCH = 5000  # executions per message from the reader, and attempts per regrouping
_SQLITE_CACHE_KIB = 16 * 1024  # page cache of the ingesting connection (bounded; grows only as used)
_LOOKUP_CHUNK = 500  # keys per IN (...) lookup: well under SQLite's bound-parameter limit
# Files at least this large are parsed in a child process while this one writes; below it, a process start
# (~0.1 s) would cost more than the overlap saves.
CHILD_MIN_BYTES = 2 << 20
# PostgreSQL: the transaction-level advisory lock (PAIR_LOCK_CLASS, hashtext(pair key)) one ingest holds while it
# writes a commit pair's verdicts (see _lock_pair).
PAIR_LOCK_CLASS = 0x67727670  # "grvp"

_EXEC_INSERT_COLS = (
    "test_pk", "run_id", "report_id", "job_attempt", "process_attempt", "inprocess_attempt", "outcome",
    "duration_s", "phase", "failure_type", "message", "signature", "source", "final", "properties", "system_out",
)  # fmt: skip


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=str(path)) from None
    return "sha256:" + h.hexdigest()


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

    def parse(path: Path) -> ParsedFile:
        return ParsedFile(
            path, job_attempt=job_attempt, hardware=hardware, verdicts=verdicts, batch=BATCH,
            child_min_bytes=CHILD_MIN_BYTES,
        )  # fmt: skip

    parsers: dict[Path, ParsedFile] = {}
    if files:  # started first: the parse overlaps the hashing and the database set-up below
        parsers[files[0]] = parse(files[0])
    run = RunInfo(lane=lane or DEFAULT_LANE, started_at=started_at or m.utcnow(), source=src)
    try:
        return _ingest(db_url, files, parsers, parse, run, hardware or DEFAULT_HARDWARE, job_attempt, policy)
    finally:
        for p in parsers.values():
            p.close()


def _ingest(
    db_url: str,
    files: list[Path],
    parsers: dict[Path, ParsedFile],
    parse: Callable[[Path], ParsedFile],
    run_info: RunInfo,
    run_hardware: str,
    job_attempt: int,
    policy: FlakinessPolicy | None,
) -> IngestReport:
    from guardrail.store.db import session_scope

    hashes = [(f, file_hash(f)) for f in files]
    report = IngestReport()
    with session_scope(db_url, write=True) as session:
        if session.get_bind().dialect.name == "sqlite":
            # 100k random-order index inserts: with the default 2 MB page cache, SQLite spills dirty pages to
            # the WAL and reads them back over and over. This connection only; reset when the ingest ends.
            session.connection().exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
        to_store: list[tuple[Path, str]] = []
        for path, content in hashes:
            found = _existing_report(session, run_info, run_hardware, content)
            if found is None and content not in {c for _, c in to_store}:
                to_store.append((path, content))
                continue
            report.skipped.append(
                {"file": str(path), "workload": path.name, "hardware": run_hardware, "status": "already stored",
                 "run_id": found[1] if found else None,
                 "reason": "already stored (same file content for the same run)"}
            )  # fmt: skip
        if not to_store:
            return report
        run, run_is_new = SharedRows(session).run(run_info, run_hardware)
        session.flush()
        _lock_pair(session, run)
        for s in report.skipped:
            s["run_id"] = s["run_id"] or run.id
        head, base, pk, runs = pair_runs(session, run)
        fresh = None
        if run_is_new and len(to_store) == 1 and list(runs) == [run.id]:
            fresh = FreshVerdicts(session, run, pk, head, base)
        ids = CaseIds(session)
        stored_reports: list[int] = []
        complete = False
        for path, content in to_store:
            # a concurrent ingest of the same file for the same run: the insert waits for it, then does nothing
            values = {"run_id": run.id, "content_hash": content, "path": str(path), "process_attempt": 1,
                      "executions": 0, "tests": 0, "created_at": m.utcnow()}  # fmt: skip
            rep_id = session.scalar(insert_if_absent(session, jm.ReportRow, values))
            if rep_id is None:
                report.skipped.append(
                    {"file": str(path), "workload": path.name, "hardware": run_hardware, "status": "already stored",
                     "run_id": run.id, "reason": "already stored (same file content for the same run)"}
                )  # fmt: skip
                continue
            rep = session.get_one(jm.ReportRow, rep_id)
            stored_reports.append(rep.id)
            parsed = parsers.get(path)
            if parsed is None:
                parsed = parsers[path] = parse(path)
            n, counts, suites, complete = _store_file(
                session, parsed, rep, run, ids, job_attempt=job_attempt, run_is_new=run_is_new, fresh=fresh
            )
            parsed.close()
            run_is_new = False  # later files of this invocation may rerun tests of earlier ones
            rep.executions, rep.tests = n, sum(counts.values())
            report.stored.append(_stored_entry(path, run, rep, n, counts, suites))
        session.flush()
        if not stored_reports:  # a concurrent ingest stored every file first
            return report
        grouped: dict[str, Any]
        if fresh is not None and complete:
            infra = mark_infra(session, pk, runs, policy or FlakinessPolicy(), fresh)
            grouped = {"verdicts": fresh.total, "infra": infra}
        else:
            if fresh is not None:  # a test's attempts were not contiguous: start over from the store
                session.execute(delete(jm.CaseVerdictRow).where(jm.CaseVerdictRow.pair_key == pk))
            grouped = regroup_pair(session, run, policy, batch=BATCH, reports=stored_reports)
        for s in report.stored:
            s["verdicts"] = grouped["verdicts"]
            if run.id in grouped["infra"]:
                s["infra_failure"] = grouped["infra"][run.id]
    return report


def _lock_pair(session: Session, run: m.Run) -> None:
    """One ingest at a time writes a commit pair's verdicts. Several CI jobs of one commit pair (shards, job
    attempts, hardware) each regroup the pair's verdicts over every stored attempt: concurrently, on PostgreSQL
    each would miss the others' uncommitted runs, take the "only run of the pair" path or insert the same
    (test, pair) row, and all but one failed with a UniqueViolation on test_verdicts. Taken after the run row,
    before this ingest reads the pair's runs or creates any test row, and held to commit: a waiting ingest then
    reads the pair as the first one committed it (READ COMMITTED: each statement sees the latest commits).
    SQLite needs none: the ingest's BEGIN IMMEDIATE already makes writers take turns."""
    if session.get_bind().dialect.name != "postgresql":
        return
    pk = jm.pair_key(run.commit.sha if run.commit is not None else None, run.base_commit, run.id)
    session.execute(text("SELECT pg_advisory_xact_lock(:c, hashtext(:pk))"), {"c": PAIR_LOCK_CLASS, "pk": pk})


def _stored_entry(
    path: Path, run: m.Run, rep: jm.ReportRow, executions: int, counts: dict[str, int], suites: list[str]
) -> dict[str, Any]:
    """What the ingest report says of one stored file."""
    status = f"{counts['passed']} passed, {counts['failed']} failed, {counts['flaky']} flaky"
    if counts["skipped"]:
        status += f", {counts['skipped']} skipped"
    names = [x for x in suites if x]
    return {
        "file": str(path),
        "workload": ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "") if names else path.name,
        "status": status,
        "hardware": run.hardware,
        "run_id": run.id,
        "lane": run.lane,
        "tests": rep.tests,
        "executions": executions,
        **counts,
    }


def _existing_report(session: Session, run: RunInfo, hardware: str, content: str) -> tuple[int, int] | None:
    """(report id, run id) when this file's content is already stored for the same run identity.

    With a CI run id the run key decides; without one (a local ingest), the same content for the same
    lane, hardware, commit and PR counts as the same report.
    """
    q = select(jm.ReportRow.id, jm.ReportRow.run_id).join(m.Run, m.Run.id == jm.ReportRow.run_id)
    q = q.where(jm.ReportRow.content_hash == content)
    src = run.source
    if src.ci and src.ci.run_id:
        q = q.where(m.Run.run_key == run_key(run, hardware))
    else:
        q = q.where(
            m.Run.lane == run.lane,
            m.Run.hardware == hardware,
            m.Run.ci_run_id.is_(None),
            m.Run.pr.is_(None) if src.pr is None else m.Run.pr == src.pr,
        )
        if src.commit:
            q = q.join(m.Commit, m.Commit.id == m.Run.commit_id).where(m.Commit.sha == src.commit)
        else:
            q = q.where(m.Run.commit_id.is_(None))
    row = session.execute(q.limit(1)).first()
    return (row[0], row[1]) if row else None


def _store_file(
    session: Session,
    parsed: ParsedFile,
    report: jm.ReportRow,
    run: m.Run,
    ids: CaseIds,
    *,
    job_attempt: int,
    run_is_new: bool,
    fresh: FreshVerdicts | None = None,
) -> tuple[int, dict[str, int], list[str], bool]:
    """Stream one file into ``test_executions`` (and its verdicts through ``fresh``); returns (executions,
    verdict counts, suite names, whether ``fresh`` got every verdict)."""
    n = 0
    insert_rows = BulkInsert(session, jm.ExecutionRow.__table__, _EXEC_INSERT_COLS)
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
            earlier = _earlier_process_attempts(session, run_id, report_id, job_attempt, pks)
            rows = [
                (pk, run_id, report_id, e[1], earlier[pk] + e[2] if pk in earlier else e[2], *e[3:])
                for pk, e in zip(pks, execs, strict=True)
            ]
        insert_rows(rows)
        n += len(rows)
        if fresh is not None and verdicts:
            fresh.write(verdicts, id_of)
    raise AssertionError("junit_batches ends with a done message")  # pragma: no cover


def _earlier_process_attempts(
    session: Session, run_id: int, report_id: int, job_attempt: int, pks: list[int]
) -> dict[int, int]:
    """{test id: its highest process attempt stored for this run and job attempt by other reports}."""
    E = jm.ExecutionRow
    earlier: dict[int, int] = {}
    uniq = sorted(set(pks))
    for i in range(0, len(uniq), _LOOKUP_CHUNK):
        q = (
            select(E.test_pk, func.max(E.process_attempt))
            .where(
                E.run_id == run_id,
                E.job_attempt == job_attempt,
                E.report_id != report_id,
                E.test_pk.in_(uniq[i : i + _LOOKUP_CHUNK]),
            )
            .group_by(E.test_pk)
        )
        earlier.update({pk: attempt for pk, attempt in session.execute(q)})
    return earlier
