"""The runs pages: the list, one run (metrics with their strips, stages, drift), and the pinned baselines."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from web import chart_svg, charts
from web.auth import require_reader
from web.pages.rendering import Opt, render, session
from web.params import MAX_ID, PathId
from web.read import junit_results, runs
from web.read.baselines import baseline_pins, lane_policies

reads = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])


@reads.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request, lane: Opt = None, hardware: Opt = None, offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0
):
    with session(request) as s:
        data = runs.runs(s, lane=lane or None, hardware=hardware or None, limit=50, offset=offset)
    return render(request, "runs.html", data=data, lane=lane or "", hardware=hardware or "")


@reads.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: PathId):
    with session(request) as s:
        data = runs.run_detail(s, run_id)
        # a run of JUnit results (and a run with both) shows its tests; a perf-only run costs one indexed lookup
        tests = junit_results.run_tests(s, [run_id])
    for r in data["results"]:
        r["stage_bar"] = charts.stage_bar(r["stages"])
        for x in r["metrics"]:
            x["strip"] = charts.strip_chart(x["repeats"], width=260, row_h=10, max_dots=100, unit=x["unit"])
            x["strip_svg"] = chart_svg.mini_strip_svg(x["strip"]) if x["strip"] else None
    return render(request, "run.html", d=data, tests=tests, summary=_summary(data))


def _summary(data: dict) -> list[tuple[str, int]]:
    """The run's verdict counts for its summary line, worst first; from the verdicts shown (a check's own
    summary may count series no longer stored)."""
    counts: dict[str, int] = {}
    for r in data["results"]:
        for x in r["metrics"]:
            if x["verdict"]:
                counts[x["verdict"]] = counts.get(x["verdict"], 0) + 1
    return sorted(counts.items(), key=lambda kv: runs.verdict_rank(kv[0]))


@reads.get("/baselines", response_class=HTMLResponse)
def baselines_page(request: Request):
    with session(request) as s:
        data = baseline_pins(s)
        policies = lane_policies(s)
    return render(request, "baselines.html", d=data, policies=policies)
