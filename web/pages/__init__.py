"""HTML pages, one module per resource: the same read models as the API (web.read), drawn by Jinja2 templates
with inline SVG charts. `reads` routers need a reader token when the app requires one; the forms check the
sign-in cookie themselves."""

from __future__ import annotations

from fastapi import APIRouter

from web.pages import alerts, compare, junit, login, matrix, overview, parity, prs, runs, series

router = APIRouter(include_in_schema=False)
for part in (alerts.forms, junit.forms, login.public):
    router.include_router(part)
for part in (
    overview.reads,
    alerts.reads,
    series.reads,
    runs.reads,
    compare.reads,
    matrix.reads,
    prs.reads,
    junit.reads,
    parity.reads,
):
    router.include_router(part)
