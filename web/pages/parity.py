"""The GPU↔NPU parity page: run and pass share of the reference's test cases on the target, per suite and per day,
the missing, skipped, failing and excluded cases, and CI minutes per lane (the document `guardrail parity` prints)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from web import charts
from web.auth import require_reader
from web.pages.rendering import Opt, render, session
from web.read import parity as parity_reads

reads = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])


@reads.get("/parity", response_class=HTMLResponse)
def parity_page(
    request: Request,
    reference: Opt = None,
    target: Opt = None,
    days: Annotated[int, Query(ge=1, le=366)] = parity_reads.DAYS,
):
    with session(request) as s:
        ch = parity_reads.choices(s)
        ref, tgt = reference or ch["reference"], target or ch["target"]
        if not ref or not tgt:
            return render(
                request,
                "message.html",
                title="GPU↔NPU parity",
                message="Parity needs JUnit results of a reference (GPU) and a target (NPU) lane: ingest them with "
                "guardrail ingest --format junit FILE --lane L --hardware H, then come back.",
                link="/",
            )
        doc = parity_reads.parity(s, reference=ref, target=tgt, days=days)
    return render(request, "parity.html", d=doc, choices=ch, days=days, chart=_chart(doc))


def _chart(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The two shares per day, drawn by the CI-health chart (one line per "lane · hardware" name)."""
    figures = [
        {"lane": name, "hardware": doc["target"], "day": p["day"], "share": p[key]}
        for p in doc["series"]
        for name, key in (("run share", "run_share"), ("pass share", "pass_share"))
    ]
    return charts.health_chart(figures, "share", percent=True)  # the overview's size: legible at 390 px
