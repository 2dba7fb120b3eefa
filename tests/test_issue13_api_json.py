"""Issue 13: a NaN or infinite number in a JSON API answer is written as null (200, valid JSON), never a 500.

FastAPI (0.165) serialises the answer of a route with a return annotation (a response field) with pydantic, which
writes NaN and ±inf as null; a route without one, or one returning its own JSONResponse, goes through
json.dumps(allow_nan=False), which raises: a 500. These tests hold the API to the first: stored infinite values
through the real app (TestClient) on a real SQLite file and a real PostgreSQL schema, and every API route's
response field."""

from __future__ import annotations

import json
import math
import struct

import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from guardrail.api_tokens import create_token
from guardrail.store.db import get_engine, session_scope
from tests.factories import result_doc
from web.app import create_app


def _strict(text: str):
    # Python's json accepts NaN/Infinity by default; the API's clients use strict parsers.
    def refuse(name: str):
        raise ValueError(f"non-JSON number {name}")

    return json.loads(text, parse_constant=refuse)


def test_stored_infinite_values_answer_200_with_null(db_url):
    with session_scope(db_url, write=True) as session:
        _, token = create_token(session, "ci")
    with TestClient(create_app(db_url), raise_server_exceptions=False) as client:
        docs = [
            {"name": f"{i}.json", "content": result_doc(workload="w", commit=f"c{i}", run_id=f"r{i}")} for i in range(3)
        ]
        r = client.post("/api/v1/ingest", json={"documents": docs}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        # Values no ingest accepts any more, as an older version or a hand edit may have stored them.
        with get_engine(db_url).begin() as conn:
            conn.execute(
                sa.text("UPDATE measurements SET samples = :s, median = :m, mean = :m, minimum = :m, maximum = :m"),
                {"s": struct.pack("<3d", math.inf, -math.inf, 1098.5), "m": math.inf},
            )
            series_id = conn.execute(sa.text("SELECT id FROM series")).scalar_one()
            a = conn.execute(sa.text("SELECT min(id) FROM runs")).scalar_one()
        answers = {
            path: client.get(path)
            for path in [
                "/api/v1/overview",
                f"/api/v1/series/{series_id}",
                f"/api/v1/runs/{a}",
                f"/api/v1/series/{series_id}/runs/{a}/samples",
            ]
        }
    assert {p: r.status_code for p, r in answers.items()} == dict.fromkeys(answers, 200)
    bodies = {p: _strict(r.text) for p, r in answers.items()}  # valid JSON: no NaN/Infinity
    assert bodies[f"/api/v1/series/{series_id}/runs/{a}/samples"]["repeats"] == [[None, None, 1098.5]]
    assert "null" in answers[f"/api/v1/series/{series_id}"].text


def _api_routes(router) -> list[APIRoute]:
    found = []
    for route in router.routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):  # an included router (FastAPI resolves these lazily)
            found += _api_routes(route.original_router)
    return found


def test_every_api_route_is_serialised_by_pydantic():
    # A return annotation (response field): pydantic writes the answer, NaN -> null.
    from web.api import router

    api = _api_routes(router)
    assert len(api) > 10
    assert [r.path for r in api if r.response_field is None] == []
