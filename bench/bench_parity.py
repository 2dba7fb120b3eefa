"""Benchmark: `guardrail parity` over a GPU and an NPU lane of N tests each, one commit a day for D days.

    .venv/bin/python bench/bench_parity.py [--tests 2000] [--days 14] [--db sqlite:////tmp/bench-parity.db]

Writes one pytest-style JUnit file per lane and day (the NPU lane runs a few percent fewer tests, skips and fails
some), ingests them, then times the report (with its per-day series) five times. Figures: docs/parity.md.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from guardrail.ingest.junit_writer import ingest_junit
from guardrail.parity import parity_doc
from guardrail.schema import Source
from guardrail.store.db import session_scope

T0 = datetime(2026, 11, 1, 2, tzinfo=UTC)


def junit(dev: str, day: int, tests: int, days: int, rnd: random.Random) -> str:
    rows = []
    for i in range(tests):
        f = f"tests/{dev}/test_mod{i % 50}.py"
        state = "pass"
        if dev == "npu":
            r = rnd.random()
            if r < 0.03 + 0.002 * (days - day):  # coverage grows day by day
                continue
            state = "skip" if r < 0.06 else "fail" if r < 0.07 else "pass"
        body = {"pass": "", "skip": "<skipped message='x'/>", "fail": "<failure message='x'>x</failure>"}[state]
        classname = f[:-3].replace("/", ".")
        rows.append(
            f'<testcase classname="{classname}" name="test_case_{i}[{dev}-bf16]" file="{f}" time="0.5">'
            f"{body}</testcase>"
        )
    return "<testsuites><testsuite name='pytest'>" + "".join(rows) + "</testsuite></testsuites>"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--db", default=None, help="a fresh database URL (default: a SQLite file in a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{tmp}/bench.db"
        rnd = random.Random(7)
        t = time.perf_counter()
        for d in range(args.days):
            for dev, hw, lane in (("cuda", "H100", "gpu-unit"), ("npu", "A3", "npu-unit")):
                p = Path(tmp) / f"{dev}-{d}.xml"
                p.write_text(junit(dev, d, args.tests, args.days, rnd))
                ingest_junit(url, [p], source=Source(commit=f"c{d}"), lane=lane, hardware=hw,
                             started_at=T0 + timedelta(days=d))  # fmt: skip
        print(f"ingested {2 * args.days} files of {args.tests} tests in {time.perf_counter() - t:.1f} s")
        times = []
        for _ in range(5):
            t = time.perf_counter()
            with session_scope(url) as s:
                doc = parity_doc(s, reference="H100", target="A3", now=T0 + timedelta(days=args.days), since=T0)
            times.append(time.perf_counter() - t)
        print(
            f"parity: {min(times):.2f}-{max(times):.2f} s over 5 runs; {doc['cases']} cases, pass share "
            f"{doc['pass_share']}, {len(doc['series'])} days in the series"
        )


if __name__ == "__main__":
    main()
