"""The series pages: finding a series, and one series' history chart, points table and samples of one run."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup, escape

from guardrail import clock
from guardrail.errors import NotFound
from web import chart_svg, charts
from web.auth import require_reader
from web.pages.rendering import Opt, render, session
from web.params import MAX_ID, PathId
from web.read import series

reads = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])


@reads.get("/series", response_class=HTMLResponse)
def series_lookup(
    request: Request,
    q: Opt = None,
    workload: Opt = None,
    metric: Opt = None,
    hardware: Opt = None,
    series_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
):
    if series_id:
        return RedirectResponse(f"/series/{series_id}", status_code=303)
    with session(request) as s:
        found = series.find_series(s, q=q, workload=workload, metric=metric, hardware=hardware, limit=LIST_LIMIT)
        # An exact lookup of one series (the PR comment's links) goes straight to it; a typed search lists.
        if len(found) == 1 and not q and found[0]["match"] == "exact":
            return RedirectResponse(f"/series/{found[0]['id']}", status_code=303)
        sparks = series.sparklines(s, [f["id"] for f in found])
    for f in found:
        f["spark"] = chart_svg.sparkline_svg(sparks.get(f["id"], []))
    return render(
        request,
        "series_list.html",
        found=found,
        limit=LIST_LIMIT,
        fuzzy=bool(found) and found[0]["match"] == "fuzzy",
        searched=bool(q or workload or metric or hardware),
        filters={"q": q or "", "workload": workload or "", "metric": metric or "", "hardware": hardware or ""},
    )


LIST_LIMIT = 200  # series listed at most by one search


@reads.get("/series/{series_id}", response_class=HTMLResponse)
def series_page(
    request: Request,
    series_id: PathId,
    lane: Opt = None,
    branch: Opt = None,
    run: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
    range_: Annotated[Literal["7d", "30d", "90d", "all"] | None, Query(alias="range")] = None,
    overlay: Literal["hardware", "lane", ""] | None = None,
):
    since, until = _time_range(from_, to, range_)
    with session(request) as s:
        detail = series.series_detail(
            s, series_id, lane=lane or None, branch=branch or None, since=since, until=until, overlay=overlay or None
        )
        pts = detail["points"]
        run_id = run or (pts[-1]["run_id"] if pts else None)
        samples = None
        if run_id:
            try:
                samples = series.run_samples(s, series_id, run_id)
            except NotFound:  # a run without this series: the page draws no distribution
                samples = None
    unit = detail["series"]["unit"]
    dist = None
    flat = [v for r in samples["repeats"] for v in r] if samples else []
    # A series of one value per run (a build time, a binary size) has no distribution to draw.
    single_valued = all(p["repeats"] <= 1 for p in pts) and len(flat) <= 1
    if run_id and samples and not single_valued:
        strip, hist = charts.strip_chart(samples["repeats"], unit=unit), charts.histogram(flat)
        dist = {
            "run_id": run_id,
            "strip": strip,
            "strip_svg": chart_svg.strip_svg(strip) if strip else None,
            "hist": hist,
            "hist_svg": chart_svg.hist_svg(hist) if hist else None,
            "n": len(flat),
            "repeats": len(samples["repeats"]),
        }
    chart = charts.series_chart(detail)
    plot = charts.series_plot_data(detail)
    return render(
        request,
        "series.html",
        d=detail,
        chart=chart,
        point_rows=_point_rows(pts),
        run_options=_run_options(pts, run_id) if run_id and dist else None,
        chart_svg=chart_svg.series_svg(chart, detail["series"]["metric"]) if chart else None,
        plot_json=Markup(charts.json_for_script(plot)) if plot else None,
        dist=dist,
        lane=lane or "",
        branch=branch or "",
        range_from=from_.isoformat() if from_ else "",
        range_to=to.isoformat() if to else "",
        range_preset=range_ or "",
        overlay=overlay or "",
        n_pr=sum(1 for p in pts if p.get("kind") == "pr"),
    )


PRESETS = {"7d": 7, "30d": 30, "90d": 90}


def _time_range(from_: date | None, to: date | None, preset: str | None) -> tuple[datetime | None, datetime | None]:
    """`?from=&to=` as UTC midnights (`to` inclusive: up to the end of that day); a preset (7d/30d/90d) is the
    last days up to now; 'all' or nothing is the whole history."""
    if preset in PRESETS and not from_ and not to:
        return clock.now() - timedelta(days=PRESETS[preset]), None
    since = datetime.combine(from_, time()) if from_ else None
    until = datetime.combine(to, time()) + timedelta(days=1) if to else None
    return since, until


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
