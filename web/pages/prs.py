"""The pull request pages: PRs with runs, and one PR's checks with the comment each push got."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi import Path as ApiPath
from fastapi.responses import HTMLResponse

from guardrail.reports.markdown import render_markdown
from web.auth import require_reader
from web.pages.rendering import render, session
from web.params import MAX_ID
from web.read import junit_results
from web.read.prs import pr_checks, prs

reads = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])


@reads.get("/prs", response_class=HTMLResponse)
def prs_page(request: Request):
    with session(request) as s:
        data = prs(s)
    return render(request, "prs.html", prs=data)


@reads.get("/prs/{pr}", response_class=HTMLResponse)
def pr_page(request: Request, pr: Annotated[int, ApiPath(ge=0, le=MAX_ID)]):
    with session(request) as s:
        data = pr_checks(s, pr)
        tests = junit_results.run_tests(s, data["run_ids"])
    md = request.app.state.markdown
    base = str(request.base_url).rstrip("/")
    for push in data["pushes"]:
        push["html"] = md.render(render_markdown(push["doc"], dashboard_url=base)) if push["doc"] else ""
    return render(request, "pr.html", d=data, tests=tests)
