"""The alerts pages (the filtered list, one alert) and their triage forms."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from guardrail import alerts
from guardrail.vocabulary import TRIAGE_STATES
from web.auth import require_reader, token_name
from web.pages.rendering import Opt, local_url, render, session, this_url
from web.params import MAX_ID, PathId
from web.read import alerts as alert_reads

reads = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])
forms = APIRouter(include_in_schema=False)


@reads.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    state: Opt = None,
    kind: Opt = None,
    hardware: Opt = None,
    lane: Opt = None,
    workload: Opt = None,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
):
    states = [x for x in (state or "").split(",") if x in TRIAGE_STATES] or None
    with session(request) as s:
        data = alert_reads.alerts(
            s,
            states=states,
            kind=kind or None,
            hardware=hardware or None,
            lane=lane or None,
            workload=workload or None,
            limit=100,
            offset=offset,
        )
    filters = {
        "state": state or "",
        "kind": kind or "",
        "hardware": hardware or "",
        "lane": lane or "",
        "workload": workload or "",
    }
    return render(request, "alerts.html", data=data, filters=filters, states=TRIAGE_STATES, next_url=this_url(request))


@reads.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(request: Request, alert_id: PathId):
    with session(request) as s:
        alert = alert_reads.alert_detail(s, alert_id)
    return render(request, "alert.html", alert=alert, states=TRIAGE_STATES)


def _form_triage(request: Request, ids: list[int], state: str, note: str, issue_url: str, next_url: str):
    author = token_name(request, cookie=True)
    if author is None:
        return render(
            request,
            "message.html",
            status_code=401,
            title="Sign in to triage",
            message="Changing an alert needs a token: sign in with one from `guardrail token create`.",
            link="/login",
        )
    if state not in TRIAGE_STATES or not ids:
        return render(
            request,
            "message.html",
            status_code=422,
            title="Nothing changed",
            message="Pick at least one alert and a triage state.",
            link=next_url,
        )
    issue = issue_url.strip()
    if issue and not issue.startswith(("https://", "http://")):
        return render(
            request,
            "message.html",
            status_code=422,
            title="Nothing changed",
            message="The issue link must be an http(s) URL.",
            link=next_url,
        )
    with session(request, write=True) as s:  # all or none: an unknown id answers 404 and changes nothing
        alerts.triage(s, ids, state=state, note=note.strip() or None, issue_url=issue or None, author=author)
    request.app.state.cache.clear()
    return RedirectResponse(local_url(next_url, "/alerts"), status_code=303)


@forms.post("/alerts/{alert_id}/triage", response_class=HTMLResponse)
def alert_triage_form(
    request: Request,
    alert_id: PathId,
    state: Annotated[str, Form(max_length=20)],
    note: Annotated[str, Form(max_length=10000)] = "",
    issue_url: Annotated[str, Form(max_length=2000)] = "",
):
    return _form_triage(request, [alert_id], state, note, issue_url, f"/alerts/{alert_id}")


@forms.post("/alerts/triage", response_class=HTMLResponse)
def bulk_triage_form(
    request: Request,
    state: Annotated[str, Form(max_length=20)],
    ids: Annotated[list[int] | None, Form()] = None,
    note: Annotated[str, Form(max_length=10000)] = "",
    issue_url: Annotated[str, Form(max_length=2000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/alerts",
):
    return _form_triage(request, [i for i in (ids or []) if 1 <= i <= MAX_ID], state, note, issue_url, next)
