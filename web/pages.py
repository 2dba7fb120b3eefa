"""HTML pages: the same read models as the API, drawn by Jinja2 templates with inline SVG charts."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi import Path as ApiPath
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup, escape

from guardrail.api_tokens import verify_token
from guardrail.reports.markdown import render_markdown
from guardrail.store.db import session_scope
from guardrail.vocabulary import TRIAGE_STATES
from web import charts
from web import flaky as fq
from web import queries as q
from web.auth import COOKIE, require_reader, token_name

MAX_ID = 2**31 - 1
PathId = Annotated[int, ApiPath(ge=1, le=MAX_ID)]
Opt = Annotated[str | None, Query(max_length=300)]

router = APIRouter(include_in_schema=False)
pages = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])


def render(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    ctx.setdefault("signed_in", request.cookies.get(COOKIE) is not None)
    return request.app.state.templates.TemplateResponse(request, name, ctx, status_code=status_code)


def _session(request: Request, write: bool = False):
    return session_scope(request.app.state.db_url, write=write)


def _or_404(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except q.NotFound as exc:
        raise HTTPException(404, str(exc)) from None


@pages.get("/", response_class=HTMLResponse)
def overview_page(request: Request, lane: Opt = None):
    from web.api import cached_overview

    lane = lane or "nightly"
    signed_in = request.cookies.get(COOKIE) is not None

    def page() -> str:  # everyone sees the same overview: render it once per cache period
        template = request.app.state.templates.get_template("overview.html")
        data = cached_overview(request, lane)
        return template.render(
            request=request, data=data, signed_in=signed_in, health_charts=_health_charts(data.get("test_health"))
        )

    return HTMLResponse(request.app.state.cache.get(("overview.html", lane, signed_in), page))


HEALTH_PANELS = (
    ("pass_rate", "pass rate", True),
    ("flaky_rate", "flaky rate", True),
    ("rerun_minutes", "CI minutes lost to reruns", False),
    ("infra_errors", "infra errors", False),
)


def _health_charts(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not doc:
        return []
    out = []
    for field, title, percent in HEALTH_PANELS:
        chart = charts.health_chart(doc["figures"], field, percent=percent)
        if chart:
            out.append({"id": f"health-{field.replace('_', '-')}", "title": title, "chart": chart})
    return out


@pages.get("/alerts", response_class=HTMLResponse)
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
    with _session(request) as s:
        data = q.alerts(
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
        next_url=str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
    )


@pages.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(request: Request, alert_id: PathId):
    with _session(request) as s:
        alert = _or_404(q.alert_detail, s, alert_id)
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
    with _session(request, write=True) as s:
        _or_404(q.triage, s, ids, state=state, note=note.strip() or None, issue_url=issue or None, author=author)
    request.app.state.cache.clear()
    safe_next = next_url if next_url.startswith("/") and not next_url.startswith("//") else "/alerts"
    return RedirectResponse(safe_next, status_code=303)


@router.post("/alerts/{alert_id}/triage", response_class=HTMLResponse)
def alert_triage_form(
    request: Request,
    alert_id: PathId,
    state: Annotated[str, Form(max_length=20)],
    note: Annotated[str, Form(max_length=10000)] = "",
    issue_url: Annotated[str, Form(max_length=2000)] = "",
):
    return _form_triage(request, [alert_id], state, note, issue_url, f"/alerts/{alert_id}")


@router.post("/alerts/triage", response_class=HTMLResponse)
def bulk_triage_form(
    request: Request,
    state: Annotated[str, Form(max_length=20)],
    ids: Annotated[list[int], Form()] = (),
    note: Annotated[str, Form(max_length=10000)] = "",
    issue_url: Annotated[str, Form(max_length=2000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/alerts",
):
    return _form_triage(request, [i for i in ids if 1 <= i <= MAX_ID], state, note, issue_url, next)


@pages.get("/series", response_class=HTMLResponse)
def series_lookup(
    request: Request,
    workload: Opt = None,
    metric: Opt = None,
    hardware: Opt = None,
    series_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
):
    if series_id:
        return RedirectResponse(f"/series/{series_id}", status_code=303)
    with _session(request) as s:
        found = q.find_series(s, workload=workload, metric=metric, hardware=hardware, limit=200)
    if len(found) == 1:
        return RedirectResponse(f"/series/{found[0]['id']}", status_code=303)
    return render(
        request,
        "series_list.html",
        found=found,
        filters={"workload": workload or "", "metric": metric or "", "hardware": hardware or ""},
    )


@pages.get("/series/{series_id}", response_class=HTMLResponse)
def series_page(
    request: Request,
    series_id: PathId,
    lane: Opt = None,
    branch: Opt = None,
    run: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
):
    with _session(request) as s:
        detail = _or_404(q.series_detail, s, series_id, lane=lane or None, branch=branch or None)
        pts = detail["points"]
        run_id = run or (pts[-1]["run_id"] if pts else None)
        samples = None
        if run_id:
            try:
                samples = q.run_samples(s, series_id, run_id)
            except q.NotFound:
                samples = None
    unit = detail["series"]["unit"]
    dist = None
    if samples:
        flat = [v for r in samples["repeats"] for v in r]
        strip, hist = charts.strip_chart(samples["repeats"], unit=unit), charts.histogram(flat)
        dist = {
            "run_id": run_id,
            "strip": strip,
            "strip_svg": charts.strip_svg(strip) if strip else None,
            "hist": hist,
            "hist_svg": charts.hist_svg(hist) if hist else None,
            "n": len(flat),
            "repeats": len(samples["repeats"]),
        }
    chart = charts.series_chart(detail)
    return render(
        request,
        "series.html",
        d=detail,
        chart=chart,
        point_rows=_point_rows(pts),
        run_options=_run_options(pts, dist["run_id"]) if dist else None,
        chart_svg=charts.series_svg(chart, detail["series"]["metric"]) if chart else None,
        dist=dist,
        lane=lane or "",
        branch=branch or "",
    )


def _short(v: Any, n: int) -> str:
    return "" if v is None else str(v)[:n]


def _point_rows(points: list[dict[str, Any]]) -> Markup:
    """The series page's points table body, newest first: built here rather than by a Jinja2 loop over every
    point (several times cheaper), the same markup as the loop drew. Commit and message are escaped as
    autoescape would; ids, ISO times and fmt's numbers cannot hold markup characters."""
    fmt = charts.fmt
    return Markup(
        "".join(
            f'<tr><td><a href="/runs/{p["run_id"]}">{p["run_id"]}</a></td><td>{_short(p["time"], 16)}</td>\n'
            f'<td><code title="{escape(p["message"] or "")}">{escape(_short(p["commit"], 10))}</code></td>\n'
            f'<td class="num">{fmt(p["value"])}</td><td class="num">{fmt(p["low"])}–{fmt(p["high"])}</td>'
            f'<td class="num">{p["repeats"]}</td></tr>\n'
            for p in reversed(points)
        )
    )


def _run_options(points: list[dict[str, Any]], selected: int) -> Markup:
    """The series page's run picker options, newest first (see _point_rows)."""
    return Markup(
        "".join(
            f'<option value="{p["run_id"]}" {"selected" if p["run_id"] == selected else ""}>run {p["run_id"]} · '
            f"{_short(p['time'], 10)} · {escape(_short(p['commit'], 8))}</option>"
            for p in reversed(points)
        )
    )


@pages.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request, lane: Opt = None, hardware: Opt = None, offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0
):
    with _session(request) as s:
        data = q.runs(s, lane=lane or None, hardware=hardware or None, limit=50, offset=offset)
    return render(request, "runs.html", data=data, lane=lane or "", hardware=hardware or "")


@pages.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: PathId):
    with _session(request) as s:
        data = _or_404(q.run_detail, s, run_id)
    for r in data["results"]:
        r["stage_bar"] = charts.stage_bar(r["stages"])
        for x in r["metrics"]:
            x["strip"] = charts.strip_chart(x["repeats"], width=260, row_h=10, max_dots=100, unit=x["unit"])
            x["strip_svg"] = charts.mini_strip_svg(x["strip"]) if x["strip"] else None
    return render(request, "run.html", d=data)


@pages.get("/baselines", response_class=HTMLResponse)
def baselines_page(request: Request):
    with _session(request) as s:
        data = q.baseline_pins(s)
    return render(request, "baselines.html", d=data)


@pages.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request, a: Annotated[int, Query(ge=1, le=MAX_ID)], b: Annotated[int, Query(ge=1, le=MAX_ID)]
):
    with _session(request) as s:
        data = _or_404(q.compare_runs, s, a, b)
    return render(request, "compare.html", d=data)


@pages.get("/prs", response_class=HTMLResponse)
def prs_page(request: Request):
    with _session(request) as s:
        data = q.prs(s)
    return render(request, "prs.html", prs=data)


@pages.get("/prs/{pr}", response_class=HTMLResponse)
def pr_page(request: Request, pr: Annotated[int, ApiPath(ge=0, le=MAX_ID)]):
    with _session(request) as s:
        data = _or_404(q.pr_checks, s, pr)
    md = request.app.state.markdown
    base = str(request.base_url).rstrip("/")
    for push in data["pushes"]:
        push["html"] = md.render(render_markdown(push["doc"], dashboard_url=base)) if push["doc"] else ""
    return render(request, "pr.html", d=data)


def _strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # copies: the rows may be the cached read model the API also returns
    return [{**r, "strip_svg": charts.history_strip(r["strip"])} for r in rows]


@pages.get("/flaky", response_class=HTMLResponse)
def flaky_page(request: Request, lane: Opt = None, hardware: Opt = None):
    with _session(request) as s:
        if not fq.has_tests(s):
            return render(
                request,
                "message.html",
                title="Flaky tests",
                message="No test results ingested yet. Once JUnit results are stored, this page ranks tests "
                "by flakiness score and CI minutes lost.",
                link="/",
            )
        choices = fq.filter_choices(s)
    from web.api import cached_flaky

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
        next_url=str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
    )


@pages.get("/tests/{test_pk}", response_class=HTMLResponse)
def test_page(request: Request, test_pk: PathId):
    with _session(request) as s:
        data = _or_404(fq.test_detail, s, test_pk)
    data["strip_svg"] = charts.history_strip(data["strip"])
    return render(request, "test.html", d=data, colors=charts.VERDICT_COLORS, next_url=f"/tests/{test_pk}")


@router.post("/flaky/quarantine", response_class=HTMLResponse)
def quarantine_form(
    request: Request,
    test: Annotated[str, Form(min_length=1, max_length=5000)],
    action: Annotated[str, Form(max_length=20)],
    reason: Annotated[str, Form(max_length=2000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/flaky",
):
    """Quarantine (with a reason) or release a test from the flaky and test pages: the sign-in cookie's token
    names who did it, stored through the functions `guardrail quarantine add/remove` use."""
    from guardrail.errors import InputError
    from guardrail.quarantine import add_entry, remove_entry

    safe_next = next if next.startswith("/") and not next.startswith("//") else "/flaky"
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
        with _session(request, write=True) as s:
            op(s, test, reason=reason.strip(), by=author, now=fq.now())
    except InputError as exc:
        return render(
            request, "message.html", status_code=422, title="Nothing changed", message=str(exc), link=safe_next
        )
    request.app.state.cache.clear()
    return RedirectResponse(safe_next, status_code=303)


@pages.get("/reruns", response_class=HTMLResponse)
def reruns_page(
    request: Request,
    run: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    kind: Opt = None,
):
    with _session(request) as s:
        data = fq.reruns(s, run_id=run, kind=kind or None)
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


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    return render(request, "login.html", error=None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, token: Annotated[str, Form(max_length=200)]):
    with _session(request, write=True) as s:
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


@router.post("/logout")
def logout():
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE)
    return resp


def qs(**params: Any) -> str:
    """A query string from the non-empty params (templates build filter links with it)."""
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


router.include_router(pages)
