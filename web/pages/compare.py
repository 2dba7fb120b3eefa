"""Two runs compared, metric by metric: sorted by change or name, optionally regressions (or changes) only."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from web.auth import require_reader
from web.pages.rendering import render, session
from web.params import MAX_ID
from web.read.compare import compare_runs
from web.read.runs import runs

reads = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])


@reads.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    a: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    b: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    sort: Literal["change", "name"] = "change",
    only: Literal["regressions", "changed", ""] = "",
):
    with session(request) as s:
        if a is None or b is None:
            # Without both runs: pick them from the newest runs instead of typing ids.
            recent = runs(s, limit=PICK_RUNS)["runs"]
            return render(request, "compare.html", d=None, recent=recent, a=a, b=b)
        data = compare_runs(s, a, b, sort=sort, only=only or None)
    return render(request, "compare.html", d=data, recent=None, a=a, b=b)


PICK_RUNS = 100  # newest runs offered by the picker
