"""Who may write (and, when configured, read): API tokens from `Authorization: Bearer`, or the
dashboard's sign-in cookie (HttpOnly, SameSite=Strict, so other sites cannot post with it)."""

from __future__ import annotations

import threading
import time

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from guardrail.api_tokens import touch_token, verify_token
from guardrail.store.db import session_scope

COOKIE = "guardrail_token"
WRITER_REQUIRED = "a valid API token is required (Authorization: Bearer <token>)"

# A token's last use is recorded at most once a minute per token and process, in a thread of its own: checking a
# token never takes the write lock, so on SQLite a request (a bogus one too) never waits behind a running ingest.
TOUCH_EVERY_S = 60.0
_touched: dict[int, float] = {}
_touched_lock = threading.Lock()


def _touch_later(db_url: str, token_id: int) -> None:
    now = time.monotonic()
    with _touched_lock:
        if now - _touched.get(token_id, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
            return
        _touched[token_id] = now

    def touch() -> None:
        try:
            with session_scope(db_url, write=True) as session:
                touch_token(session, token_id)
        except Exception:  # noqa: BLE001 - last use is bookkeeping; a busy or read-only store must not fail requests
            pass

    threading.Thread(target=touch, name="token-last-use", daemon=True).start()


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_name(request: Request, *, cookie: bool) -> str | None:
    """The name of the live token presented with the request, or None."""
    token = bearer(request) or (request.cookies.get(COOKIE) if cookie else None)
    if not token or len(token) > 200:
        return None
    with session_scope(request.app.state.db_url) as session:
        row = verify_token(session, token, touch=False)
        if row is None:
            return None
        name, token_id = row.name, row.id
    _touch_later(request.app.state.db_url, token_id)
    return name


def require_writer(request: Request) -> str:
    """For API writes: a valid Bearer token, else 401. The app's Guard middleware has usually checked it already,
    before the body was read."""
    name = getattr(request.state, "writer", None) or token_name(request, cookie=False)
    if name is None:
        raise HTTPException(401, WRITER_REQUIRED, headers={"WWW-Authenticate": "Bearer"})
    return name


async def require_reader(request: Request) -> None:
    """For reads, only when the app was created with read_token_required. A coroutine, so the usual case (public
    reads) costs no trip through the thread pool; the token lookup, a database query, still runs in it."""
    if request.app.state.read_token_required and await run_in_threadpool(token_name, request, cookie=True) is None:
        raise HTTPException(
            401,
            "this dashboard requires a token to read (sign in or send a Bearer token)",
            headers={"WWW-Authenticate": "Bearer"},
        )
