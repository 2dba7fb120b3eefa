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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from guardrail.analysis.flaky import FlakinessPolicy, run_infra_failure
from guardrail.errors import InputError
from guardrail.ingest import IngestReport, expand_paths
from guardrail.ingest.junit import iter_junit
from guardrail.ingest.junit_model import FAILED, TestCaseRecord, TestIdentity
from guardrail.ingest.junit_verdicts import group_verdicts
from guardrail.schema import RunInfo, Source
from guardrail.store import models as m
from guardrail.store import test_models as tm

DEFAULT_LANE = "tests"
DEFAULT_HARDWARE = "any"
BATCH = 5000
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


class _TestIds:
    """test key -> ``tests.id``, created on first sight (concurrent ingests: insert-if-absent, then read)."""

    def __init__(self, session: Session):
        self.s = session
        self.ids: dict[str, int] = {}
        self.dialect = session.get_bind().dialect.name

    def resolve(self, idents: Iterable[TestIdentity]) -> None:
        missing: dict[str, TestIdentity] = {}
        for ident in idents:
            k = ident.key
            if k not in self.ids and k not in missing:
                missing[k] = ident
        if not missing:
            return
        by_hash = {key_hash(k): k for k in missing}
        self._read(by_hash)
        new = [
            {
                "key_hash": h,
                "key": k,
                "test_id": missing[k].id,
                "suite": missing[k].suite,
                "file": missing[k].file,
                "classname": missing[k].classname,
                "name": missing[k].name,
                "params": missing[k].params,
                "hardware": missing[k].hardware,
                "first_seen_at": m.utcnow(),
            }
            for h, k in by_hash.items()
            if k not in self.ids
        ]
        if new:
            if self.dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as dialect_insert
            else:
                from sqlalchemy.dialects.sqlite import insert as dialect_insert
            self.s.execute(
                dialect_insert(tm.TestCase.__table__).on_conflict_do_nothing(index_elements=["key_hash"]), new
            )
            self._read({r["key_hash"]: r["key"] for r in new})

    def _read(self, by_hash: dict[str, str]) -> None:
        hashes = list(by_hash)
        for i in range(0, len(hashes), _LOOKUP_CHUNK):
            chunk = hashes[i : i + _LOOKUP_CHUNK]
            for pk, h in self.s.execute(
                select(tm.TestCase.id, tm.TestCase.key_hash).where(tm.TestCase.key_hash.in_(chunk))
            ):
                self.ids[by_hash[h]] = pk


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
) -> tuple[int, dict[str, int], set[str]]:
    """Stream one file into ``test_executions``; returns (executions, verdict counts, suite names)."""
    # per test: bit 1 an attempt passed, 2 an attempt failed, 4 skipped -- enough for the file's summary
    seen: dict[int, int] = {}
    suites: set[str] = set()
    n = 0
    for batch in _batched(iter_junit(path, job_attempt=job_attempt, hardware=hardware), BATCH):
        ids.resolve(r.identity for r in batch)
        pks = [ids.ids[r.identity.key] for r in batch]
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
        for r, pk in zip(batch, pks, strict=True):
            suites.add(r.identity.suite)
            bit = 4 if r.outcome == "skip" else 2 if r.outcome in FAILED else 1
            seen[pk] = seen.get(pk, 0) | bit
            rows.append(
                {
                    "test_pk": pk,
                    "run_id": run.id,
                    "report_id": report.id,
                    "job_attempt": r.job_attempt,
                    "process_attempt": earlier[pk] + r.process_attempt if pk in earlier else r.process_attempt,
                    "inprocess_attempt": r.inprocess_attempt,
                    "outcome": r.outcome,
                    "duration_s": r.duration_s,
                    "phase": r.phase,
                    "failure_type": r.failure_type,
                    "message": r.message,
                    "signature": r.signature,
                    "source": r.source,
                    "final": r.final,
                    "properties": dict(r.properties) if r.properties else None,
                    "system_out": r.system_out,
                }
            )
        session.execute(insert(tm.TestExecution.__table__), rows)  # Core executemany, not ORM bulk
        n += len(rows)
    counts = {"passed": 0, "failed": 0, "flaky": 0, "skipped": 0}
    for bits in seen.values():
        ran = bits & 3
        counts["flaky" if ran == 3 else "failed" if ran == 2 else "passed" if ran == 1 else "skipped"] += 1
    return n, counts, suites


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


def regroup_pair(session: Session, run: m.Run, policy: FlakinessPolicy | None = None) -> dict[str, Any]:
    """Replace the verdicts of ``run``'s (head, base) pair, regrouped over every attempt of the pair.

    Streams the pair's executions ordered by test, groups one test at a time with
    :func:`group_verdicts`, inserts in batches; then marks the runs that :func:`run_infra_failure` calls
    infrastructure failures. Returns {"verdicts": n, "infra": {run_id: reason}}.
    """
    policy = policy or FlakinessPolicy()
    head = run.commit.sha if run.commit is not None else None
    base = run.base_commit
    pk = pair_key(head, base, run.id)
    runs_q = select(m.Run.id, m.Run.started_at, m.Run.lane, m.Run.hardware)
    if head:
        runs_q = runs_q.join(m.Commit, m.Commit.id == m.Run.commit_id).where(m.Commit.sha == head)
        runs_q = runs_q.where(m.Run.base_commit.is_(None) if base is None else m.Run.base_commit == base)
    else:
        runs_q = runs_q.where(m.Run.id == run.id)
    runs = {r.id: r for r in session.execute(runs_q)}
    session.execute(delete(tm.TestVerdictRow).where(tm.TestVerdictRow.pair_key == pk))

    q = (
        select(*_EXEC_COLS)
        .where(tm.TestExecution.run_id.in_(list(runs)))
        .order_by(
            tm.TestExecution.test_pk,
            tm.TestExecution.job_attempt,
            tm.TestExecution.process_attempt,
            tm.TestExecution.inprocess_attempt,
            tm.TestExecution.id,
        )
        .execution_options(yield_per=BATCH)
    )
    rows: list[dict[str, Any]] = []
    total = 0

    def emit(test_pk: int, recs: list[TestCaseRecord], run_ids: set[int]) -> None:
        (v,) = group_verdicts(recs, head_commit=head, base_commit=base)
        newest = max((runs[i] for i in run_ids), key=lambda r: (r.started_at, r.id))
        rows.append(
            {
                "test_pk": test_pk,
                "pair_key": pk,
                "head_commit": head,
                "base_commit": base,
                "run_id": newest.id,
                "lane": newest.lane,
                "hardware": newest.hardware,
                "at": newest.started_at,
                "verdict": v.verdict,
                "final_outcome": v.final_outcome,
                "attempts": v.attempts,
                "failed_attempts": v.failed_attempts,
                "signatures": list(v.signatures),
                "duration_s": v.duration_s,
                "rerun_duration_s": v.rerun_duration_s,
                "process_attempts": v.process_attempts,
                "infra_excluded": False,
            }
        )

    def flush() -> None:
        nonlocal total
        if rows:
            session.execute(insert(tm.TestVerdictRow.__table__), rows)
            total += len(rows)
            rows.clear()

    current: int | None = None
    recs: list[TestCaseRecord] = []
    run_ids: set[int] = set()
    ident = TestIdentity("", None, None, "")  # grouping is per test already: one identity will do
    for e in session.execute(q):
        if e.test_pk != current:
            if recs:
                emit(current, recs, run_ids)  # type: ignore[arg-type]
                if len(rows) >= BATCH:
                    flush()
            current, recs, run_ids = e.test_pk, [], set()
        run_ids.add(e.run_id)
        recs.append(
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
    if recs:
        emit(current, recs, run_ids)  # type: ignore[arg-type]
    flush()

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
    return {"verdicts": total, "infra": infra}


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
        cache = _Cache(session)
        ids = _TestIds(session)
        run: m.Run | None = None
        run_is_new = False
        done: set[str] = set()
        for path, content in hashes:
            entry = {"file": str(path), "workload": path.name, "hardware": run_doc.environment.hardware}
            found = _existing_report(session, run_doc, key, content)
            if found or content in done:
                rid = found[1] if found else run.id  # type: ignore[union-attr]
                report.skipped.append(
                    {**entry, "status": "already stored", "run_id": rid,
                     "reason": "already stored (same file content for the same run)"}
                )  # fmt: skip
                continue
            if run is None:
                run, run_is_new = cache.run(run_doc)  # type: ignore[arg-type]
                session.flush()
            done.add(content)
            rep = tm.TestReport(run_id=run.id, content_hash=content, path=str(path))
            session.add(rep)
            session.flush()
            n, counts, suites = _store_file(
                session, path, rep, run, ids, job_attempt=job_attempt, hardware=hardware, run_is_new=run_is_new
            )
            run_is_new = False  # later files of this invocation may rerun tests of earlier ones
            rep.executions, rep.tests = n, sum(counts.values())
            status = f"{counts['passed']} passed, {counts['failed']} failed, {counts['flaky']} flaky"
            if counts["skipped"]:
                status += f", {counts['skipped']} skipped"
            names = sorted(s for s in suites if s)
            report.stored.append(
                {
                    **entry,
                    "workload": ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
                    if names
                    else path.name,
                    "status": status,
                    "run_id": run.id,
                    "lane": run.lane,
                    "tests": rep.tests,
                    "executions": n,
                    **{k: v for k, v in counts.items()},
                }
            )
        if run is not None:
            session.flush()
            grouped = regroup_pair(session, run, policy)
            for s in report.stored:
                s["verdicts"] = grouped["verdicts"]
                if run.id in grouped["infra"]:
                    s["infra_failure"] = grouped["infra"][run.id]
    return report
