"""The application factory: `create_app(db_url)` gives the dashboard, the JSON API and the static assets.

Run it with `guardrail serve`, or under several uvicorn workers with `web.app:app_from_env` (factory),
which reads GUARDRAIL_DB and GUARDRAIL_READ_TOKEN.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from sqlalchemy.exc import DataError

from guardrail.errors import InfraError, InputError, NotFound
from web import auth, charts
from web.api import router as api_router
from web.cache import TTLCache
from web.pages import router as page_router
from web.pages.downloads import reads as downloads_router
from web.pages.rendering import qs

HERE = Path(__file__).resolve().parent


def _finite(x: object) -> object:
    """`x` with every NaN or infinity replaced by None (JSON has no such numbers)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


class FiniteJSONResponse(JSONResponse):
    """JSON whose non-finite numbers read as null: a stored infinity (an old row, a metric of 0 ms turned into a
    ratio) is one unknown value in the answer, not a 500 for the whole request. Only a failing render pays for the
    walk."""

    def render(self, content: object) -> bytes:
        try:
            return super().render(content)
        except ValueError:
            return super().render(_finite(content))


def _templates() -> Jinja2Templates:
    # Autoescape everything: workload names, notes and commit messages are untrusted text.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.globals.update(fmt=charts.fmt, qs=qs)
    env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:+.1f}%"
    env.filters["short"] = lambda v, n=10: "" if v is None else str(v)[:n]
    return Jinja2Templates(env=env)


DEFAULT_THREADS = 2

# A request body larger than this is refused with 413 while it streams in. A batch upload of result files is a
# few MiB in practice; 32 MiB leaves room for big JUnit batches while one hostile request cannot make a worker
# hold 64 MiB x a batch in memory (the JSON body is parsed whole). GUARDRAIL_MAX_BODY_MB or
# `guardrail serve --max-body-mb` change it.
DEFAULT_MAX_BODY_MB = 32

# Scripts only from /static (the series chart's data is a JSON block, which CSP does not run); style attributes
# carry the charts' colours and bar widths, hence 'unsafe-inline' for styles only. No framing by any site.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class _TooLarge(HTTPException):
    # An HTTPException so that FastAPI's body reader passes it on (it turns other errors into a 400).
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the service's limit of {limit / (1 << 20):g} MiB")


class Guard:
    """Pure ASGI middleware, outside everything else: security headers on every response; an API write's Bearer
    token checked (read-only) before one byte of its body is read, 401 otherwise; request bodies counted as
    receive() delivers them and refused with 413 as soon as they pass the limit, whatever Content-Length says."""

    def __init__(self, app, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {
                    **message,
                    "headers": list(message.get("headers", [])) + [h for h in SECURITY_HEADERS if h[0] not in names],
                }
            await send(message)

        async def refuse(status: int, detail: str, extra: list | None = None) -> None:
            body = json.dumps({"detail": detail}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            # The rest of the body is never read: the connection is closed after this answer.
            headers += [(b"connection", b"close")] + (extra or [])
            await send_with_headers({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        too_large = _TooLarge(self.max_body).detail
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await refuse(413, too_large)
        if _is_api_write(scope):
            request = Request(scope)
            name = await anyio.to_thread.run_sync(lambda: auth.token_name(request, cookie=False))
            if name is None:
                return await refuse(401, auth.WRITER_REQUIRED, [(b"www-authenticate", b"Bearer")])
            scope.setdefault("state", {})["writer"] = name

        seen = 0

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except _TooLarge:
            if started:
                raise
            await refuse(413, too_large)


def _is_api_write(scope) -> bool:
    return scope["method"] in WRITE_METHODS and scope["path"].startswith("/api/")


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornHttp
except ImportError:  # uvicorn without httptools parses with h11
    from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornHttp  # type: ignore[assignment]

# One socket read. The event loop's own read is up to 256 KiB, so the read that brings a request's head can bring
# that much of its body too, before the Guard has looked at the token.
READ_SIZE = 16 * 1024


class GuardedHttp(asyncio.BufferedProtocol):
    """uvicorn's HTTP/1.1 protocol (`uvicorn.run(..., http=GuardedHttp)`) reading at most READ_SIZE bytes a read,
    and none of an API write's body after the read that completed its head until the app first asks for it.

    uvicorn reads ahead on its own: it pauses only once 64 KiB of body wait for the app, and one read may bring
    256 KiB, so an unauthenticated upload had ~114 KiB read while its token was checked in the thread pool. Here
    the server reads no more than the request head plus READ_SIZE of its body before the Guard's 401.

    A wrapper, not a subclass: uvloop reads into the protocol's own buffer only for a protocol that is not an
    asyncio.Protocol, which uvicorn's are."""

    def __init__(self, *args, **kwargs) -> None:
        self._http = _UvicornHttp(*args, **kwargs)
        self._view = memoryview(bytearray(READ_SIZE))
        self._held: object | None = None

    def connection_made(self, transport) -> None:
        self._http.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._http.connection_lost(exc)

    def eof_received(self) -> None:
        self._http.eof_received()

    def pause_writing(self) -> None:
        self._http.pause_writing()

    def resume_writing(self) -> None:
        self._http.resume_writing()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        http = self._http
        http.data_received(bytes(self._view[:nbytes]))
        cycle = http.cycle
        # A new API write's head came in this read: stop reading until the app calls receive(), which resumes.
        if cycle is not None and cycle is not self._held and not cycle.response_complete and _is_api_write(cycle.scope):
            self._held = cycle
            http.flow.pause_reading()


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def create_app(
    db_url: str,
    *,
    read_token_required: bool = False,
    cache_ttl: float = 10.0,
    threads: int | None = None,
    max_body_mb: float | None = None,
) -> FastAPI:
    """`max_body_mb`: the request-body limit (default GUARDRAIL_MAX_BODY_MB, else 32).

    `threads`: how many requests one worker process runs at once in its thread pool (default: the
    GUARDRAIL_WEB_THREADS environment variable, else 2; measured in docs/dashboard.md: 4 threads a worker
    served half the requests per second of 2 on two cores, 40 worse still)."""
    if threads is None:
        threads = int(os.environ.get("GUARDRAIL_WEB_THREADS") or 0) or DEFAULT_THREADS
    if max_body_mb is None:
        max_body_mb = float(os.environ.get("GUARDRAIL_MAX_BODY_MB") or 0) or DEFAULT_MAX_BODY_MB

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Page handlers are plain functions (blocking database calls) run in AnyIO's thread pool. On a small
        # machine many threads of one process fight over the GIL, and a thread back from a database round trip
        # waits behind them for it; a few threads per worker and more worker processes serve more per second.
        if threads:
            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    # FastAPI's own /docs pages load their scripts from a CDN; ours is a plain local page instead.
    app = FastAPI(
        title="perf-guardrail",
        version="1",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        default_response_class=FiniteJSONResponse,
        description="Performance guardrail dashboard and JSON API. Reads are public unless the "
        "service requires a token; writes need `Authorization: Bearer <token>` "
        "(`guardrail token create NAME`).",
    )
    app.state.db_url = db_url
    app.state.read_token_required = read_token_required
    app.state.templates = _templates()
    app.state.cache = TTLCache(ttl=cache_ttl)
    # The PR comment is our own markdown whose untrusted parts are escaped by render_markdown; its few HTML
    # tags (<sub>, <details>) are ours. markdown-it refuses javascript: links.
    app.state.markdown = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api_router)
    app.include_router(page_router)
    app.include_router(downloads_router)
    app.add_middleware(Guard, max_body=int(max_body_mb * (1 << 20)))

    def error(request: Request, status: int, message: str, headers: dict | None = None):
        if _wants_html(request):
            return app.state.templates.TemplateResponse(
                request,
                "message.html",
                {"title": f"Error {status}", "message": message, "link": "/", "signed_in": False},
                status_code=status,
                headers=headers,
            )
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound):
        # The one 404 of the read models and writes: JSON for the API, the message page for a browser.
        return error(request, 404, str(exc))

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError):
        return error(request, 422, str(exc))

    @app.exception_handler(InfraError)
    async def infra_error(request: Request, exc: InfraError):
        return error(request, 503, str(exc))

    @app.exception_handler(DataError)
    async def bad_value(request: Request, exc: Exception):
        # A value the database cannot hold (out-of-range number, NUL in text): the request was bad.
        return error(request, 422, "a value in the request cannot be stored or searched for")

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def api_docs(request: Request):
        from web import api_docs as docs

        spec = app.openapi()
        ops = docs.operations(spec)
        return app.state.templates.TemplateResponse(
            request,
            "api_docs.html",
            {
                "reads": [o for o in ops if not o["write"]],
                "writes": [o for o in ops if o["write"]],
                "signed_in": False,
                "title": spec["info"]["title"],
                "description": docs.inline_md(spec["info"].get("description", "")),
            },
        )

    @app.get("/healthz", include_in_schema=False, response_class=HTMLResponse)
    def healthz() -> str:
        return "ok"

    return app


def app_from_env() -> FastAPI:
    url = os.environ.get("GUARDRAIL_DB") or "sqlite:///guardrail.db"
    return create_app(url, read_token_required=bool(os.environ.get("GUARDRAIL_READ_TOKEN")))
