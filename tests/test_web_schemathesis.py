"""Schemathesis against the OpenAPI description the app generates: no request makes the server fail (5xx).

Bounded: a few generated examples per operation, over the store the other web tests use."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tests.test_web_api import fill_db
    from web.app import create_app

    tmp = tmp_path_factory.mktemp("schemathesis")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    ids = fill_db(url, tmp, None)
    return create_app(url), ids


@pytest.mark.slow
def test_no_server_errors(app):
    from hypothesis import given

    asgi_app, ids = app
    schema = schemathesis.openapi.from_asgi("/openapi.json", asgi_app)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 12
    for op in ops:

        @given(case=op.as_strategy())
        @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            # Writes are sent both with and without a valid token, so handlers behind authentication run too.
            headers = (
                {"Authorization": f"Bearer {ids['token']}"} if case.method != "GET" and len(repr(case.body)) % 2 else {}
            )
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        check()
