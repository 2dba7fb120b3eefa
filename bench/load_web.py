"""Load test of the dashboard on PostgreSQL: 1,000,000 samples, 5,000 runs, 1,000 series.

Fills a fresh schema (bulk inserts through SQLAlchemy Core, not the ingest path), starts `uvicorn` with a few
workers on 127.0.0.1, drives the overview, series, run and alert pages with N concurrent keep-alive clients (one
asyncio process, a minimal HTTP/1.1 client: the load generator shares the machine's cores with the server, so
it must be cheap) for a bounded time, and prints p50/p95 per page, the server's and the load generator's CPU
per request, and the server's resident memory over time. The schema is dropped after.

    python bench/load_web.py [--pg URL] [--clients 20] [--seconds 60] [--workers 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

N_WORKLOADS, N_METRICS, HARDWARE = 100, 5, ("H100", "Ascend910B3")  # 100 x 5 x 2 = 1,000 series
N_RUNS = 5000
WORKLOADS_PER_RUN = 2
REPEATS, STEPS = 2, 10  # 5,000 runs x 2 workloads x 5 metrics x 2 repeats x 10 steps = 1,000,000 samples
METRICS = ("denoise_step_latency", "text_encode_latency", "denoise_latency", "vae_decode_latency", "peak_memory")


def fill(url: str) -> dict:
    from guardrail.store import models as m
    from guardrail.store.db import get_engine, upgrade

    upgrade(url)
    eng = get_engine(url)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with eng.begin() as c:
        envs = []
        for hw in HARDWARE:
            for torch in ("2.8.0", "2.9.0"):
                envs.append(
                    {
                        "fingerprint": f"sha256:{hw}-{torch}",
                        "hardware": hw,
                        "device_type": "npu" if hw.startswith("Ascend") else "cuda",
                        "device_count": 1,
                        "software": {"torch": torch, "diffusers": "0.42.1"},
                        "extra": {},
                    }
                )
        env_ids = c.execute(sa.insert(m.Environment).returning(m.Environment.id, m.Environment.hardware), envs).all()
        env_by_hw: dict[str, list[int]] = {}
        for i, hw in env_ids:
            env_by_hw.setdefault(hw, []).append(i)
        wl_ids = (
            c.execute(
                sa.insert(m.Workload).returning(m.Workload.id),
                [
                    {"digest": f"sha256:wl{i}", "name": f"bench-workload-{i:03d}", "family": "wan2.2", "spec": {}}
                    for i in range(N_WORKLOADS)
                ],
            )
            .scalars()
            .all()
        )
        series = {}
        rows = [
            {
                "workload_id": w,
                "metric": me,
                "hardware": hw,
                "unit": "MiB" if me == "peak_memory" else "ms",
                "direction": "lower_is_better",
                "summary": None,
            }
            for w in wl_ids
            for me in METRICS
            for hw in HARDWARE
        ]
        for sid, w, me, hw in c.execute(
            sa.insert(m.Series).returning(m.Series.id, m.Series.workload_id, m.Series.metric, m.Series.hardware), rows
        ):
            series[(w, me, hw)] = sid
        commit_ids = (
            c.execute(
                sa.insert(m.Commit).returning(m.Commit.id),
                [
                    {
                        "repo": "org/project",
                        "sha": uuid.UUID(int=i).hex + "00000000",
                        "branch": "main",
                        "message": f"commit {i}: tune the scheduler",
                    }
                    for i in range(N_RUNS)
                ],
            )
            .scalars()
            .all()
        )
        runs = []
        for i in range(N_RUNS):
            hw = HARDWARE[i % 2]
            pr = 1000 + i % 50 if i % 10 == 9 else None
            runs.append(
                {
                    "run_key": f"bench-{i}",
                    "lane": "presubmit" if pr else "nightly",
                    "hardware": hw,
                    "started_at": start + timedelta(hours=i),
                    "commit_id": commit_ids[i],
                    "branch": "feature" if pr else "main",
                    "pr": pr,
                    "ci_provider": "github-actions",
                    "ci_run_id": str(i),
                    "ci_attempt": 1,
                    "ci_url": f"https://ci.example/runs/{i}",
                    "created_at": start,
                }
            )
        run_ids = c.execute(sa.insert(m.Run).returning(m.Run.id), runs).scalars().all()
        results, owners = [], []
        for i, run_id in enumerate(run_ids):
            hw = HARDWARE[i % 2]
            for k in range(WORKLOADS_PER_RUN):
                w = wl_ids[(i // 2 * WORKLOADS_PER_RUN + k) % N_WORKLOADS]
                results.append(
                    {
                        "run_id": run_id,
                        "workload_id": w,
                        "environment_id": env_by_hw[hw][i * 2 // N_RUNS],
                        "status": "ok",
                        "content_hash": f"sha256:r{i}-{k}",
                        "source_format": "result",
                        "extra": {},
                        "created_at": start,
                    }
                )
                owners.append((w, hw))
        result_ids = c.execute(sa.insert(m.Result).returning(m.Result.id), results).scalars().all()
        n_samples = 0
        batch = []
        for rid, (w, hw) in zip(result_ids, owners, strict=True):
            for me in METRICS:
                level = 1000.0 if me != "peak_memory" else 20000.0
                for rep in range(REPEATS):
                    arr = level * (1 + rng.normal(0, 0.01)) * (1 + rng.normal(0, 0.005, STEPS))
                    n_samples += arr.size
                    batch.append(
                        {
                            "result_id": rid,
                            "series_id": series[(w, me, hw)],
                            "repeat_index": rep,
                            "n": STEPS,
                            "median": float(np.median(arr)),
                            "mean": float(arr.mean()),
                            "minimum": float(arr.min()),
                            "maximum": float(arr.max()),
                            "samples": arr.astype("<f8").tobytes(),
                        }
                    )
            if len(batch) >= 20000:
                c.execute(sa.insert(m.Measurement), batch)
                batch = []
        if batch:
            c.execute(sa.insert(m.Measurement), batch)
        # Checks with verdicts for the newest 400 runs, and 300 alerts, so the pages have their usual content.
        for run_id in run_ids[-400:]:
            check_id = c.execute(
                sa.insert(m.Check).returning(m.Check.id),
                [
                    {
                        "run_id": run_id,
                        "policy": "nightly",
                        "status": "success",
                        "expected_false_alarms": 0.05,
                        "summary": {"no_change": 10},
                        "doc": {},
                        "created_at": start,
                    }
                ],
            ).scalar_one()
            c.execute(
                sa.insert(m.Verdict),
                [
                    {
                        "check_id": check_id,
                        "series_id": None,
                        "workload": "w",
                        "metric": me,
                        "hardware": "H100",
                        "verdict": "no_change",
                        "threshold": 0.01,
                        "explanation": "within 1%",
                    }
                    for me in METRICS
                ],
            )
        alert_ids = (
            c.execute(
                sa.insert(m.Alert).returning(m.Alert.id),
                [
                    {
                        "dedup_key": f"bench-{i}",
                        # half regressions, half improvements (the overview lists them apart), each with its direction
                        "kind": "regression" if i % 2 else "improvement",
                        "workload_id": wl_ids[i % 100],
                        "hardware": HARDWARE[i % 2],
                        "lane": "nightly",
                        "metrics": [
                            {
                                "metric": "denoise_step_latency",
                                "series_id": series[(wl_ids[i % 100], "denoise_step_latency", HARDWARE[i % 2])],
                                "direction": "lower_is_better",
                                "unit": "ms",
                                "before": 100.0,
                                "after": 103.0 if i % 2 else 97.0,
                                "change": 0.03 if i % 2 else -0.03,
                            }
                        ],
                        "change": 0.03 if i % 2 else -0.03,
                        "to_commit": "abc",
                        "state": "untriaged",
                        "created_at": start + timedelta(hours=i),
                        "updated_at": start,
                    }
                    for i in range(300)
                ],
            )
            .scalars()
            .all()
        )
    with eng.begin() as c:  # committed: statistics gathered inside a rolled-back transaction are lost
        c.exec_driver_sql("ANALYZE")
    return {
        "runs": len(run_ids),
        "series": len(series),
        "samples": n_samples,
        "results": len(result_ids),
        "fill_s": round(time.perf_counter() - t0, 1),
        "run_ids": run_ids,
        "series_ids": list(series.values()),
        "alert_ids": list(alert_ids),
    }


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(x) for x in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (the server's share of the machine)."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (the uvicorn master and its workers)."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(x) for x in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class _Http:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams, for the load generator only.

    It shares the 2 cores with the server under test, and httpx spent ~1.8 ms of CPU per request there; this one
    (~0.1 ms) sends the same GET and reads the whole response (status line, headers, every byte of the body by
    Content-Length or chunked encoding), several times cheaper."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        for attempt in (0, 1):  # the server may close an idle keep-alive connection: reconnect once
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                self.writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: */*\r\n\r\n".encode()
                )
                head = await self.reader.readuntil(b"\r\n\r\n")
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt:
                    raise
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        else:
            body = await self.reader.read()
            await self.close()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


def pg_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each PostgreSQL backend process (same machine)."""
    out = {}
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            out[p] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return out


async def drive(
    base: str,
    clients: int,
    seconds: float,
    run_ids: list[int],
    series_ids: list[int],
    alert_ids: list[int],
    server_pid: int,
    pg_backends=lambda: [],
) -> dict:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    pages = {
        "overview": lambda r: "/",
        "series": lambda r: f"/series/{r.choice(series_ids)}",
        "run": lambda r: f"/runs/{r.choice(run_ids)}",
        "alert": lambda r: f"/alerts/{r.choice(alert_ids)}",
    }
    kinds = list(pages)
    lat: dict[str, list[float]] = {k: [] for k in pages}
    errors = 0
    stop = time.monotonic() + seconds
    rss: list[tuple[float, int]] = []

    async def client(seed: int) -> None:
        nonlocal errors
        r = random.Random(seed)
        http = _Http(host, int(port))
        try:
            while time.monotonic() < stop:
                kind = r.choice(kinds)
                path = pages[kind](r)
                t = time.perf_counter()
                try:
                    status, body = await http.get(path)
                except (OSError, asyncio.IncompleteReadError) as exc:  # a dropped connection is an error, not a crash
                    errors += 1
                    print(f"transport error on {kind}: {exc!r}", flush=True)
                    await http.close()
                    continue
                lat[kind].append(time.perf_counter() - t)
                # A full page, not an error page or a cut-off body.
                if status != 200 or not body.rstrip().endswith(b"</html>"):
                    errors += 1
                    if errors <= 3:
                        print(f"HTTP {status} on {path}: {body[:200]!r}", flush=True)
        finally:
            await http.close()

    async def sampler() -> None:
        t0 = time.monotonic()
        while time.monotonic() < stop:
            rss.append((round(time.monotonic() - t0, 1), rss_kib(server_pid)))
            await asyncio.sleep(max(seconds / 12, 1))

    import resource

    cpu0, self0, pg0 = cpu_seconds(server_pid), resource.getrusage(resource.RUSAGE_SELF), pg_cpu(pg_backends())
    t0 = time.monotonic()
    await asyncio.gather(sampler(), *(client(i) for i in range(clients)))
    wall = time.monotonic() - t0
    cpu1, self1, pg1 = cpu_seconds(server_pid), resource.getrusage(resource.RUSAGE_SELF), pg_cpu(pg_backends())
    n = sum(len(v) for v in lat.values())
    out = {
        "errors": errors,
        "requests_per_s": round(n / wall, 1),
        "server_cpu_ms_per_request": round((cpu1 - cpu0) / max(n, 1) * 1000, 1),
        # PostgreSQL backends serving the app (found by application_name; a backend new since the start counts
        # from zero)
        "pg_cpu_ms_per_request": round(sum(v - pg0.get(k, 0.0) for k, v in pg1.items()) / max(n, 1) * 1000, 1),
        "loadgen_cpu_ms_per_request": round(
            (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime) / max(n, 1) * 1000, 1
        ),
        "load_average": os.getloadavg()[0],
        "pages": {},
        "rss_mib": [(t, round(k / 1024, 1)) for t, k in rss],
    }
    for k, v in lat.items():
        if not v:
            continue
        a = np.asarray(v) * 1000
        out["pages"][k] = {
            "requests": int(a.size),
            "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1),
            "max_ms": round(float(a.max()), 1),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--pg", default=os.environ.get("GUARDRAIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    )
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--workers", type=int, default=2)
    # 2 workers x 2 threads: the best p95 on 2 cores (docs/dashboard.md); 0 leaves AnyIO's 40 threads per worker
    ap.add_argument("--threads", type=int, default=2, help="requests a worker runs at once (GUARDRAIL_WEB_THREADS)")
    args = ap.parse_args()

    schema = f"bench_web_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.pg)
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    app_name = f"guardrail_load_{schema}"  # finds the server's PostgreSQL backends, for their CPU time
    url = f"{args.pg}{'&' if '?' in args.pg else '?'}options=-csearch_path%3D{schema}&application_name={app_name}"
    proc = None
    try:
        info = fill(url)
        print(json.dumps({k: v for k, v in info.items() if not k.endswith("_ids")}), flush=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "GUARDRAIL_DB": url, "GUARDRAIL_READ_TOKEN": ""}
        if args.threads:
            env["GUARDRAIL_WEB_THREADS"] = str(args.threads)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "web.app:app_from_env",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
                "--no-access-log",
                # On a loaded machine a busy worker can miss the default 5 s health check and be killed.
                "--timeout-worker-healthcheck",
                "60",
            ],
            cwd=REPO,
            env=env,
        )
        import httpx

        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        sample_runs, sample_series, sample_alerts = info["run_ids"], info["series_ids"], info["alert_ids"]

        def backends() -> list[int]:
            with admin.connect() as c:
                q = "SELECT pid FROM pg_stat_activity WHERE application_name = %(n)s"
                return [r[0] for r in c.exec_driver_sql(q, {"n": app_name})]

        try:  # the load generator's own event loop: uvloop when installed (uvicorn[standard] brings it)
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
        # warm-up: connections, caches
        samples = (sample_runs, sample_series, sample_alerts)
        asyncio.run(drive(base, args.clients, args.warmup, *samples, proc.pid, backends))
        result = asyncio.run(drive(base, args.clients, args.seconds, *samples, proc.pid, backends))
        rss = result.pop("rss_mib")
        print(
            json.dumps(
                {"clients": args.clients, "seconds": args.seconds, "workers": args.workers, "threads": args.threads}
                | result
            )
        )
        print("server RSS (s, MiB): " + " ".join(f"{t}:{v}" for t, v in rss))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        from guardrail.store.db import get_engine

        get_engine(url).dispose()
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


if __name__ == "__main__":
    main()
