"""The service protects itself: body limit while streaming, token before body, read-only token checks, security
headers. The real app under uvicorn on loopback, real SQLite."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time

import httpx
import pytest

from guardrail.api_tokens import create_token
from guardrail.store.db import session_scope

CHUNK = 64 * 1024


@pytest.fixture
def served(tmp_path):
    import uvicorn

    from web.app import create_app

    path = tmp_path / "service.db"
    db = f"sqlite:///{path}"
    app = create_app(db, max_body_mb=1)
    with session_scope(db, write=True) as session:
        _, token = create_token(session, "ci")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield port, path, token
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _chunked_post(port: int, token: str | None, total: int, length: int | None = None) -> tuple[bytes, int]:
    """POST a chunked body of `total` bytes (or stop early): the answer's first bytes and how many body bytes
    were sent before the answer came (or the connection closed)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    head = "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    head += f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    s.sendall((head + "\r\n").encode())
    s.settimeout(0.0)
    sent = 0
    answer = b""
    chunk = b"%x\r\n" % CHUNK + b" " * CHUNK + b"\r\n" if length is None else b" " * CHUNK
    deadline = time.monotonic() + 60
    try:
        while sent < total and time.monotonic() < deadline:
            try:
                answer += s.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            try:
                s.settimeout(1.0)
                s.sendall(chunk)
                sent += CHUNK
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            finally:
                s.settimeout(0.0)
        s.settimeout(10)
        if not answer:
            answer = s.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    return answer, sent


def test_oversize_chunked_body_is_413_before_it_is_all_read(served):
    # No Content-Length: only counting what receive() delivers can stop it. (A Content-Length that lies low is
    # bounded by the HTTP parser itself: the app is handed that many bytes and the rest is a bad request.)
    port, _, token = served
    answer, sent = _chunked_post(port, token, 64 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # 1 MiB limit: the answer came long before the 64 MiB were sent (socket buffers hold a few MiB at most).
    assert sent < 16 * 1024 * 1024, sent


def test_declared_oversize_body_is_413_at_once(served):
    port, _, token = served
    r = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/ingest",
        content=b"x" * (2 << 20),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "limit of 1 MiB" in r.json()["detail"]


@pytest.mark.parametrize("token", [None, "gr_bogus"])
def test_bad_token_is_401_before_the_body(served, token):
    port, _, _ = served
    # A Content-Length under the limit, but the body never comes: only an answer before the body is read returns.
    s = socket.create_connection(("127.0.0.1", port))
    head = "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    s.sendall((head + "\r\n").encode())
    s.settimeout(5)
    answer = s.recv(65536)
    s.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"www-authenticate: Bearer" in answer.lower().replace(b"bearer", b"Bearer")


def test_bogus_token_does_not_wait_behind_a_writer(served):
    port, path, _ = served
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        t0 = time.monotonic()
        r = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/ingest",
            json={"documents": []},
            headers={"Authorization": "Bearer gr_bogus"},
            timeout=30,
        )
        took = time.monotonic() - t0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.status_code == 401
    assert took < 2.0, took


@pytest.mark.parametrize("path", ["/", "/api/v1/runs", "/healthz", "/no-such-page"])
def test_security_headers_everywhere(served, path):
    port, _, _ = served
    r = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Accept": "text/html"})
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
