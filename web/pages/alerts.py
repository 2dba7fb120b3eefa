"""The alerts pages (the filtered list, one alert as a case file) and their triage forms."""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from sqlalchemy.orm import Session

from guardrail import alerts
from guardrail.errors import NotFound
from guardrail.vocabulary import TRIAGE_STATES
from web import charts
from web.auth import require_reader, token_name
from web.pages.rendering import Opt, local_url, render, session
from web.params import MAX_ID, PathId
from web.read import alerts as alert_reads
from web.read import series as series_reads
from web.read.bisections import alert_bisection

reads = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])
forms = APIRouter(include_in_schema=False)

KEEP = ""  # the bulk form's "keep each alert's state" choice
CHART_BEFORE = timedelta(days=21)  # the case file's chart: three weeks before the change ...
CHART_AFTER = timedelta(days=42)  # ... and six after it


@reads.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    state: Opt = None,
    kind: Opt = None,
    hardware: Opt = None,
    lane: Opt = None,
    workload: Opt = None,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    note: Annotated[str, Query(max_length=10000)] = "",
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
    return render(
        request,
        "alerts.html",
        data=data,
        filters=filters,
        states=TRIAGE_STATES,
        # back to this list after a bulk action (without a carried note: it was applied)
        next_url="/alerts?" + _qs({**filters, "offset": str(offset or "")})
        if any(filters.values()) or offset
        else "/alerts",
        kept_note=note,
    )


@reads.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(
    request: Request,
    alert_id: PathId,
    # what a signed-out triage typed, carried through sign-in (see _sign_in_first)
    note: Annotated[str, Query(max_length=10000)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
    issue_url: Annotated[str, Query(max_length=2000)] = "",
):
    with session(request) as s:
        alert = alert_reads.alert_detail(s, alert_id)
        plot = _case_chart(s, alert)
        bisection = alert_bisection(s, alert_id)["bisection"]  # the newest `guardrail bisect` of this alert
    kept = {"note": note, "state": state if state in TRIAGE_STATES else "", "issue_url": issue_url}
    return render(
        request,
        "alert.html",
        alert=alert,
        states=TRIAGE_STATES,
        plot_json=Markup(charts.json_for_script(plot)) if plot else None,
        plot=plot,
        actions=next_actions(alert, bisection),
        bisection=bisection,
        kept=kept,
    )


def _case_chart(s: Session, alert: dict[str, Any]) -> dict[str, Any] | None:
    """The worst metric's series on the alert's lane around the change, for the series page's chart script:
    its band columns hold the level before the change (+- the metric's threshold) up to the change and the
    level after it from there, and the change is one labelled mark."""
    worst = alert.get("worst") or {}
    sid = worst.get("series_id")
    if not sid:
        return None
    changed = datetime.fromisoformat(alert["changed_at"]) if alert.get("changed_at") else None
    try:
        detail = series_reads.series_detail(
            s,
            sid,
            lane=alert["lane"],
            since=changed - CHART_BEFORE if changed else None,
            until=changed + CHART_AFTER if changed else None,
        )
    except NotFound:
        return None
    plot = charts.series_plot_data(detail)
    if plot is None:
        return None
    t0 = changed.timestamp() if changed else None
    before, after = worst.get("before"), worst.get("after")
    thr = worst.get("threshold") or 0.01
    if t0 is not None:  # without the change's time the band stays the per-run baseline band of the series page
        low, high = [], []
        for t in plot["x"]:
            level = before if t < t0 else after
            low.append(level * (1 - thr) if level else None)
            high.append(level * (1 + thr) if level else None)
        plot["band_low"], plot["band_high"] = low, high
        plot["band_label"] = f"level ±{thr:.0%}, before / after the change"
    label = f"this change {worst['change']:+.1%}" if isinstance(worst.get("change"), (int, float)) else "this change"
    # the series' own change-point marks, except the one this alert is (it is drawn once, labelled)
    marks = [m for m in plot["marks"] if not (m["kind"] == "change" and (t0 is None or abs(m["t"] - t0) < 1))]
    if t0 is not None:
        marks.append({"t": t0, "kind": "change", "label": label})
    plot["marks"] = marks
    plot["series_id"] = sid
    plot["before"], plot["after"], plot["threshold"] = before, after, thr
    return plot


def next_actions(alert: dict[str, Any], bisection: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """What to do next, as commands to copy (shell-quoted: a workload name may hold anything)."""
    q = shlex.quote
    lane, wl = alert["lane"], alert["workload"]
    bad, good = alert.get("to_commit"), alert.get("from_commit")
    out_dir = f"rerun-alert-{alert['id']}"
    out: list[dict[str, Any]] = []
    if bad:
        out.append(
            {
                "title": "Rerun the first bad commit with more repeats",
                "command": f"git checkout {q(bad)}\n"
                f"guardrail run --lane {q(lane)} --workload {q(wl)} --repeats 5 --commit {q(bad)} --out {out_dir}\n"
                f"guardrail ingest {out_dir}\n"
                f"guardrail check --commit {q(bad)} --lane {q(lane)}",
            }
        )
    if alert.get("run_id"):
        out.append(
            {
                "title": "What the rerun policy would rerun for the alert's run",
                "command": f"guardrail rerun-plan --run {alert['run_id']}",
            }
        )
    if good and bad and not (bisection and bisection.get("culprit")):
        # the alert names its workload, hardware, worst metric, lane and range: `guardrail bisect ID` reads them
        resume = bisection is not None and bisection.get("state") == "running"
        out.append(
            {
                "title": "Resume the bisection" if resume else "Bisect the range (in a checkout of the repository)",
                "command": f"guardrail bisect {alert['id']} --repo . --dispatch local",
            }
        )
    if alert.get("run_id"):
        reason = f"alert {alert['id']}: expected change"
        out.append(
            {
                "title": "An intended change: pin the new level as the lane's baseline",
                "command": f"guardrail baseline pin --run {alert['run_id']} --lane {q(lane)} --reason {q(reason)}",
            }
        )
    return out


def _list_url(filters: dict[str, str], offset: int) -> str:
    """Where a bulk action on the list comes back to: the same filters and page, without a carried note."""
    query = _qs({**filters, "offset": str(offset) if offset else ""})
    return "/alerts?" + query if query else "/alerts"


def _qs(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode({k: v for k, v in params.items() if v})


def _sign_in_first(request: Request, next_url: str, state: str, note: str, issue_url: str):
    """Signed out: the sign-in page, carrying what was typed (hidden fields) and where to come back to."""
    return render(
        request,
        "login.html",
        status_code=401,
        error=None,
        reason="Sign in to triage: what you typed is kept, and after signing in you are back on the page "
        "with it filled in; press Save.",
        next_url=local_url(next_url, "/alerts"),
        pending={"state": state, "note": note, "issue_url": issue_url},
    )


def _form_triage(
    request: Request, ids: list[int], state: str, note: str, issue_url: str, next_url: str, *, bulk: bool = False
):
    author = token_name(request, cookie=True)
    if author is None:
        return _sign_in_first(request, next_url, state, note, issue_url)
    issue = issue_url.strip()
    keep = bulk and state == KEEP and bool(note.strip() or issue)  # bulk: no state picked, a note or link given
    if not ids or (state not in TRIAGE_STATES and not keep):
        return render(
            request,
            "message.html",
            status_code=422,
            title="Nothing changed",
            message="Pick at least one alert, and a triage state or a note or issue link to add.",
            link=next_url,
        )
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
        if keep:
            # a note or issue link only: each alert keeps its state (the event records who added the note)
            current = alert_reads.states_of(s, ids)
            if set(current) != set(ids):
                raise alerts.UnknownAlerts(f"no alert {', '.join(map(str, sorted(set(ids) - set(current))))}")
            for st in sorted(set(current.values())):
                same = [i for i in ids if current[i] == st]
                alerts.triage(s, same, state=st, note=note.strip() or None, issue_url=issue or None, author=author)
        else:
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
    state: Annotated[str, Form(max_length=20)] = KEEP,
    ids: Annotated[list[int] | None, Form()] = None,
    note: Annotated[str, Form(max_length=10000)] = "",
    issue_url: Annotated[str, Form(max_length=2000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/alerts",
):
    picked = [i for i in (ids or []) if 1 <= i <= MAX_ID]
    return _form_triage(request, picked, state, note, issue_url, next, bulk=True)
