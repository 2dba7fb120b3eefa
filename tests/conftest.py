"""Shared fixtures: real SQLite files and real PostgreSQL schemas, never a mock database.

PostgreSQL: the URL comes from GUARDRAIL_TEST_PG_URL (set by .ci/run), else the local default below. When
the variable is set and the server is unreachable the tests fail; when it is unset they are skipped, saying why.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.timeline import NOW

# The product's clock starts at the suite's NOW in this process and in every subprocess it starts.
os.environ["GUARDRAIL_NOW"] = NOW.isoformat()

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def corpus_dir() -> Path | None:
    env = os.environ.get("GUARDRAIL_CORPUS")
    for cand in ([Path(env)] if env else []) + [
        REPO.parent / "shared" / "corpus",
        REPO / "shared" / "corpus",
    ]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def corpus() -> Path:
    found = corpus_dir()
    if found is None:
        pytest.skip("the vLLM-Omni corpus is not here (set GUARDRAIL_CORPUS or put shared/ beside the repo)")
    return found


def _pg_base_url() -> str | None:
    """The PostgreSQL URL to test against, or None (skip) when none is configured and none answers."""
    explicit = os.environ.get("GUARDRAIL_TEST_PG_URL")
    url = explicit or DEFAULT_PG
    import sqlalchemy as sa

    try:
        eng = sa.create_engine(url)
        with eng.connect():
            pass
        eng.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server here"
        if explicit:
            raise RuntimeError(f"GUARDRAIL_TEST_PG_URL is set but PostgreSQL does not answer: {exc}") from None
        return None
    return url


_PG = "unset"


def pg_url_or_skip() -> str:
    global _PG
    if _PG == "unset":
        _PG = _pg_base_url()
    if _PG is None:
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432 and GUARDRAIL_TEST_PG_URL unset")
    return _PG


@pytest.fixture
def pg_url() -> str:
    """A fresh, empty PostgreSQL schema of its own (dropped afterwards), as a database URL."""
    import sqlalchemy as sa

    base = pg_url_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    yield url
    _dispose(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


def _dispose(url: str) -> None:
    from guardrail.store import db as store_db

    store_db.get_engine(url).dispose()
    store_db.get_engine.cache_clear()
    store_db.ensure_ready.cache_clear()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'guardrail.db'}"
    yield url
    _dispose(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """Every database test runs twice: on a SQLite file and on a PostgreSQL schema."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("pg_url")
        from guardrail.store import db as store_db

        store_db.upgrade(url)
        yield url
