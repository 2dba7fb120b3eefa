"""The CI flow through the service, as perf-lane.yml runs it: result files → `guardrail ingest --server`
(the real web app under uvicorn on loopback) → `guardrail check` → `guardrail comment` (loopback GitHub).

Skipped until the pieces exist in this checkout (the ingest endpoint, `guardrail run`); then they run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli_inprocess import run_cli
from tests.githubfake import TOKEN, FakeGitHub
from tests.test_github_flow import REPO, result

ROOT = Path(__file__).resolve().parents[1]


def _ingest_route_exists(app) -> bool:
    return "post" in app.openapi().get("paths", {}).get("/api/v1/ingest", {})


@pytest.fixture
def service(tmp_path):
    """The real dashboard app on 127.0.0.1, its SQLite database, and a write token."""
    try:
        from web.app import create_app
    except ImportError:
        pytest.skip("web.app.create_app is not in this checkout yet")
    import uvicorn

    from guardrail.api_tokens import create_token
    from guardrail.store.db import session_scope

    db = f"sqlite:///{tmp_path / 'service.db'}"
    app = create_app(db)
    if not _ingest_route_exists(app):
        pytest.skip("the service has no POST /api/v1/ingest yet")
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
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", db, token
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def gh(monkeypatch, tmp_path):
    with FakeGitHub() as fake:
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
        for var in ("GITHUB_ACTIONS", "GITHUB_EVENT_PATH", "GUARDRAIL_DASHBOARD_URL"):
            monkeypatch.delenv(var, raising=False)
        yield fake


def test_upload_check_comment_through_the_service(service, gh, tmp_path, capsys, monkeypatch):
    url, db, token = service
    monkeypatch.setenv("GUARDRAIL_TOKEN", token)
    start = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    results = tmp_path / "results"
    results.mkdir()
    for i in range(12):
        doc = result(lane="nightly", commit=f"{i:040x}", when=start + timedelta(days=i), level=100.0, seed=i)
        (results / f"n{i:02d}.json").write_text(json.dumps(doc))
    sha = "e" * 40
    pr_doc = result(
        lane="presubmit", commit=sha, when=start + timedelta(days=13), level=109.0, seed=7,
        pr=7, base=f"{11:040x}", branch="feature",
    )  # fmt: skip
    (results / "presubmit.json").write_text(json.dumps(pr_doc))

    code, out, err = run_cli(capsys, "ingest", "--server", url, str(results))
    assert code == 0, err
    assert token not in out + err
    # Idempotent: the same upload again stores nothing new.
    code, out, err = run_cli(capsys, "ingest", "--server", url, "--output", "json", str(results))
    assert code == 0, err
    assert not json.loads(out)["stored"]

    code, out, err = run_cli(capsys, "check", "--db", db, "--commit", sha, "--lane", "presubmit", "--format", "json")
    assert code == 1, err
    (tmp_path / "verdicts.json").write_text(out)
    args = ["comment", "--repo", REPO, "--pr", "7", "--verdicts", str(tmp_path / "verdicts.json")]
    code, out, err = run_cli(capsys, *args, "--dashboard-url", url)
    assert code == 0, err
    assert gh.statuses[-1]["state"] == "failure"
    assert gh.statuses[-1]["target_url"].startswith(f"{url}/runs/")
    assert "Performance regression" in gh.comments[(REPO, 7)][0]["body"]


def test_ingest_server_rejects_a_wrong_token(service, tmp_path, capsys, monkeypatch):
    url, _, token = service
    monkeypatch.setenv("GUARDRAIL_TOKEN", "gr_wrong_" + token)
    doc = result(lane="nightly", commit="f" * 40, when=datetime(2026, 11, 1, tzinfo=UTC), level=1.0, seed=1)
    (tmp_path / "r.json").write_text(json.dumps(doc))
    code, out, err = run_cli(capsys, "ingest", "--server", url, str(tmp_path / "r.json"))
    assert code == 3
    assert "401" in err and len(err.strip().splitlines()) == 1
    assert token not in out + err


@pytest.mark.slow
def test_tiny_cpu_run_through_the_service(service, gh, tmp_path, capsys, monkeypatch):
    """run (CPU tiny) → upload → check → comment: the presubmit flow of perf-lane.yml, on this machine."""
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401

        import guardrail.cli.run  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"guardrail run needs {exc.name}")
    url, db, token = service
    out_dir = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    run = [
        sys.executable,
        "-m",
        "guardrail",
        "run",
        "--lane",
        "presubmit",
        "--workload",
        "qwen-image-edit-1024",
    ]
    proc = subprocess.run(
        [*run, "--device", "cpu", "--scale", "tiny", "--repeats", "1", "--out", str(out_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(out_dir.glob("*.json"))
    assert files
    sha = json.loads(files[0].read_text())["run"]["source"]["commit"]

    monkeypatch.setenv("GUARDRAIL_TOKEN", token)
    code, _, err = run_cli(capsys, "ingest", "--server", url, str(out_dir))
    assert code == 0, err
    code, out, err = run_cli(capsys, "check", "--db", db, "--commit", sha, "--lane", "presubmit", "--format", "json")
    assert code in (0, 1), err  # no CPU history here: a missing baseline fails closed (1)
    (tmp_path / "verdicts.json").write_text(out)
    args = [
        "comment",
        "--repo",
        REPO,
        "--pr",
        "7",
        "--sha",
        sha,
        "--verdicts",
        str(tmp_path / "verdicts.json"),
    ]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert gh.statuses[-1]["state"] == ("failure" if json.loads(out)["status"] == "failure" else "success")
    assert "qwen-image-edit-1024" in gh.comments[(REPO, 7)][0]["body"]


def test_plan_repeats_through_the_service_equals_the_stores(service, tmp_path, capsys, monkeypatch):
    """`guardrail plan-repeats --server` (the GitHub workflow's step) reads the same plan the store gives."""
    import numpy as np

    from tests.test_repeat_plan import _store

    url, db, token = service
    _store(db, tmp_path, np.random.default_rng(7))
    monkeypatch.setenv("GUARDRAIL_TOKEN", token)
    out = tmp_path / "plan.json"
    code, _, err = run_cli(capsys, "plan-repeats", "--lane", "presubmit", "--server", url, "--out", str(out))
    assert code == 0, err
    code, local, err = run_cli(capsys, "plan-repeats", "--lane", "presubmit", "--db", db, "--format", "json")
    assert code == 0, err
    assert json.loads(out.read_text()) == json.loads(local)
    assert token not in err
    code, _, err = run_cli(capsys, "plan-repeats", "--server", "http://127.0.0.1:9/")
    assert code == 3 and "cannot connect" in err
