"""Schemathesis against the test views' operations over a store that holds JUnit results (the dashboard's
own schemathesis test runs over a store without any): no request makes the server fail (5xx)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

PATHS = ("/api/v1/flaky", "/api/v1/tests/{test_pk}", "/api/v1/reruns", "/api/v1/ci-health", "/api/v1/quarantine")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tests.test_web_flaky_api import fill_flaky_db
    from web.app import create_app

    tmp = tmp_path_factory.mktemp("flakyschema")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    ids = fill_flaky_db(url, tmp)
    return create_app(url, cache_ttl=0), ids


@pytest.mark.slow
def test_no_server_errors_on_the_test_views(app):
    from hypothesis import given

    asgi_app, ids = app
    schema = schemathesis.openapi.from_asgi("/openapi.json", asgi_app)
    ops = [r.ok() for r in schema.get_all_operations() if r.ok().path in PATHS]
    assert len(ops) == 6
    for op in ops:

        @given(case=op.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            headers = {"Authorization": f"Bearer {ids['token']}"} if case.method != "GET" else {}
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        check()
