"""The CI test result pages: flaky tests, one test case, reruns, and the quarantine form they share."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from guardrail import clock
from guardrail.errors import InputError
from guardrail.quarantine import add_entry, remove_entry
from web import charts
from web.auth import require_reader, token_name
from web.cached_reads import cached_flaky
from web.pages.rendering import Opt, local_url, render, session, this_url
from web.params import MAX_ID, PathId
from web.read import junit_results

reads = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])
forms = APIRouter(include_in_schema=False)


def _strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # copies: the rows may be the cached read model the API also returns
    return [{**r, "strip_svg": charts.history_strip(r["strip"])} for r in rows]


@reads.get("/flaky", response_class=HTMLResponse)
def flaky_page(request: Request, lane: Opt = None, hardware: Opt = None):
    with session(request) as s:
        if not junit_results.has_tests(s):
            return render(
                request,
                "message.html",
                title="Flaky tests",
                message="No test results ingested yet. Once JUnit results are stored, this page ranks tests "
                "by flakiness score and CI minutes lost.",
                link="/",
            )
        choices = junit_results.filter_choices(s)
    data = cached_flaky(request, lane or None, hardware or None)
    data = {**data, "tests": _strip(data["tests"]), "by_minutes": _strip(data["by_minutes"])}
    return render(
        request,
        "flaky.html",
        d=data,
        choices=choices,
        lane=lane or "",
        hardware=hardware or "",
        colors=charts.VERDICT_COLORS,
        next_url=this_url(request),
    )


@reads.get("/tests/{test_pk}", response_class=HTMLResponse)
def case_page(request: Request, test_pk: PathId):
    with session(request) as s:
        data = junit_results.case_detail(s, test_pk)
    data["strip_svg"] = charts.history_strip(data["strip"])
    return render(request, "test.html", d=data, colors=charts.VERDICT_COLORS, next_url=f"/tests/{test_pk}")


@forms.post("/flaky/quarantine", response_class=HTMLResponse)
def quarantine_form(
    request: Request,
    test: Annotated[str, Form(min_length=1, max_length=5000)],
    action: Annotated[str, Form(max_length=20)],
    reason: Annotated[str, Form(max_length=2000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/flaky",
):
    """Quarantine (with a reason) or release a test from the flaky and test pages: the sign-in cookie's token
    names who did it, stored through the functions `guardrail quarantine add/remove` use."""
    safe_next = local_url(next, "/flaky")
    author = token_name(request, cookie=True)
    if author is None:
        return render(
            request,
            "message.html",
            status_code=401,
            title="Sign in to quarantine",
            message="Quarantining or releasing a test needs a token: sign in with one from `guardrail token create`.",
            link="/login",
        )
    if action not in ("quarantine", "release") or not reason.strip():
        return render(
            request,
            "message.html",
            status_code=422,
            title="Nothing changed",
            message="Give a reason (it is kept with the entry) and pick quarantine or release.",
            link=safe_next,
        )
    op = add_entry if action == "quarantine" else remove_entry
    try:
        with session(request, write=True) as s:
            op(s, test, reason=reason.strip(), by=author, now=clock.now())
    except InputError as exc:
        return render(
            request, "message.html", status_code=422, title="Nothing changed", message=str(exc), link=safe_next
        )
    request.app.state.cache.clear()
    return RedirectResponse(safe_next, status_code=303)


@reads.get("/reruns", response_class=HTMLResponse)
def reruns_page(
    request: Request,
    run: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    kind: Opt = None,
):
    with session(request) as s:
        data = junit_results.reruns(s, run_id=run, kind=kind or None)
    if not data["runs"] and run is None and not kind:
        return render(
            request,
            "message.html",
            title="Reruns",
            message="No test results ingested yet. Once reruns are recorded, this page shows what was "
            "rerun, why, and what came of it.",
            link="/",
        )
    return render(request, "reruns.html", d=data, run=run or "", kind=kind or "")
