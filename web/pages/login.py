"""Signing in with an API token (an HttpOnly cookie the forms then carry) and signing out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from guardrail.api_tokens import verify_token
from web.auth import COOKIE
from web.pages.rendering import render, session

public = APIRouter(include_in_schema=False)  # signing in must work without a token


@public.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    return render(request, "login.html", error=None)


@public.post("/login", response_class=HTMLResponse)
def login(request: Request, token: Annotated[str, Form(max_length=200)]):
    with session(request, write=True) as s:
        row = verify_token(s, token.strip())
    if row is None:
        return render(request, "login.html", status_code=401, error="That token is not valid (or was revoked).")
    resp = RedirectResponse("/alerts", status_code=303)
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
