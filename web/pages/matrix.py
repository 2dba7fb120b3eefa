"""The parallel-strategy matrix page: per family, the cells a lane runs with their last verdict, scaling efficiency,
output equivalence and age, and the unsupported cells with the reason (the document `guardrail matrix` prints)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from guardrail import clock
from guardrail.matrix import load_matrices, plan
from guardrail.matrix_status import cell_status, matrix_doc
from web.auth import require_reader
from web.pages.rendering import render, session

reads = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])
Lane = Literal["presubmit", "nightly", "weekly", "release"]
LANES = get_args(Lane)


@reads.get("/matrix", response_class=HTMLResponse)
def matrix_page(request: Request, lane: Annotated[Lane, Query()] = "nightly"):
    planned = [(mx, lane, plan(mx, lane)) for _, mx in load_matrices() if lane in mx.lanes]
    names = [p.cell.workload(mx.workload) for mx, _, plans in planned for p in plans]
    with session(request) as s:
        status = cell_status(s, names)
    doc = matrix_doc(planned, status, clock.now())
    return render(request, "matrix.html", d=doc, lane=lane, lanes=LANES)
