"""What every page handler shares: rendering a template (with the signed-in flag), a store session, the
query-parameter types and the links a page builds."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from guardrail.store.db import session_scope
from web.auth import COOKIE

Opt = Annotated[str | None, Query(max_length=300)]


def render(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    ctx.setdefault("signed_in", request.cookies.get(COOKIE) is not None)
    return request.app.state.templates.TemplateResponse(request, name, ctx, status_code=status_code)


def session(request: Request, write: bool = False) -> AbstractContextManager[Session]:
    return session_scope(request.app.state.db_url, write=write)


def this_url(request: Request) -> str:
    """The page's own path and query: where a form on it comes back to."""
    return str(request.url.path) + ("?" + request.url.query if request.url.query else "")


def local_url(url: str, default: str) -> str:
    """`url` when it is a path on this site, else `default` (a form's next link cannot send anyone away)."""
    return url if url.startswith("/") and not url.startswith("//") else default


def qs(**params: Any) -> str:
    """A query string from the non-empty params (templates build filter links with it)."""
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})
