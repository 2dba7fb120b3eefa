"""Issue 13 point 1: concurrent JUnit ingests of one commit pair (several CI jobs, one run each, the same tests)
lose no verdict and fail none: each test gets one verdict over every job's attempts. Real processes released
together by a barrier, on PostgreSQL and on SQLite."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from guardrail.store import junit_models as tm
from guardrail.store.db import session_scope, upgrade

PROCS, TESTS = 6, 300


def _write(path: Path, proc: int) -> Path:
    # every job runs the same tests; test_0 fails in job 0 only (flaky over the pair), the rest pass
    cases = []
    for i in range(TESTS):
        fail = '<failure message="AssertionError: boom">x</failure>' if i == 0 and proc == 0 else ""
        cases.append(f'<testcase classname="tests.test_r" name="test_{i}" time="0.01">{fail}</testcase>')
    path.write_text(f'<testsuites><testsuite name="pytest">{"".join(cases)}</testsuite></testsuites>')
    return path


def _ingest(url: str, path: str, proc: int, barrier) -> tuple[int, str]:
    from guardrail.errors import GuardrailError
    from guardrail.ingest.junit_writer import ingest_junit
    from guardrail.schema import CIInfo, Source

    src = Source(
        repo="org/p", commit="c0ffee1", base_commit="ba5e", ci=CIInfo(provider="github-actions", run_id=f"job-{proc}")
    )
    barrier.wait()
    try:
        report = ingest_junit(url, [Path(path)], source=src, lane="tests", hardware="H100")
    except GuardrailError as exc:
        return -1, str(exc)
    except Exception as exc:  # the race's UniqueViolation: reported, not raised through the pool
        return -1, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return len(report.stored), ""


def _race(url: str, tmp_path: Path) -> list[tuple[int, str]]:
    upgrade(url)
    files = [str(_write(tmp_path / f"job{p}.xml", p)) for p in range(PROCS)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCS)
        with ProcessPoolExecutor(PROCS, mp_context=ctx) as pool:
            return list(pool.map(_ingest, [url] * PROCS, files, range(PROCS), [barrier] * PROCS))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_concurrent_jobs_of_one_pair_lose_no_verdict(request, tmp_path, backend):
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    outcomes = _race(url, tmp_path)
    assert outcomes == [(1, "")] * PROCS, outcomes
    with session_scope(url) as s:
        rows = s.execute(
            select(tm.CaseRow.name, tm.CaseVerdictRow.verdict, tm.CaseVerdictRow.attempts)
            .join(tm.CaseRow, tm.CaseRow.id == tm.CaseVerdictRow.test_pk)
            .where(tm.CaseVerdictRow.pair_key == tm.pair_key("c0ffee1", "ba5e", 0))
        ).all()
    assert len(rows) == TESTS  # one verdict per test for the pair: none lost, none twice
    by_name = {name: (verdict, attempts) for name, verdict, attempts in rows}
    assert by_name["test_0"] == ("flaky", PROCS)
    assert {v for n, v in by_name.items() if n != "test_0"} == {("pass", PROCS)}
