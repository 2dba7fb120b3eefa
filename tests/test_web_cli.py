"""`guardrail token` and `guardrail serve` as a user runs them, with `guardrail ingest --server` (the upload
client) posting to the real server over 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.factories import result_doc, write


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "guardrail", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_token_serve_and_upload(tmp_path):
    db = f"sqlite:///{tmp_path / 'g.db'}"
    made = _cli("token", "create", "ci-npu", "--db", db)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("gr_") and token not in made.stderr
    listed = _cli("token", "list", "--db", db)
    assert "ci-npu" in listed.stdout and token not in listed.stdout and "active" in listed.stdout

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "guardrail", "serve", "--port", str(port), "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("guardrail serve did not answer within 15 s")
        f = write(tmp_path / "r" / "one.json", result_doc(workload="uploaded-over-http", run_id="h1"))
        no_token = _cli("ingest", str(f), "--server", base, env={"GUARDRAIL_TOKEN": ""})
        assert no_token.returncode != 0 and token not in no_token.stderr
        up = _cli("ingest", str(f), "--server", base, "--output", "json", env={"GUARDRAIL_TOKEN": token})
        assert up.returncode == 0, up.stderr
        assert '"stored"' in up.stdout and "uploaded-over-http" in up.stdout
        page = httpx.get(base + "/").text
        assert "uploaded-over-http" in page
        revoked = _cli("token", "revoke", "ci-npu", "--db", db)
        assert revoked.returncode == 0
        refused = _cli("ingest", str(f), "--server", base, env={"GUARDRAIL_TOKEN": token})
        assert refused.returncode != 0
    finally:
        server.terminate()
        server.wait(10)
