"""Concurrent `guardrail ingest --db` processes creating the same new workload, environment and commit: every
result stored exactly once, no process fails (issue 13 point 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from guardrail.store import models as m
from guardrail.store.db import session_scope, upgrade
from tests.factories import result_doc, write

PROCS, PER_PROC = 6, 5


def _files(tmp_path: Path, proc: int, *, shared_run: bool) -> list[Path]:
    # every process: the same workloads, commit and environment; its own run (CI job) unless shared_run
    out = []
    for j in range(PER_PROC):
        doc = result_doc(
            workload=f"w{j}",
            run_id="4242" if shared_run else f"job-{proc}",
            metrics={"denoise_step_latency": [[100.0 + proc, 101.0 + j]], "peak_memory": [[10.0 + proc]]},
        )
        out.append(write(tmp_path / f"p{proc}" / f"r{j}.json", doc))
    return out


def _ingest_all(url: str, batches: list[list[Path]]) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "guardrail", "ingest", "--db", url, *map(str, files)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for files in batches
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _counts(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        return {
            name: s.scalar(select(func.count()).select_from(model)) or 0
            for name, model in [
                ("results", m.Result),
                ("workloads", m.Workload),
                ("environments", m.Environment),
                ("commits", m.Commit),
                ("runs", m.Run),
                ("series", m.Series),
                ("measurements", m.Measurement),
            ]
        }


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_concurrent_ingests_store_every_result_once(backend, request, tmp_path):
    # SQLite: a new file, so the processes also race on the first use
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    if backend == "postgresql":
        upgrade(url)
    done = _ingest_all(url, [_files(tmp_path, i, shared_run=False) for i in range(PROCS)])
    assert [(p.returncode, p.stderr.strip()[-300:]) for p in done] == [(0, "")] * PROCS
    assert _counts(url) == {
        "results": PROCS * PER_PROC,
        "workloads": PER_PROC,
        "environments": 1,
        "commits": 1,
        "runs": PROCS,
        "series": 2 * PER_PROC,
        "measurements": 2 * PROCS * PER_PROC,
    }


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_concurrent_reingest_of_the_same_results_stores_them_once(backend, request, tmp_path):
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    if backend == "postgresql":
        upgrade(url)
    same = _files(tmp_path, 0, shared_run=True)
    done = _ingest_all(url, [same] * PROCS)
    assert [p.returncode for p in done] == [0] * PROCS, [p.stderr[-300:] for p in done]
    assert _counts(url)["results"] == PER_PROC
    assert _counts(url)["runs"] == 1
    # one process stored them, the others said they were there already
    said_skipped = sum("already stored" in p.stdout + p.stderr for p in done)
    assert said_skipped >= PROCS - 1


def _ingest_junit_once(url: str, path: str) -> tuple[int, int]:
    from guardrail.ingest.junit_writer import ingest_junit
    from guardrail.schema import CIInfo, Source

    src = Source(repo="org/p", commit="c0ffee1", ci=CIInfo(provider="github-actions", run_id="900", attempt=1))
    report = ingest_junit(url, [Path(path)], source=src, lane="npu", hardware="Ascend910B3")
    return len(report.stored), len(report.skipped)


@pytest.mark.postgres
def test_concurrent_ingests_of_one_junit_file_store_it_once(pg_url):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from guardrail.store import junit_models as jm

    upgrade(pg_url)
    path = str(Path(__file__).parent / "fixtures" / "junit" / "pytest_rerunfailures.xml")
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcomes = list(pool.map(_ingest_junit_once, [pg_url] * 4, [path] * 4))
    assert sorted(outcomes) == [(0, 1), (0, 1), (0, 1), (1, 0)]
    with session_scope(pg_url) as s:
        assert s.scalar(select(func.count()).select_from(jm.ReportRow)) == 1
