"""`guardrail import buildkite` against a loopback Buildkite REST server (a real HTTP server on 127.0.0.1):
builds paged by the Link header, job artifact lists, 302 downloads from a second "storage" server without the
token, and scripted 401 / 404 / 429 / 5xx answers."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import select

from guardrail.buildkite_import import Retry, import_builds, next_link
from guardrail.errors import InfraError, InputError
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.cli_inprocess import run_cli
from tests.timeline import NOW

TOKEN = "bkua_fakeTOKEN_do_not_print_0123456789"
ORG, PIPE = "vllm", "vllm-omni"
FAST = Retry(attempts=5, base_delay=0.01, max_delay=0.05, max_wait=5.0, timeout=10.0)


@dataclass
class Scripted:
    path: str  # regex on the path
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1


@dataclass
class Logged:
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    status: int


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1:0 answering through `route(method, path, query, headers)`."""

    def __init__(self, route):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                status, headers, body = route(parts.path, parse_qs(parts.query), self.headers)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.outer = outer

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeBuildkite:
    """Builds (newest first, as the API lists them), their jobs' artifacts, and a storage host for the bytes."""

    def __init__(self, *, per_page_max: int = 100):
        self.per_page_max = per_page_max
        self.builds: list[dict[str, Any]] = []
        self.artifacts: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self.blobs: dict[str, bytes] = {}
        self.script: list[Scripted] = []
        self.log: list[Logged] = []
        self.storage_auth: list[str | None] = []
        self.storage_failures = 0  # how many storage GETs answer 503 first
        self._lock = threading.Lock()
        self.api = _Server(self._route)
        self.storage = _Server(self._storage)

    def close(self) -> None:
        self.api.close()
        self.storage.close()

    def add_build(self, number: int, created: datetime, files: dict[str, bytes], *, commit: str | None = None) -> None:
        job = f"job-{number}-a"
        self.builds.append(
            {
                "id": f"uuid-{number}",
                "number": number,
                "state": "passed",
                "commit": commit or f"{number:040x}",
                "branch": "main",
                "web_url": f"https://buildkite.com/{ORG}/{PIPE}/builds/{number}",
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "pull_request": None,
                "pipeline": {"slug": PIPE, "repository": "https://github.com/vllm-project/vllm-omni.git"},
                "jobs": [{"id": "wait-1", "type": "waiter"}, {"id": job, "type": "script", "name": "perf"}],
            }
        )
        self.builds.sort(key=lambda b: -b["number"])
        arts = []
        for i, (name, data) in enumerate(sorted(files.items())):
            aid = f"art-{number}-{i}"
            self.blobs[aid] = data
            base = f"{self.api.url}/v2/organizations/{ORG}/pipelines/{PIPE}/builds/{number}/jobs/{job}/artifacts/{aid}"
            arts.append(
                {
                    "id": aid,
                    "job_id": job,
                    "path": f"tests/dfx/perf/results/{name}",
                    "filename": name,
                    "state": "finished",
                    "file_size": len(data),
                    "url": base,
                    "download_url": f"{base}/download",
                }
            )
        arts.append(
            {
                "id": f"log-{number}",
                "filename": "server.log",
                "path": "logs/server.log",
                "state": "finished",
                "download_url": "never-fetched",
            }
        )
        self.artifacts[(number, job)] = arts

    def requests(self, path: str = "") -> list[Logged]:
        return [r for r in self.log if re.search(path, r.path)]

    def _page(self, items: list[Any], path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        per_page = min(int(query.get("per_page", ["30"])[0]), self.per_page_max)
        page = int(query.get("page", ["1"])[0])
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {"Content-Type": "application/json"}
        if page * per_page < len(items):
            q = {k: v[0] for k, v in query.items()}
            q.update(page=str(page + 1), per_page=str(per_page))
            headers["Link"] = f'<{self.api.url}{path}?{urlencode(q)}>; rel="next"'
        return 200, headers, chunk

    def _route(self, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, dict[str, str], Any]:
        auth = headers.get("Authorization")
        status, out_headers, body = self._answer(path, query, auth)
        with self._lock:
            self.log.append(Logged(path, query, auth, status))
        return status, out_headers, body

    def _answer(self, path: str, query: dict[str, list[str]], auth: str | None) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            for s in self.script:
                if s.times > 0 and re.search(s.path, path):
                    s.times -= 1
                    # The body echoes what was presented: our messages must not repeat it.
                    return s.status, {"Content-Type": "application/json", **s.headers}, {"message": f"no ({auth})"}
        if auth != f"Bearer {TOKEN}":
            return 401, {}, {"message": f"Authentication required, got {auth}"}
        base = f"/v2/organizations/{ORG}/pipelines/{PIPE}/builds"
        if path == base:
            since = datetime.fromisoformat(query["created_from"][0].replace("Z", "+00:00"))
            chosen = [b for b in self.builds if datetime.fromisoformat(b["created_at"].replace("Z", "+00:00")) >= since]
            return self._page(chosen, path, query)
        if mt := re.fullmatch(re.escape(base) + r"/(\d+)/jobs/([^/]+)/artifacts", path):
            return self._page(self.artifacts.get((int(mt[1]), mt[2]), []), path, query)
        if mt := re.fullmatch(re.escape(base) + r"/\d+/jobs/[^/]+/artifacts/([^/]+)/download", path):
            return 302, {"Location": f"{self.storage.url}/bucket/{mt[1]}?X-Amz-Signature=abc"}, b""
        return 404, {}, {"message": "Not Found"}

    def _storage(self, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, dict[str, str], Any]:
        self.storage_auth.append(headers.get("Authorization"))
        with self._lock:
            if self.storage_failures > 0:
                self.storage_failures -= 1
                return 503, {}, b"slow down"
        aid = path.rsplit("/", 1)[-1]
        if aid not in self.blobs or "X-Amz-Signature" not in query:
            return 403, {}, b"denied"
        return 200, {"Content-Type": "application/octet-stream"}, self.blobs[aid]


def diffusion_file(number: int, latency: float, commit: str | None = None) -> bytes:
    """A vLLM-Omni `diffusion_result_*.json` of one record, as the nightly writes them (newer layout)."""
    record = {
        "test_name": "test_qwen_image_edit_single_device",
        "endpoint": "/v1/images/edits",
        "timestamp": "20260601-010101",
        "benchmark_params": {"name": "512x512_steps20_i2i"},
        "result": {
            "completed_requests": 10,
            "failed_requests": 0,
            "throughput_qps": 1 / latency,
            "latency_mean": latency,
            "latency_median": latency,
            "latency_p99": latency * 1.02,
            "latency_p95": latency * 1.01,
            "peak_memory_mb_max": 50000.0,
            "peak_memory_mb_mean": 50000.0,
            "peak_memory_mb_median": 50000.0,
        },
        "Model": "Qwen/Qwen-Image-Edit",
        "Framework": "vllm-omni",
        "API Endpoint": "/v1/images/edits",
        "Hardware": "",
        "Task": "i2i",
        "resolution": "512x512",
        "Parallelism": "none",
        "max_concurrency": 1,
        "Cache": "disabled",
        "completed": 10,
        "failed": 0,
        "commit_sha": commit or f"{number:040x}",
        "build_id": f"uuid-{number}",
        "build_url": f"https://buildkite.com/{ORG}/{PIPE}/builds/{number}",
    }
    return json.dumps([record]).encode()


@pytest.fixture
def bk():
    fake = FakeBuildkite(per_page_max=2)
    yield fake
    fake.close()


def _runs(url: str) -> list[tuple[str | None, str | None, str | None]]:
    with session_scope(url) as s:
        rows = s.execute(select(m.Run.ci_provider, m.Run.ci_run_id, m.Run.ci_url).order_by(m.Run.ci_run_id)).all()
    return [tuple(r) for r in rows]


def test_next_link():
    header = '<https://api.buildkite.com/v2/x?page=3>; rel="next", <https://api.buildkite.com/v2/x?page=9>; rel="last"'
    assert next_link(header) == "https://api.buildkite.com/v2/x?page=3"
    assert next_link('<https://api.buildkite.com/v2/x?page=1>; rel="prev"') is None
    assert next_link(None) is None


def test_import_pages_downloads_and_is_idempotent(bk, db_url, capsys, monkeypatch):
    start = NOW - timedelta(days=10)
    for i, number in enumerate((501, 502, 503, 504, 505)):
        bk.add_build(
            number,
            start + timedelta(days=i),
            {"diffusion_result_test_qwen_image_edit_1.json": diffusion_file(number, 2.0 + i / 100)},
        )
    bk.add_build(400, start - timedelta(days=30), {"diffusion_result_old.json": diffusion_file(400, 2.0)})
    monkeypatch.setenv("BUILDKITE_API_TOKEN", TOKEN)
    since = (start - timedelta(hours=1)).date().isoformat()
    args = (
        "import",
        "buildkite",
        "--org",
        ORG,
        "--pipeline",
        PIPE,
        "--since",
        since,
        "--db",
        db_url,
        "--api",
        bk.api.url,
    )

    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "5 build(s), 5 result file(s): 5 stored, 0 already there" in out
    # Paging: 5 builds at 2 a page is 3 requests, the 2nd and 3rd from the Link header, each with the filter kept.
    listed = bk.requests(r"/builds$")
    assert len(listed) == 3
    assert all(r.query["created_from"] == [f"{since}T00:00:00Z"] for r in listed)
    # Job artifact lists (3 files a build would page too: here 2 entries, one page) and the 302 downloads.
    assert len(bk.requests(r"/jobs/job-\d+-a/artifacts$")) == 5
    assert len(bk.requests(r"/download$")) == 5
    assert bk.storage_auth == [None] * 5, "the token must never reach the storage host"
    assert not bk.requests("wait-1"), "waiter jobs have no artifacts to ask for"
    assert _runs(db_url) == [
        ("buildkite", str(n), f"https://buildkite.com/{ORG}/{PIPE}/builds/{n}") for n in range(501, 506)
    ]
    assert TOKEN not in out + err

    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "nothing new: all 5 results of 5 build(s) were already stored" in out
    assert len(_runs(db_url)) == 5


def test_a_second_file_of_a_build_without_a_build_url_joins_its_run(bk, sqlite_url, monkeypatch):
    """A TTS-bench `result_*.json` names no build: the build's number from the API is its run id."""
    tts = {
        "date": "20260601-010000",
        "backend": "openai-audio-speech",
        "model_id": "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice",
        "num_prompts": 20,
        "max_concurrency": 1,
        "duration": 13.3,
        "completed": 20,
        "failed": 0,
        "request_throughput": 1.5,
        "mean_e2el_ms": 600.0,
        "median_e2el_ms": 590.0,
        "p99_e2el_ms": 700.0,
    }
    bk.add_build(
        600,
        NOW - timedelta(days=1),
        {
            "diffusion_result_a.json": diffusion_file(600, 2.0),
            "result_test_qwen3_tts_x_20260601-010000.json": json.dumps(tts).encode(),
        },
    )
    report = import_builds(
        sqlite_url,
        org=ORG,
        pipeline=PIPE,
        since=NOW - timedelta(days=2),
        token=TOKEN,
        api=bk.api.url,
        hardware="H100",
        retry=FAST,
    )
    assert [(b.number, b.files, b.error) for b in report.builds] == [(600, 2, None)]
    assert report.stored == 2
    runs = _runs(sqlite_url)
    assert {r[1] for r in runs} == {"600"}


def test_401_is_exit_3_in_one_line_without_the_token(bk, sqlite_url, capsys, monkeypatch):
    monkeypatch.setenv("BUILDKITE_API_TOKEN", "bkua_wrong_token_never_printed_42")
    code, out, err = run_cli(
        capsys,
        "import",
        "buildkite",
        "--org",
        ORG,
        "--pipeline",
        PIPE,
        "--since",
        "2026-01-01",
        "--db",
        sqlite_url,
        "--api",
        bk.api.url,
    )
    assert code == 3
    assert len(err.strip().splitlines()) == 1
    assert "HTTP 401" in err and "BUILDKITE_API_TOKEN" in err
    assert "bkua_wrong_token_never_printed_42" not in out + err
    assert len(bk.log) == 1, "a 401 is not retried"


def test_missing_token_is_bad_input(bk, sqlite_url, capsys, monkeypatch):
    monkeypatch.delenv("BUILDKITE_API_TOKEN", raising=False)
    code, _, err = run_cli(
        capsys,
        "import",
        "buildkite",
        "--org",
        ORG,
        "--pipeline",
        PIPE,
        "--since",
        "2026-01-01",
        "--db",
        sqlite_url,
        "--api",
        bk.api.url,
    )
    assert code == 2 and "$BUILDKITE_API_TOKEN" in err
    assert bk.log == []


def test_404_is_bad_input_and_not_retried(bk, sqlite_url):
    with pytest.raises(InputError, match=r"HTTP 404 not found \(check --org and --pipeline\)"):
        import_builds(sqlite_url, org="nope", pipeline=PIPE, since=NOW, token=TOKEN, api=bk.api.url, retry=FAST)
    assert len(bk.log) == 1


def test_429_waits_for_the_rate_limit_reset_then_goes_on(bk, sqlite_url):
    bk.add_build(700, NOW - timedelta(days=1), {"diffusion_result_a.json": diffusion_file(700, 2.0)})
    bk.script.append(Scripted(r"/builds$", 429, {"RateLimit-Remaining": "0", "RateLimit-Reset": "3"}, times=2))
    waits: list[float] = []
    report = import_builds(
        sqlite_url,
        org=ORG,
        pipeline=PIPE,
        since=NOW - timedelta(days=2),
        token=TOKEN,
        api=bk.api.url,
        retry=FAST,
        sleep=waits.append,
    )
    assert waits == [3.0, 3.0]
    assert report.stored == 1 and report.retries == 2


def test_429_past_the_longest_wait_fails_as_infrastructure(bk, sqlite_url):
    bk.script.append(Scripted(r"/builds$", 429, {"RateLimit-Reset": "3600"}, times=1))
    with pytest.raises(InfraError, match="HTTP 429 rate limited"):
        import_builds(
            sqlite_url, org=ORG, pipeline=PIPE, since=NOW, token=TOKEN, api=bk.api.url, retry=FAST, sleep=lambda s: None
        )


def test_5xx_is_retried_with_backoff(bk, sqlite_url):
    bk.add_build(800, NOW - timedelta(days=1), {"diffusion_result_a.json": diffusion_file(800, 2.0)})
    bk.script.append(Scripted(r"/artifacts$", 502, times=2))
    bk.script.append(Scripted(r"/download$", 503, times=1))
    bk.storage_failures = 1
    waits: list[float] = []
    report = import_builds(
        sqlite_url,
        org=ORG,
        pipeline=PIPE,
        since=NOW - timedelta(days=2),
        token=TOKEN,
        api=bk.api.url,
        retry=FAST,
        sleep=waits.append,
    )
    assert report.stored == 1 and report.retries == 4
    assert len(waits) == 4 and all(0 < w <= FAST.max_delay for w in waits)
    assert bk.storage_auth == [None, None]


def test_5xx_every_time_is_exit_3_after_the_attempts(bk, sqlite_url, capsys, monkeypatch):
    bk.script.append(Scripted(r"/builds$", 500, times=99))
    monkeypatch.setenv("BUILDKITE_API_TOKEN", TOKEN)
    monkeypatch.setattr("guardrail.buildkite_import.Retry", lambda: FAST)  # real sleeps, short ones
    code, out, err = run_cli(
        capsys,
        "import",
        "buildkite",
        "--org",
        ORG,
        "--pipeline",
        PIPE,
        "--since",
        "2026-01-01",
        "--db",
        sqlite_url,
        "--api",
        bk.api.url,
    )
    assert code == 3, err
    assert "HTTP 500 server error after 5 attempts" in err
    assert TOKEN not in out + err
    assert len(bk.log) == 5


def test_a_build_with_a_bad_file_is_reported_and_the_others_imported(bk, sqlite_url, capsys, monkeypatch):
    bk.add_build(901, NOW - timedelta(days=2), {"diffusion_result_a.json": b"[{not json"})
    bk.add_build(902, NOW - timedelta(days=1), {"diffusion_result_a.json": diffusion_file(902, 2.0)})
    monkeypatch.setenv("BUILDKITE_API_TOKEN", TOKEN)
    code, out, err = run_cli(
        capsys,
        "import",
        "buildkite",
        "--org",
        ORG,
        "--pipeline",
        PIPE,
        "--since",
        (NOW - timedelta(days=3)).isoformat(),
        "--db",
        sqlite_url,
        "--api",
        bk.api.url,
    )
    assert code == 2
    assert "build 901: not imported: diffusion_result_a.json" in out
    assert "build 902: 1 file(s), 1 stored" in out
    assert "1 build(s) failed" in out
    assert _runs(sqlite_url) == [("buildkite", "902", f"https://buildkite.com/{ORG}/{PIPE}/builds/902")]


def test_a_paging_link_to_another_host_is_refused(bk, sqlite_url):
    bk.add_build(1, NOW - timedelta(days=1), {})
    bk.add_build(2, NOW - timedelta(days=1), {})
    bk.add_build(3, NOW - timedelta(days=1), {})
    real = bk._page

    def evil(items, path, query):
        status, headers, body = real(items, path, query)
        if "Link" in headers:
            headers["Link"] = '<http://evil.example/v2/steal?page=2>; rel="next"'
        return status, headers, body

    bk._page = evil
    with pytest.raises(InfraError, match="refusing to send the token"):
        import_builds(
            sqlite_url, org=ORG, pipeline=PIPE, since=NOW - timedelta(days=2), token=TOKEN, api=bk.api.url, retry=FAST
        )


def serve_corpus_builds(bk: FakeBuildkite, folder: Path) -> list[int]:
    """The corpus' Buildkite artifact folders (buildkite_nightly_raw/<build>/), as the API would list them."""
    numbers = []
    for build_dir in sorted(folder.iterdir(), key=lambda p: int(p.name)):
        files = {p.name: p.read_bytes() for p in build_dir.glob("*.json")}
        stamp = max(re.search(r"(\d{8})-(\d{6})", n).group(1) for n in files)
        created = datetime.strptime(stamp, "%Y%m%d").replace(tzinfo=UTC)
        commit = json.loads(next(v for n, v in sorted(files.items()) if n.startswith("diffusion_result_")))[0].get(
            "commit_sha"
        )
        bk.add_build(int(build_dir.name), created, files, commit=commit)
        numbers.append(int(build_dir.name))
    return numbers


def test_import_of_the_corpus_keeps_build_numbers_as_run_ids(corpus, sqlite_url, capsys, monkeypatch):
    fake = FakeBuildkite(per_page_max=5)
    try:
        numbers = serve_corpus_builds(fake, corpus / "vllm-omni-nightly" / "buildkite_nightly_raw")
        monkeypatch.setenv("BUILDKITE_API_TOKEN", TOKEN)
        args = (
            "import",
            "buildkite",
            "--org",
            ORG,
            "--pipeline",
            PIPE,
            "--since",
            "2026-05-01",
            "--db",
            sqlite_url,
            "--api",
            fake.api.url,
        )
        code, out, err = run_cli(capsys, *args)
        assert code == 0, err + out
        files = sum(
            len(list(p.glob("*.json"))) for p in (corpus / "vllm-omni-nightly" / "buildkite_nightly_raw").iterdir()
        )
        assert f"{len(numbers)} build(s), {files} result file(s)" in out
        assert {r[1] for r in _runs(sqlite_url)} == {str(n) for n in numbers}
        assert {r[0] for r in _runs(sqlite_url)} == {"buildkite"}
        code, out, err = run_cli(capsys, *args)
        assert code == 0 and "nothing new" in out, out
    finally:
        fake.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "last tuesday"), "--since: expected a date or time such as 2026-06-01"),
        (("--since", "2026-06-01", "--api", "http://api.example.org"), "--api: must be https"),
        (("--since", "2026-06-01", "--api", "ftp://x"), "--api: must be an http(s) URL"),
    ],
)
def test_bad_arguments_are_exit_2(sqlite_url, capsys, monkeypatch, args, message):
    monkeypatch.setenv("BUILDKITE_API_TOKEN", TOKEN)
    code, _, err = run_cli(capsys, "import", "buildkite", "--org", ORG, "--pipeline", PIPE, "--db", sqlite_url, *args)
    assert code == 2 and message in err, err
    assert TOKEN not in err


def test_a_retried_job_is_superseded_by_its_retry(bk, sqlite_url):
    bk.add_build(1000, NOW - timedelta(days=1), {"diffusion_result_a.json": diffusion_file(1000, 9.0)})
    build = bk.builds[0]
    first = build["jobs"][1]
    first["retried"] = True
    retry = {**first, "id": "job-1000-b", "retried": False}
    build["jobs"].append(retry)
    bk.artifacts[(1000, "job-1000-b")] = [
        {**a, "download_url": a["download_url"].replace("job-1000-a", "job-1000-b")}
        for a in bk.artifacts[(1000, "job-1000-a")]
    ]
    report = import_builds(sqlite_url, org=ORG, pipeline=PIPE, since=NOW - timedelta(days=2), token=TOKEN,
                           api=bk.api.url, retry=FAST)  # fmt: skip
    assert [(b.number, b.files, b.stored) for b in report.builds] == [(1000, 1, 1)]
    assert not bk.requests("job-1000-a"), "the superseded job's artifacts are not read"
    assert len(bk.requests("job-1000-b/artifacts$")) == 1
