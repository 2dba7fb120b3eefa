"""Engines, sessions and schema migrations.

SQLite is the embedded default (WAL, busy timeout, foreign keys on) and is brought to the newest schema on
first use. PostgreSQL (`postgresql+psycopg://…`) is migrated explicitly with `guardrail db upgrade`, so that
several service workers never race to migrate.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from guardrail.errors import InfraError, InputError

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# The newest migration. Checked by reading alembic_version directly, so that a command's start-up does not load
# Alembic; tests/test_store.py keeps it equal to Alembic's head.
SCHEMA_REVISION = "0004"


def redact(url: str) -> str:
    """The URL with any password hidden: safe to print."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


@functools.cache
def get_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InputError("not a database URL (want sqlite:///FILE or postgresql+psycopg://…)", field="--db") from None
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    else:
        raise InputError(f"unsupported database {parsed.get_backend_name()!r}; use SQLite or PostgreSQL", field="--db")
    return engine


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's ini interpolation treats '%' specially; URLs may contain percent-escapes.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["engine"] = get_engine(url)
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    _guard_connect(url, lambda: command.upgrade(alembic_config(url), revision))


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    _guard_connect(url, lambda: command.downgrade(alembic_config(url), revision))


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read():
        with get_engine(url).connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    return _guard_connect(url, read)


def _stored_revision(url: str) -> str | None:
    """alembic_version read with plain SQL (None when the table is not there)."""
    from sqlalchemy import text

    def read():
        with get_engine(url).connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    return _guard_connect(url, read)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:  # only a migrations folder without any revision has none
        raise RuntimeError(f"no Alembic revision under {MIGRATIONS_DIR}")
    return head


def _guard_connect(url: str, fn):
    try:
        return fn()
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
        raise InfraError(f"cannot reach the database {redact(url)}: {reason}") from None


@functools.cache
def ensure_ready(url: str) -> bool:
    """Bring SQLite up to date on first use; refuse an out-of-date PostgreSQL with the command to fix it."""
    if _stored_revision(url) == SCHEMA_REVISION:
        return True
    current = current_revision(url)
    if current == head_revision():
        return True
    engine = get_engine(url)
    if engine.dialect.name == "sqlite":
        upgrade(url)
        return True
    has_tables = bool(_guard_connect(url, lambda: inspect(engine).get_table_names()))
    state = "has no guardrail tables" if not has_tables and current is None else f"is at revision {current}"
    raise InfraError(f"the database {redact(url)} {state}; run: guardrail db upgrade --db <URL>")


@functools.cache
def _session_factory(engine: Engine) -> sessionmaker:
    # Built once per engine: a sessionmaker per call cost the dashboard ~0.2 ms of CPU per request.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(url: str, *, write: bool = False) -> Iterator[Session]:
    """One transaction: committed if the block finishes, rolled back (nothing written) if it raises."""
    ensure_ready(url)
    session = _session_factory(get_engine(url))()
    try:
        if write and get_engine(url).dialect.name == "sqlite":
            # Take the write lock up front so two concurrent ingests queue instead of failing mid-way.
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise InfraError(f"database error on {redact(url)}: {reason}") from None
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
