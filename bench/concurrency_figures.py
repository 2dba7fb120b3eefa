"""Issue 13's concurrency figures: concurrent ingests and uploads, and kill -9 during first use and ingest.

    .venv/bin/python bench/concurrency_figures.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test

Prints one JSON object per figure. Each PostgreSQL figure runs in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.factories import result_doc, write  # noqa: E402

GUARDRAIL = [sys.executable, "-m", "guardrail"]


def files(tmp: Path, proc: int, n: int) -> list[str]:
    """``n`` results of one CI job; every job shares the workloads, commit and environment."""
    return [
        str(write(tmp / f"p{proc}" / f"r{j}.json",
                  result_doc(workload=f"w{j}", run_id=f"job-{proc}",
                             metrics={"latency": [[100.0 + proc, 101.0 + j]], "peak_memory": [[10.0 + proc]]})))
        for j in range(n)
    ]  # fmt: skip


def counts(url: str) -> dict[str, int]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        stored = c.exec_driver_sql("SELECT count(*) FROM results").scalar()
        distinct = c.exec_driver_sql(
            "SELECT count(*) FROM (SELECT DISTINCT run_id, workload_id, content_hash FROM results) d"
        ).scalar()
        workloads = c.exec_driver_sql("SELECT count(*) FROM workloads").scalar()
    eng.dispose()
    return {
        "stored": int(stored or 0),
        "duplicates": int((stored or 0) - (distinct or 0)),
        "workloads": int(workloads or 0),
    }


class PgSchema:
    def __init__(self, base: str):
        self.base, self.schema = base, f"bench_{uuid.uuid4().hex[:10]}"
        sep = "&" if "?" in base else "?"
        self.url = f"{base}{sep}options=-csearch_path%3D{self.schema}"

    def __enter__(self) -> str:
        eng = sa.create_engine(self.base)
        with eng.begin() as c:
            c.exec_driver_sql(f'CREATE SCHEMA "{self.schema}"')
        eng.dispose()
        subprocess.run([*GUARDRAIL, "db", "upgrade", "--db", self.url], check=True, capture_output=True)
        return self.url

    def __exit__(self, *_):
        eng = sa.create_engine(self.base)
        with eng.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{self.schema}" CASCADE')
        eng.dispose()


def concurrent_ingests(url: str, tmp: Path, procs: int, per: int) -> dict:
    batches = [files(tmp, i, per) for i in range(procs)]
    t0 = time.monotonic()
    running = [subprocess.Popen([*GUARDRAIL, "ingest", "--db", url, *b], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for b in batches]  # fmt: skip
    errors = [(p.wait(), (p.stderr.read() if p.stderr else "").strip()[-200:]) for p in running]
    crashes = [e for e in errors if e[0] != 0]
    return {**counts(url), "expected": procs * per, "crashes": len(crashes), "first_error": crashes[0][1] if crashes
            else None, "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def concurrent_uploads(url: str, tmp: Path, procs: int, per: int) -> dict:
    token = subprocess.run([*GUARDRAIL, "token", "create", "bench", "--db", url], capture_output=True, text=True,
                           check=True).stdout.strip()  # fmt: skip
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log = open(tmp / "serve.log", "w+")
    server = subprocess.Popen([*GUARDRAIL, "serve", "--port", str(port), "--workers", "2", "--db", url],
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        # one POST per uploader, without the client's retries, so that every 5xx is seen
        from concurrent.futures import ThreadPoolExecutor

        from guardrail.upload import INGEST_PATH, build_payload

        payloads = [build_payload([Path(f) for f in files(tmp / "up", i, per)], "auto", None) for i in range(procs)]

        def post(payload: dict) -> int:
            with httpx.Client(base_url=base, timeout=300) as client:
                return client.post(INGEST_PATH, json=payload, headers={"Authorization": f"Bearer {token}"}).status_code

        with ThreadPoolExecutor(procs) as pool:
            codes = list(pool.map(post, payloads))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
    by_code = {str(c): codes.count(c) for c in sorted(set(codes))}
    return {
        **counts(url),
        "expected": procs * per,
        "status_codes": by_code,
        "responses_5xx": sum(c >= 500 for c in codes),
    }


def sqlite_state(db: Path) -> str:
    if not db.exists():
        return "absent"
    conn = sqlite3.connect(db)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "alembic_version" not in tables or any(t.startswith("_alembic_tmp_") for t in tables):
            return "half"
        return "whole" if conn.execute("SELECT version_num FROM alembic_version").fetchone() else "half"
    finally:
        conn.close()


def kill_first_use(tmp: Path, times: int, rng: random.Random) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    out = {"whole": 0, "absent": 0, "half": 0, "next_command_failed": 0}
    probe = files(tmp / "probe", 0, 1)
    for k in range(times):
        db = tmp / f"first{k}.db"
        p = subprocess.Popen([*GUARDRAIL, "db", "upgrade", "--db", f"sqlite:///{db}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.2, 1.5))  # the command takes ~1.3 s here (start-up, then migrations)
        p.send_signal(signal.SIGKILL)
        p.wait()
        out[sqlite_state(db)] += 1
        nxt = subprocess.run([*GUARDRAIL, "ingest", "--db", f"sqlite:///{db}", *probe], capture_output=True)
        out["next_command_failed"] += nxt.returncode != 0
    return out


def kill_large_ingest(url: str, tmp: Path, times: int, n: int, rng: random.Random) -> dict:
    out = {"all": 0, "none": 0, "partial": 0, "next_command_failed": 0}
    for k in range(times):
        batch = files(tmp / f"big{k}", 1000 + k, n)
        before = counts(url)["stored"]
        p = subprocess.Popen([*GUARDRAIL, "ingest", "--db", url, *batch], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.5, 4.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        added = counts(url)["stored"] - before
        out["all" if added == n else "none" if added == 0 else "partial"] += 1
        nxt = subprocess.run([*GUARDRAIL, "ingest", "--db", url, *batch], capture_output=True)
        out["next_command_failed"] += nxt.returncode != 0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", required=True, help="PostgreSQL URL (a schema is created in it per figure)")
    ap.add_argument("--procs", type=int, default=20)
    ap.add_argument("--per", type=int, default=20)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--large", type=int, default=1000, help="results in the killed large ingest")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--only", default="", help="comma-separated figure names")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    only = set(filter(None, args.only.split(",")))

    def want(name: str) -> bool:
        return not only or name in only

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if want("ingest_pg"):
            with PgSchema(args.pg) as url:
                print(json.dumps({"figure": "ingest_pg", **concurrent_ingests(url, tmp / "pg", args.procs, args.per)}))
        if want("ingest_sqlite_new"):
            url = f"sqlite:///{tmp / 'new.db'}"
            print(json.dumps({"figure": "ingest_sqlite_new",
                              **concurrent_ingests(url, tmp / "sq", args.procs, args.per)}))  # fmt: skip
        if want("upload_pg"):
            with PgSchema(args.pg) as url:
                print(json.dumps({"figure": "upload_pg_2_workers",
                                  **concurrent_uploads(url, tmp / "srv", args.procs, args.per)}))  # fmt: skip
        if want("kill_first_use"):
            print(json.dumps({"figure": "kill_first_use", **kill_first_use(tmp / "k", args.kills, rng)}))
        if want("kill_ingest"):
            url = f"sqlite:///{tmp / 'big.db'}"
            subprocess.run([*GUARDRAIL, "db", "upgrade", "--db", url], check=True, capture_output=True)
            print(json.dumps({"figure": "kill_large_ingest_sqlite",
                              **kill_large_ingest(url, tmp / "kb", args.kills, args.large, rng)}))  # fmt: skip
            with PgSchema(args.pg) as url:
                print(json.dumps({"figure": "kill_large_ingest_pg",
                                  **kill_large_ingest(url, tmp / "kp", args.kills, args.large, rng)}))  # fmt: skip


if __name__ == "__main__":
    main()
