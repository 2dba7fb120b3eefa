"""Core figures of issue 2: ingest throughput and `check` latency against a long history.

    python bench/bench_core.py [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test] [--out FILE]

- ingest: result files with 3 repeats x 10 metrics x 500 samples each; samples/s from reading the files to the
  committed transaction, on SQLite and on PostgreSQL (a fresh schema, dropped afterwards).
- check: 3 workloads x 10 metrics with 365 nightly runs of history, then one presubmit run judged against it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guardrail.ingest import ingest  # noqa: E402
from guardrail.store import db as store_db  # noqa: E402

METRICS = [f"m{i}_latency" for i in range(10)]


def doc(
    workload: str,
    lane: str,
    started: datetime,
    rng,
    *,
    repeats: int,
    samples: int,
    branch="main",
    run_id: str | None = None,
) -> dict:
    return {
        "schema": "guardrail.result/v1",
        "run": {
            "lane": lane,
            "started_at": started.isoformat(),
            "source": {
                "repo": "org/p",
                "commit": f"{int(started.timestamp()):x}",
                "branch": branch,
                "ci": {"provider": "bench", "run_id": run_id or started.isoformat(), "attempt": 1},
            },
        },
        "environment": {"hardware": "H100", "device_type": "cuda", "software": {"torch": "2.9.0"}},
        "workload": {"name": workload, "digest": f"sha256:{workload}", "spec": {}},
        "status": "ok",
        "metrics": [
            {
                "name": m,
                "unit": "ms",
                "repeats": (
                    1000
                    * (1 + 0.005 * rng.standard_normal((repeats, 1)))
                    * (1 + 0.005 * rng.standard_normal((repeats, samples)))
                )
                .round(3)
                .tolist(),
            }
            for m in METRICS
        ],
    }


def fresh_pg(base: str) -> tuple[str, callable]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    eng = sa.create_engine(base)
    with eng.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"

    def drop():
        store_db.get_engine(url).dispose()
        with eng.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')

    return url, drop


def bench_ingest(url: str, tmp: Path, files: int = 40, samples: int = 500) -> dict:
    rng = np.random.default_rng(0)
    d = tmp / "ingest"
    d.mkdir()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(files):
        (d / f"r{i}.json").write_text(
            json.dumps(doc(f"w{i % 3}", "nightly", t0 + timedelta(days=i), rng, repeats=3, samples=samples))
        )
    store_db.upgrade(url)
    n = files * len(METRICS) * 3 * samples
    start = time.perf_counter()
    report = ingest(url, [d])
    dt = time.perf_counter() - start
    assert len(report.stored) == files
    return {"files": files, "samples": n, "seconds": round(dt, 3), "samples_per_s": round(n / dt)}


def bench_check(url: str, tmp: Path, history: int = 365) -> dict:
    rng = np.random.default_rng(1)
    d = tmp / "history"
    d.mkdir()
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    for day in range(history):
        for w in range(3):
            (d / f"n{day}_{w}.json").write_text(
                json.dumps(doc(f"wl{w}", "nightly", t0 + timedelta(days=day), rng, repeats=3, samples=20))
            )
    store_db.upgrade(url)
    ingest(url, [d])
    cand = tmp / "cand"
    cand.mkdir()
    for w in range(3):
        (cand / f"c{w}.json").write_text(
            json.dumps(
                doc(
                    f"wl{w}",
                    "presubmit",
                    t0 + timedelta(days=history),
                    rng,
                    repeats=2,
                    samples=20,
                    branch="pr",
                    run_id="pr-1",
                )
            )
        )
    report = ingest(url, [cand])
    run_id = report.run_ids[0]
    from guardrail.check import check_runs, find_runs
    from guardrail.store.db import session_scope

    timings = []
    for _ in range(5):
        start = time.perf_counter()
        with session_scope(url, write=True) as s:
            out = check_runs(s, find_runs(s, run_id=run_id, commit=None, lane=None))
        timings.append(time.perf_counter() - start)
    assert len(out.verdicts) == 30, len(out.verdicts)
    env = {**os.environ, "GUARDRAIL_DB": url}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail", "check", "--run", str(run_id), "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
    )
    cli = time.perf_counter() - start
    assert proc.returncode in (0, 1), proc.stderr
    return {
        "history_runs": history,
        "series": 30,
        "check_seconds_median": round(float(np.median(timings)), 3),
        "cli_wall_seconds": round(cli, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--pg",
        default=os.environ.get("GUARDRAIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    ap.add_argument("--out")
    args = ap.parse_args()
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {cpu}",
        "python": platform.python_version(),
    }
    for backend in ("sqlite", "postgresql"):
        tmp = Path(tempfile.mkdtemp())
        try:
            for name, fn in (("ingest", bench_ingest), ("check", bench_check)):
                sub = tmp / name
                sub.mkdir()
                if backend == "sqlite":
                    url, drop = f"sqlite:///{sub / 'g.db'}", (lambda: None)
                else:
                    url, drop = fresh_pg(args.pg)
                try:
                    out[f"{name}_{backend}"] = fn(url, sub)
                finally:
                    drop()
                print(name, backend, out[f"{name}_{backend}"], flush=True)
        finally:
            shutil.rmtree(tmp)
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
