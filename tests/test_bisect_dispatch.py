"""`guardrail bisect --dispatch github|buildkite` against loopback stand-ins of the two APIs (real HTTP servers on
127.0.0.1): the request path, body and token, the token never printed; and a full bisection through GitHub whose
stand-in CI runs each dispatched job (worktree, `guardrail run`, ingest as lane bisect) the way a workflow would."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from guardrail.bisect import run_at
from tests.bisect_repo import HARDWARE, THRESHOLD, WORKLOAD, build_repo
from tests.cli_inprocess import run_cli

ROOT = Path(__file__).resolve().parents[1]

TOKEN = "ghs_bisect_secret_TOKEN_0123456789"


@contextmanager
def standin(answer: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any] | None]]) -> Iterator[tuple[str, list]]:
    """A loopback HTTP server: every POST is logged (path, Authorization, JSON body) and answered by `answer`."""
    log: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server name
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            log.append({"path": self.path, "authorization": self.headers.get("Authorization"), "body": body})
            status, reply = answer(self.path, body)
            data = json.dumps(reply).encode() if reply is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()


def _bisect(capsys, db: str, repo: Path, shas: list[str], *extra: str) -> tuple[int, dict, str]:
    code, out, err = run_cli(
        capsys, "bisect", "--repo", str(repo), "--good", shas[0], "--bad", shas[-1], "--workload", WORKLOAD,
        "--hardware", HARDWARE, "--db", db, "--format", "json", *THRESHOLD, *extra,
    )  # fmt: skip
    assert TOKEN not in out and TOKEN not in err
    return code, (json.loads(out) if out.strip().startswith("{") else {}), err


def test_github_workflow_dispatch_body_and_hidden_token(tmp_path, capsys, monkeypatch):
    shas = build_repo(tmp_path / "repo", n=4, slow_at=2)
    db = f"sqlite:///{tmp_path / 'g.db'}"
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with standin(lambda path, body: (204, None)) as (url, log):
        monkeypatch.setenv("GITHUB_API_URL", url)
        code, doc, _ = _bisect(capsys, db, tmp_path / "repo", shas, "--dispatch", "github",
                               "--github-repo", "org/project", "--workflow", "bisect.yml", "--ref", "main")  # fmt: skip
        # asked again before any result arrived: it waits, it does not dispatch the same step twice
        code2, doc2, _ = _bisect(capsys, db, tmp_path / "repo", shas, "--dispatch", "github",
                                 "--github-repo", "org/project")  # fmt: skip
    # both ends go out together (a CI job takes long), and asked again nothing goes out twice
    assert code == 0 and doc["state"] == "running" and code2 == 0 and len(doc2["steps"]) == 2
    assert [r["body"]["inputs"]["commit"] for r in log] == [shas[0], shas[-1]]
    req = log[0]
    assert req["path"] == "/repos/org/project/actions/workflows/bisect.yml/dispatches"
    assert req["authorization"] == f"Bearer {TOKEN}"
    assert req["body"] == {
        "ref": "main",
        "inputs": {"commit": shas[0], "workload": WORKLOAD, "repeats": "2", "lane": "bisect",
                   "bisection": str(doc["id"])},
    }  # fmt: skip
    assert doc["steps"][0]["outcome"] == "dispatched" and doc["steps"][0]["detail"]["status"] == 204
    # the repository's own bisect.yml takes exactly these inputs (GitHub refuses a dispatch with an unknown one,
    # and a required input left out), and its job runs `guardrail bisect --run-at` with them
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "bisect.yml").read_text())
    inputs = wf[True]["workflow_dispatch"]["inputs"]  # PyYAML reads the bare key `on` as True
    assert set(inputs) == set(req["body"]["inputs"])
    assert {k for k, v in inputs.items() if v.get("required")} <= set(req["body"]["inputs"])
    script = " ".join(step.get("run", "") for step in wf["jobs"]["measure"]["steps"])
    assert 'guardrail bisect --run-at "$COMMIT" --workload "$WORKLOAD" --repeats "$REPEATS"' in script


def test_buildkite_create_build_body_hidden_token_and_refusal(tmp_path, capsys, monkeypatch):
    shas = build_repo(tmp_path / "repo", n=4, slow_at=2)
    db = f"sqlite:///{tmp_path / 'g.db'}"
    monkeypatch.setenv("BK_TOKEN", TOKEN)
    build = {"number": 42, "web_url": "https://buildkite.com/acme/perf/builds/42"}
    with standin(lambda path, body: (201, build)) as (url, log):
        code, doc, _ = _bisect(capsys, db, tmp_path / "repo", shas, "--dispatch", "buildkite", "--buildkite-api", url,
                               "--buildkite-org", "acme", "--buildkite-pipeline", "perf", "--ref", "main",
                               "--token-env", "BK_TOKEN")  # fmt: skip
    assert code == 0 and doc["state"] == "running"
    req, req_bad = log  # both ends at once
    assert req_bad["body"]["commit"] == shas[-1] and "verify the bad end" in req_bad["body"]["message"]
    assert req["path"] == "/v2/organizations/acme/pipelines/perf/builds"
    assert req["authorization"] == f"Bearer {TOKEN}"
    body = req["body"]
    assert body["commit"] == shas[0] and body["branch"] == "main" and "verify the good end" in body["message"]
    assert body["env"] == {
        "GUARDRAIL_BISECT_COMMIT": shas[0], "GUARDRAIL_BISECT_WORKLOAD": WORKLOAD, "GUARDRAIL_BISECT_REPEATS": "2",
        "GUARDRAIL_BISECT_LANE": "bisect", "GUARDRAIL_BISECT_ID": str(doc["id"]),
    }  # fmt: skip
    assert doc["steps"][0]["detail"]["build"] == 42 and doc["steps"][0]["detail"]["url"] == build["web_url"]

    # a token the API refuses: one line, exit 3 (the service said no), the token not in it
    with standin(lambda path, body: (401, {"message": f"bad token {TOKEN}"})) as (url, log):
        code, _, err = _bisect(capsys, f"sqlite:///{tmp_path / 'g2.db'}", tmp_path / "repo", shas, "--dispatch",
                               "buildkite", "--buildkite-api", url, "--buildkite-org", "acme",
                               "--buildkite-pipeline", "perf", "--token-env", "BK_TOKEN")  # fmt: skip
    assert code == 3 and "HTTP 401" in err and len(log) == 1
    # no token at all: bad input naming the variable, nothing sent
    monkeypatch.delenv("BK_TOKEN")
    code, _, err = _bisect(capsys, f"sqlite:///{tmp_path / 'g3.db'}", tmp_path / "repo", shas, "--dispatch",
                           "buildkite", "--buildkite-org", "acme", "--buildkite-pipeline", "perf",
                           "--token-env", "BK_TOKEN")  # fmt: skip
    assert code == 2 and "$BK_TOKEN" in err


def test_full_bisection_through_github_with_a_standin_ci(tmp_path, capsys, monkeypatch):
    """Each workflow_dispatch starts a stand-in CI job (in a thread) that runs the workload at the commit and
    ingests it; the waiting bisection picks the results up from the store and finds the slow commit."""
    repo = tmp_path / "repo"
    shas = build_repo(repo, n=8, slow_at=5)
    db = f"sqlite:///{tmp_path / 'g.db'}"
    jobs: list[threading.Thread] = []

    def answer(path: str, body: dict[str, Any]) -> tuple[int, None]:
        # the job a bisect workflow runs: `guardrail bisect --run-at COMMIT --workload W --repeats N`
        i = body["inputs"]
        kw = {"repeats": int(i["repeats"]), "lane": "nightly", "scale": "tiny"}
        t = threading.Thread(target=run_at, args=(repo, db, i["commit"], i["workload"]), kwargs=kw, daemon=True)
        t.start()
        jobs.append(t)
        return 204, None

    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with standin(answer) as (url, log):
        monkeypatch.setenv("GITHUB_API_URL", url)
        code, doc, err = _bisect(capsys, db, repo, shas, "--dispatch", "github", "--github-repo", "org/project",
                                 "--wait", "300", "--poll", "0.2")  # fmt: skip
    for t in jobs:
        t.join(timeout=60)
    assert code == 0, (err, doc.get("lines"))
    assert doc["culprit"] == shas[5]
    dispatched = [json.loads(json.dumps(r["body"]))["inputs"]["commit"] for r in log]
    assert dispatched[:2] == [shas[0], shas[-1]] and dispatched[-1] == shas[5]
    # one dispatch per run step, and a commit dispatched again only for a stated reason: the culprit's
    # confirmation, or more repeats where the shared machine's noise left a comparison unclear
    runs = [s for s in doc["steps"] if s["action"] == "run"]
    assert [s["sha"] for s in runs] == dispatched
    again = [s["why"] for i, s in enumerate(runs) if s["sha"] in {r["sha"] for r in runs[:i]}]
    assert all(w == "confirm the culprit once more" or "more repeats" in w for w in again)
    # looked at twice before it is named: the confirmation, or a second look it already had for being unclear
    assert sum(s["sha"] == shas[5] for s in runs) >= 2 and again.count("confirm the culprit once more") <= 1
