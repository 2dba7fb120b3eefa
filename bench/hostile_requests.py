"""Figures for docs/reliability.md: a 200 MB POST against `guardrail serve` (unauthenticated, then with a valid
token over the body limit), the bytes the server process read, its RSS, and /healthz latency meanwhile.

    .venv/bin/python bench/hostile_requests.py [--runs 4]

"rchar" is every read the server process made (its database pages and the /healthz probes too). Where strace is
installed, a second pass counts exactly the bytes the server read from the hostile request's own connection
(strace slows the server, so latencies are taken in the first pass only).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
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


def hostile_post(port: int, token: str | None, ports: list[int] | None = None) -> tuple[str, int]:
    s = socket.create_connection(("127.0.0.1", port))
    if ports is not None:
        ports.append(s.getsockname()[1])
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


def socket_reads(pid: int, port: int, tok: str | None, runs: int, tmp: Path) -> list[int]:
    """Bytes the server read from each hostile connection (its reads on that socket, from strace)."""
    log = tmp / f"strace-{len(list(tmp.glob('strace-*')))}.txt"
    tracer = subprocess.Popen(
        ["strace", "-f", "-yy", "-p", str(pid), "-e", "trace=read,recvfrom,recvmsg,readv", "-o", str(log)],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached
    ports: list[int] = []
    for _ in range(runs):
        hostile_post(port, tok, ports)
        time.sleep(0.3)
    tracer.terminate()
    tracer.wait(10)
    read = dict.fromkeys(ports, 0)
    pattern = re.compile(r"\((\d+)<TCP:\[127\.0\.0\.1:" + str(port) + r"->127\.0\.0\.1:(\d+)\]>.*= (\d+)$")
    for line in log.read_text().splitlines():
        m = pattern.search(line)
        if m and int(m.group(2)) in read:
            read[int(m.group(2))] += int(m.group(3))
    return list(read.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=4, help="POSTs of each kind")
    args = parser.parse_args()
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
        kinds = [("no token", None), ("valid token, over the 32 MiB limit", token)]
        for label, tok in [k for k in kinds for _ in range(args.runs)]:
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
        if shutil.which("strace"):
            for label, tok in kinds:
                read = socket_reads(pid, port, tok, args.runs, tmp)
                print(f"{label}: server read from the connection (strace): {[f'{r / 1024:.1f} KiB' for r in read]}")
        else:
            print("strace not installed: no per-connection read figure")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
