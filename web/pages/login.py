"""Signing in with an API token (an HttpOnly cookie the forms then carry) and signing out. A triage posted while
signed out comes here with what was typed; after signing in the browser goes back to that page with it."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from guardrail.api_tokens import verify_token
from web.auth import COOKIE
from web.pages.rendering import local_url, render, session

public = APIRouter(include_in_schema=False)  # signing in must work without a token

DEFAULT_NEXT = "/alerts"


@public.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str, Query(max_length=2000)] = DEFAULT_NEXT):
    return render(request, "login.html", error=None, next_url=local_url(next, DEFAULT_NEXT), pending=None)


def _back_to(next_url: str, state: str, note: str, issue_url: str) -> str:
    """`next_url` on this site, with the triage typed before signing in as its query (the page fills it in)."""
    url = local_url(next_url, DEFAULT_NEXT)
    carried = urlencode({k: v for k, v in (("state", state), ("note", note), ("issue_url", issue_url)) if v})
    if not carried:
        return url
    return url + ("&" if "?" in url else "?") + carried


@public.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    token: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = DEFAULT_NEXT,
    state: Annotated[str, Form(max_length=20)] = "",
    note: Annotated[str, Form(max_length=10000)] = "",
    issue_url: Annotated[str, Form(max_length=2000)] = "",
):
    with session(request, write=True) as s:
        row = verify_token(s, token.strip())
    if row is None:
        pending = {"state": state, "note": note, "issue_url": issue_url} if (state or note or issue_url) else None
        return render(
            request,
            "login.html",
            status_code=401,
            error="That token is not valid (or was revoked).",
            next_url=local_url(next, DEFAULT_NEXT),
            pending=pending,
        )
    resp = RedirectResponse(_back_to(next, state, note, issue_url), status_code=303)
    resp.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=30 * 24 * 3600,
    )
    return resp


@public.post("/logout")
def logout():
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE)
    return resp
