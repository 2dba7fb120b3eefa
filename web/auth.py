"""Who may write (and, when configured, read): API tokens from `Authorization: Bearer`, or the
dashboard's sign-in cookie (HttpOnly, SameSite=Strict, so other sites cannot post with it)."""

from __future__ import annotations

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from guardrail.api_tokens import verify_token
from guardrail.store.db import session_scope

COOKIE = "guardrail_token"


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_name(request: Request, *, cookie: bool) -> str | None:
    """The name of the live token presented with the request, or None."""
    token = bearer(request) or (request.cookies.get(COOKIE) if cookie else None)
    if not token or len(token) > 200:
        return None
    with session_scope(request.app.state.db_url, write=True) as session:
        row = verify_token(session, token)
        return row.name if row else None


def require_writer(request: Request) -> str:
    """For API writes: a valid Bearer token, else 401."""
    name = token_name(request, cookie=False)
    if name is None:
        raise HTTPException(
            401, "a valid API token is required (Authorization: Bearer <token>)", headers={"WWW-Authenticate": "Bearer"}
        )
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
