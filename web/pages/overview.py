"""The overview page: the latest results grid, open alerts and CI health with its charts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from web import charts
from web.auth import COOKIE, require_reader
from web.cached_reads import cached_overview
from web.pages.rendering import Opt

reads = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])

HEALTH_PANELS = (
    ("pass_rate", "pass rate", True),
    ("flaky_rate", "flaky rate", True),
    ("rerun_minutes", "CI minutes lost to reruns", False),
    ("infra_errors", "infra errors", False),
)


@reads.get("/", response_class=HTMLResponse)
def overview_page(request: Request, lane: Opt = None):
    lane = lane or "nightly"
    signed_in = request.cookies.get(COOKIE) is not None

    def page() -> str:  # everyone sees the same overview: render it once per cache period
        template = request.app.state.templates.get_template("overview.html")
        data = cached_overview(request, lane)
        return template.render(
            request=request, data=data, signed_in=signed_in, health_charts=_health_charts(data.get("test_health"))
        )

    return HTMLResponse(request.app.state.cache.get(("overview.html", lane, signed_in), page))


def _health_charts(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not doc:
        return []
    out = []
    for field, title, percent in HEALTH_PANELS:
        chart = charts.health_chart(doc["figures"], field, percent=percent)
        if chart:
            out.append({"id": f"health-{field.replace('_', '-')}", "title": title, "chart": chart})
    return out
