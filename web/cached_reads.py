"""The read models every visitor asks for, computed once per cache period in each worker (web.cache) for the
API and the pages alike; writes through this worker clear the cache."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from guardrail.store.db import session_scope
from web.read.junit_results import flaky
from web.read.overview import overview


def cached_overview(request: Request, lane: str) -> dict[str, Any]:
    def compute() -> dict[str, Any]:
        with session_scope(request.app.state.db_url) as session:
            return overview(session, lane=lane)

    return request.app.state.cache.get(("overview", lane), compute)


def cached_flaky(request: Request, lane: str | None, hardware: str | None, limit: int = 50) -> dict[str, Any]:
    """The flaky report scores every test (~1 s at 120k verdicts on SQLite): computed once per cache period
    and filter."""

    def compute() -> dict[str, Any]:
        with session_scope(request.app.state.db_url) as session:
            return flaky(session, lane=lane, hardware=hardware, limit=limit)

    return request.app.state.cache.get(("flaky", lane, hardware, limit), compute)
