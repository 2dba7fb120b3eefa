"""A small GitHub REST server on 127.0.0.1 for the tests: issue comments (with Link-header paging),
commit statuses, and an ingest endpoint; failures can be scripted per request.

Not a mock of our client: it is a real HTTP server speaking the same JSON over a real socket.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "ghs_fakeTOKEN_do_not_print_1234567890"


@dataclass
class Scripted:
    """Answer the next `times` requests matching method + path regex with this status instead."""

    method: str
    path: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=lambda: {"message": "scripted failure"})
    times: int = 1
    perform: bool = False  # carry the request out anyway (a 5xx after the write happened)


@dataclass
class Logged:
    method: str
    path: str
    status: int
    authorization: str | None
    body: Any


class FakeGitHub:
    def __init__(self, *, per_page_max: int = 100, token: str = TOKEN, repos: tuple[str, ...] = ("org/project",)):
        self.token = token
        self.repos = set(repos)
        self.per_page_max = per_page_max
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.ingested: list[dict[str, Any]] = []
        self.log: list[Logged] = []
        self.script: list[Scripted] = []
        self._next_id = 1000
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, method: str, path: str, status: int, **kw: Any) -> None:
        self.script.append(Scripted(method, path, status, **kw))

    def add_comment(self, repo: str, pr: int, body: str, *, login: str = "someone", type_: str = "User") -> int:
        with self._lock:
            self._next_id += 1
            self.comments.setdefault((repo, pr), []).append(
                {"id": self._next_id, "body": body, "user": {"login": login, "type": type_}}
            )
            return self._next_id

    def requests(self, method: str | None = None, path: str = "") -> list[Logged]:
        return [r for r in self.log if (method is None or r.method == method) and re.search(path, r.path)]

    # --- the server ---------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PATCH(self) -> None:
                self._dispatch("PATCH")

            def _dispatch(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                auth = self.headers.get("authorization")
                status, headers, payload = fake._route(method, parts.path, parse_qs(parts.query), body, auth)
                with fake._lock:
                    fake.log.append(Logged(method, parts.path, status, auth, body))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, auth: str | None
    ) -> tuple[int, dict[str, str], Any]:
        scripted = None
        with self._lock:
            for s in self.script:
                if s.times > 0 and s.method == method and re.search(s.path, path):
                    s.times -= 1
                    scripted = s
                    break
        if scripted is not None and not scripted.perform:
            return scripted.status, scripted.headers, scripted.body
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            return (
                401,
                {},
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
            )
        status, headers, payload = self._serve(method, path, query, body)
        if scripted is not None:
            return scripted.status, scripted.headers, scripted.body
        return status, headers, payload

    def _serve(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, dict[str, str], Any]:
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", path)
        if m and method == "GET":
            repo, pr = m.group(1), int(m.group(2))
            if repo not in self.repos:
                return 404, {}, {"message": "Not Found"}
            items = self.comments.get((repo, pr), [])
            per_page = min(int(query.get("per_page", ["30"])[0]), self.per_page_max)
            page = int(query.get("page", ["1"])[0])
            chunk = items[(page - 1) * per_page : page * per_page]
            headers = {}
            if page * per_page < len(items):
                headers["link"] = (
                    f'<{self.url}{path}?per_page={per_page}&page={page + 1}>; rel="next", '
                    f'<{self.url}{path}?per_page={per_page}&page={-(-len(items) // per_page)}>; rel="last"'
                )
            return 200, headers, chunk
        if m and method == "POST":
            repo, pr = m.group(1), int(m.group(2))
            if repo not in self.repos:
                return 404, {}, {"message": "Not Found"}
            if not isinstance(body, dict) or not body.get("body"):
                return 422, {}, {"message": "Validation Failed", "errors": [{"code": "missing_field"}]}
            with self._lock:
                self._next_id += 1
                comment = {
                    "id": self._next_id,
                    "body": body["body"],
                    "user": {"login": "github-actions[bot]", "type": "Bot"},
                    "html_url": f"https://github.com/{repo}/pull/{pr}#issuecomment-{self._next_id}",
                }
                self.comments.setdefault((repo, pr), []).append(comment)
            return 201, {}, comment
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)", path)
        if m and method == "PATCH":
            for items in self.comments.values():
                for c in items:
                    if c["id"] == int(m.group(2)):
                        c["body"] = body["body"]
                        return 200, {}, c
            return 404, {}, {"message": "Not Found"}
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/statuses/([0-9a-fA-F]+)", path)
        if m and method == "POST":
            if body.get("state") not in ("success", "failure", "error", "pending"):
                return (
                    422,
                    {},
                    {"message": "Validation Failed", "errors": [{"field": "state", "code": "invalid"}]},
                )
            status = {"sha": m.group(2), "repo": m.group(1), **body}
            self.statuses.append(status)
            return 201, {}, status
        if path == "/api/v1/ingest" and method == "POST":
            docs = body.get("documents") if isinstance(body, dict) else None
            if not isinstance(docs, list):
                return 422, {}, {"detail": "documents: expected a list"}
            self.ingested.append(body)
            return 200, {}, {"stored": [d.get("name") for d in docs], "skipped": []}
        return 404, {}, {"message": "Not Found"}
