"""Time the dashboard's test views over a SQLite store of generated JUnit history.

    python bench/bench_web_flaky.py [--tests 2000] [--runs 60] [--repeat 5]

Ingests ``--runs`` JUnit files (one per commit, a day apart; 3% of the tests flaky at 30%, a few broken,
reruns as PyTorch-style ``<rerun>`` elements) through ``ingest_junit``, then requests each view in-process
(FastAPI's TestClient, no network) and prints the median and worst wall time of ``--repeat`` requests.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def junit_file(path: Path, n_tests: int, rng: random.Random) -> None:
    cases = []
    for k in range(n_tests):
        inner = ""
        if k % 33 == 0 and rng.random() < 0.3:
            inner = f'<rerun message="RuntimeError: HCCL timeout on rank {k % 8}" time="1.5"/>'
        elif k % 500 == 7:
            inner = '<failure message="AssertionError: mismatch">trace</failure>'
        cases.append(
            f'<testcase classname="tests.test_m{k // 50}" name="test_{k}" time="0.{k % 9 + 1}">{inner}</testcase>'
        )
    path.write_text(f'<testsuites><testsuite name="pytest">{"".join(cases)}</testsuite></testsuites>')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from guardrail.ingest.junit_writer import ingest_junit
    from guardrail.schema import CIInfo, Source
    from web.app import create_app

    tmp = Path(tempfile.mkdtemp(prefix="bench-web-flaky-"))
    url = f"sqlite:///{tmp / 'g.db'}"
    rng = random.Random(1)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for i in range(args.runs):
        path = tmp / f"r{i}.xml"
        junit_file(path, args.tests, rng)
        src = Source(repo="org/p", commit=f"{i:040x}", ci=CIInfo(provider="gha", run_id=f"r{i}"))
        started = now - timedelta(hours=(args.runs - i) * 6)
        ingest_junit(url, [path], source=src, lane="tests", hardware="Ascend910B3", started_at=started)
    print(f"ingested {args.runs} runs x {args.tests} tests in {time.perf_counter() - t0:.1f} s")

    client = TestClient(create_app(url, cache_ttl=0))
    flaky = client.get("/api/v1/flaky").json()
    pk = flaky["tests"][0]["test_pk"]
    print(f"{len(flaky['tests'])} tests not healthy, {len(flaky['by_minutes'])} by minutes")
    for path in ("/flaky", "/api/v1/flaky", f"/tests/{pk}", f"/api/v1/tests/{pk}", "/reruns", "/api/v1/ci-health", "/"):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            r = client.get(path)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, (path, r.status_code)
        print(f"{path:<24} median {statistics.median(times) * 1000:7.0f} ms   max {max(times) * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
