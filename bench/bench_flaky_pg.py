"""Benchmark: `guardrail flaky` over 1 million stored test executions on PostgreSQL (target < 2 s).

Fills a schema of its own (dropped afterwards) with bulk Core inserts: T tests x R runs, one verdict per
test per run (each run its own commit), one execution per attempt (flaky verdicts have two), spread
over 30 days; then times the SQL-aggregated flaky report (the query alone, and the whole CLI in a fresh
process), and checks it against the pure ``assess`` over the same history.

    python bench/bench_flaky_pg.py --ingest JUNIT.xml [--again]   # one 50 MB JUnit ingest, SQLite and PostgreSQL
    python bench/bench_flaky_pg.py [--tests 5000] [--runs 200] [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime.now(UTC).replace(microsecond=0)


def fill(url: str, n_tests: int, n_runs: int, seed: int = 7) -> dict[str, int]:
    from guardrail.store import junit_models as tm
    from guardrail.store import models as m
    from guardrail.store.db import get_engine

    rng = random.Random(seed)
    eng = get_engine(url)
    counts = {"executions": 0, "verdicts": 0}
    with eng.begin() as c:
        c.execute(sa.insert(m.Commit), [{"repo": "org/p", "sha": f"{i:040x}", "branch": "main"} for i in range(n_runs)])
        commit_ids = [r[0] for r in c.execute(sa.select(m.Commit.id).order_by(m.Commit.id))]
        start = NOW - timedelta(days=30)
        runs = []
        for i in range(n_runs):
            at = start + timedelta(days=30 * (i + 1) / n_runs)
            runs.append(
                {
                    "run_key": f"bench-{i}",
                    "lane": "tests" if i % 4 else "nightly",
                    "hardware": "Ascend910B3",
                    "started_at": at,
                    "commit_id": commit_ids[i],
                    "ci_provider": "github-actions",
                    "ci_run_id": str(1000 + i),
                    "ci_attempt": 1,
                    "created_at": at,
                }
            )
        c.execute(sa.insert(m.Run), runs)
        run_rows = list(c.execute(sa.select(m.Run.id, m.Run.started_at, m.Run.lane).order_by(m.Run.id)))
        tests = [
            {
                "key_hash": f"{i:064x}",
                "key": f"tests/test_m{i // 50}.py::test_{i}@Ascend910B3",
                "test_id": f"tests/test_m{i // 50}.py::test_{i}",
                "suite": "pytest",
                "file": f"tests/test_m{i // 50}.py",
                "name": f"test_{i}",
                "hardware": "Ascend910B3",
                "first_seen_at": start,
            }
            for i in range(n_tests)
        ]
        c.execute(sa.insert(tm.CaseRow), tests)
        test_ids = [r[0] for r in c.execute(sa.select(tm.CaseRow.id).order_by(tm.CaseRow.id))]
        # per-test flake rates: most tests solid, some flaky, a few broken lately
        rate = [0.0 if rng.random() < 0.9 else rng.choice((0.01, 0.05, 0.2)) for _ in test_ids]
        for run_id, at, lane in run_rows:
            rep = c.execute(
                sa.insert(tm.ReportRow).returning(tm.ReportRow.id),
                {"run_id": run_id, "content_hash": f"sha256:{run_id}", "path": "junit.xml", "created_at": at},
            ).scalar_one()
            execs, verdicts = [], []
            for j, pk in enumerate(test_ids):
                flaky = rng.random() < rate[j]
                broken = j % 997 == 0 and run_id == run_rows[-1][0]
                outcomes = ["fail", "pass"] if flaky else ["fail"] if broken else ["pass"]
                for k, o in enumerate(outcomes, start=1):
                    execs.append(
                        {
                            "test_pk": pk, "run_id": run_id, "report_id": rep, "job_attempt": 1,
                            "process_attempt": 1, "inprocess_attempt": k, "outcome": o,
                            "duration_s": 0.5, "phase": "call", "source": "testcase", "final": k == len(outcomes),
                            "signature": "0123456789abcdef" if o == "fail" else None,
                        }
                    )  # fmt: skip
                verdicts.append(
                    {
                        "test_pk": pk, "pair_key": f"{run_id}..", "head_commit": f"{run_id:040x}",
                        "run_id": run_id, "lane": lane, "hardware": "Ascend910B3", "at": at,
                        "verdict": "flaky" if flaky else "fail" if broken else "pass",
                        "final_outcome": outcomes[-1], "attempts": len(outcomes),
                        "failed_attempts": outcomes.count("fail"), "signatures": ["0123456789abcdef"] if flaky else [],
                        "duration_s": 0.5 * len(outcomes), "rerun_duration_s": 0.5 if flaky else 0.0,
                        "process_attempts": 1, "infra_excluded": False,
                    }
                )  # fmt: skip
            c.execute(sa.insert(tm.ExecutionRow), execs)
            c.execute(sa.insert(tm.CaseVerdictRow), verdicts)
            counts["executions"] += len(execs)
            counts["verdicts"] += len(verdicts)
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE test_verdicts")
        c.exec_driver_sql("VACUUM ANALYZE tests")
    return counts


def measure_ingest(url: str, path: str, again: bool = False) -> None:
    """Time ``ingest_junit`` of one file into ``url`` in this (fresh) process; print time and peak RSS.
    ``again``: then the same file as the next commit's run (every test already stored: a steady CI store)."""
    import resource

    from guardrail.ingest.junit_writer import ingest_junit
    from guardrail.schema import CIInfo, Source
    from guardrail.store.db import session_scope, upgrade

    upgrade(url)
    with session_scope(url):
        pass
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    src = Source(repo="org/p", commit="a" * 40, ci=CIInfo(provider="github-actions", run_id="1", attempt=1))
    t0, c0 = time.perf_counter(), time.process_time()
    report = ingest_junit(url, [path], source=src, lane="tests", hardware="Ascend910B3")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the reader process of a large file (guardrail.ingest.junit_process.ParsedFile): its CPU time
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    (entry,) = report.stored
    print(f"ingest {os.path.getsize(path) / 2**20:.1f} MiB ({entry['executions']:,} executions, "
          f"{entry['verdicts']:,} verdicts; {entry['status']}): {wall:.2f} s wall, {cpu:.2f} s CPU "
          f"(this process) + {kids.ru_utime + kids.ru_stime:.2f} s CPU (reader process), peak RSS {peak:.0f} MiB "
          f"({base_rss:.0f} MiB before) + {reader_peak_mib(path)} MiB (reader process, run again alone)")  # fmt: skip
    if again:
        src = Source(repo="org/p", commit="b" * 40, ci=CIInfo(provider="github-actions", run_id="2", attempt=1))
        t0, c0 = time.perf_counter(), time.process_time()
        report = ingest_junit(url, [path], source=src, lane="tests", hardware="Ascend910B3")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"  again, next commit (tests already stored): {wall:.2f} s wall, {cpu:.2f} s CPU (this process), "
              f"{report.stored[0]['verdicts']:,} verdicts")  # fmt: skip


def reader_peak_mib(path: str) -> str:
    """Peak RSS of the ingest's reader process on ``path``, run again on its own under GNU time: the
    ``ru_maxrss`` a parent sees of a child counts the parent's image copied before the child's exec."""
    import json

    if not os.path.exists("/usr/bin/time"):
        return "n/a"
    try:
        from guardrail.ingest.junit_process import CHILD_CODE
    except ImportError:  # an older guardrail (no reader process)
        return "0"
    arg = json.dumps([path, 1, "Ascend910B3", 5000, True])
    code = CHILD_CODE
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-c", code, arg],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True,
    )  # fmt: skip
    return f"{int(out.stderr.strip().splitlines()[-1]) / 1024:.0f}"


def bench_ingest(pg: str, path: str, again: bool = False) -> None:
    """The 50 MB file into a fresh SQLite file and a fresh PostgreSQL schema, each in a fresh process."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        targets = [("SQLite", f"sqlite:///{d}/g.db", None)]
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        targets.append(("PostgreSQL", f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}", schema))
        admin = sa.create_engine(pg)
        with admin.begin() as c:
            c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            for name, url, _ in targets:
                out = subprocess.run(
                    [sys.executable, __file__, "--child-ingest", path, "--url", url, *(["--again"] if again else [])],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                print(f"{name}: {out.stdout.strip()}")
        finally:
            with admin.begin() as c:
                c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ingest", metavar="JUNIT.xml", help="time ingest_junit of this file (SQLite and PostgreSQL)")
    ap.add_argument("--child-ingest", help=argparse.SUPPRESS)
    ap.add_argument("--again", action="store_true", help="with --ingest: then ingest it again as the next commit")
    ap.add_argument("--url", default=os.environ.get("GUARDRAIL_TEST_PG_URL", DEFAULT_URL))
    ap.add_argument("--tests", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="do not drop the schema (prints its URL)")
    ap.add_argument("--reuse", metavar="SCHEMA", help="time over a schema kept by an earlier --keep run (no fill)")
    a = ap.parse_args()
    if a.child_ingest:
        return measure_ingest(a.url, a.child_ingest, a.again)
    if a.ingest:
        return bench_ingest(a.url, a.ingest, a.again)

    from guardrail.analysis.flaky_scores import assess
    from guardrail.store.db import get_engine, session_scope, upgrade
    from guardrail.store.junit_queries import flaky_stats, history

    schema = a.reuse or f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(a.url)
    if not a.reuse:
        with admin.begin() as c:
            c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = f"{a.url}{'&' if '?' in a.url else '?'}options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        if not a.reuse:
            t0 = time.perf_counter()
            counts = fill(url, a.tests, a.runs)
            print(f"filled {counts['executions']:,} executions, {counts['verdicts']:,} verdicts "
                  f"({a.tests} tests x {a.runs} runs) in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        with get_engine(url).connect() as c:
            n_exec = c.exec_driver_sql("SELECT count(*) FROM test_executions").scalar()
            n_verd = c.exec_driver_sql("SELECT count(*) FROM test_verdicts").scalar()
        print(f"store: {n_exec:,} executions, {n_verd:,} verdicts")

        for i in range(a.repeat):
            t0 = time.perf_counter()
            with session_scope(url) as s:
                stats = flaky_stats(s, now=NOW)
            print(f"query + classify, run {i + 1}: {time.perf_counter() - t0:.2f} s ({len(stats)} tests)")
        env = {**os.environ, "GUARDRAIL_DB": url}
        for i in range(a.repeat):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "guardrail", "flaky", "--format", "json"],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            print(f"`guardrail flaky --format json` (fresh process), run {i + 1}: "
                  f"{time.perf_counter() - t0:.2f} s, {len(out.stdout) / 1e6:.1f} MB of JSON")  # fmt: skip
        t0 = time.perf_counter()
        with session_scope(url) as s:
            pure = assess(list(history(s)), now=NOW)
        print(f"pure assess over the loaded history: {time.perf_counter() - t0:.2f} s")
        same = [(x.test, x.state, x.verdicts, x.flaky_verdicts) for x in pure] == [
            (x.test, x.state, x.verdicts, x.flaky_verdicts) for x in stats
        ]
        states = Counter(x.state for x in stats)
        print(f"SQL aggregate == pure assess: {same}; {states['flaky']} flaky, {states['broken']} broken")
        from guardrail.store.flaky_window import _PG_WINDOW_SQL

        with get_engine(url).connect() as c:
            plan = c.execute(
                sa.text("EXPLAIN (ANALYZE) " + _PG_WINDOW_SQL.format(vfilter="", dfilter="")),
                {"now": NOW, "since": NOW - timedelta(days=14), "k": 100},
            ).all()
            print("\n".join(r[0] for r in plan if "Execution Time" in r[0] or "Index" in r[0]))
    finally:
        from guardrail.store.db import get_engine as ge

        ge(url).dispose()
        if not a.keep and not a.reuse:
            with admin.begin() as c:
                c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        else:
            print("kept:", url)
        admin.dispose()


if __name__ == "__main__":
    main()
