"""Figures for docs/reliability.md: a 200 MB POST against `guardrail serve` (unauthenticated, then with a valid
token over the body limit), the bytes the server process read, its RSS, and /healthz latency meanwhile.

    .venv/bin/python bench/hostile_requests.py
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

TOTAL = 200 * 1000 * 1000
CHUNK = 64 * 1024


def proc_field(pid: int, name: str, field: str) -> int:
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return int(value.split()[0])
    raise KeyError(field)


def hostile_post(port: int, token: str | None) -> tuple[str, int]:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    head = "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    s.sendall((head + "\r\n").encode())
    chunk = b"%x\r\n" % CHUNK + b" " * CHUNK + b"\r\n"
    sent, answer = 0, b""
    s.settimeout(0.5)
    while sent < TOTAL:
        try:
            s.sendall(chunk)
            sent += CHUNK
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            break
        s.setblocking(False)
        try:
            answer = s.recv(4096)
        except BlockingIOError:
            pass
        s.settimeout(0.5)
        if answer:
            break
    if not answer:
        s.settimeout(5)
        try:
            answer = s.recv(4096)
        except OSError:
            pass
    s.close()
    return answer.split(b"\r\n", 1)[0].decode(), sent


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp())
    db = f"sqlite:///{tmp / 'hostile.db'}"
    guardrail = [str(root / ".venv/bin/guardrail")]
    created = subprocess.run([*guardrail, "token", "create", "bench", "--db", db], check=True, capture_output=True)
    token = next(w for w in (created.stdout + created.stderr).decode().split() if w.startswith("gr_"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = subprocess.Popen([*guardrail, "serve", "--port", str(port), "--db", db], stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        pid = server.pid
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(f"load average {os.getloadavg()}, {os.cpu_count()} cpus, {when}")
        for label, tok in [("no token", None), ("valid token, over the 32 MiB limit", token)]:
            latencies: list[float] = []
            stop = threading.Event()

            def probe(stop: threading.Event = stop, latencies: list[float] = latencies) -> None:
                with httpx.Client() as c:
                    while not stop.is_set():
                        t0 = time.perf_counter()
                        c.get(f"http://127.0.0.1:{port}/healthz")
                        latencies.append((time.perf_counter() - t0) * 1000)
                        time.sleep(0.02)

            rss0 = proc_field(pid, "status", "VmRSS")
            read0 = proc_field(pid, "io", "rchar")
            prober = threading.Thread(target=probe)
            prober.start()
            t0 = time.perf_counter()
            status, sent = hostile_post(port, tok)
            took = time.perf_counter() - t0
            time.sleep(0.5)
            stop.set()
            prober.join()
            read = proc_field(pid, "io", "rchar") - read0
            rss1 = proc_field(pid, "status", "VmRSS")
            print(
                f"{label}: {status!r} after {took * 1000:.0f} ms; client sent {sent / 1024:.0f} KiB of 200 MB; "
                f"server read {read / 1024:.0f} KiB (rchar); RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB; "
                f"/healthz n={len(latencies)} median {statistics.median(latencies):.1f} ms max {max(latencies):.1f} ms"
            )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
