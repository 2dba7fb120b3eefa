"""Engines, sessions and schema migrations.

SQLite is the embedded default (WAL, busy timeout, foreign keys on) and is brought to the newest schema on
first use, under a lock file beside it and, for a new file, on a temporary file renamed into place.
PostgreSQL (`postgresql+psycopg://…`) is migrated explicitly with `guardrail db upgrade`, so that several
service workers never race to migrate.
"""

from __future__ import annotations

import fcntl
import functools
import os
import tempfile
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
SCHEMA_REVISION = "0005"
# PostgreSQL: migrations (upgrade and downgrade) of one schema run one at a time under the session-level advisory
# lock (MIGRATION_LOCK_CLASS, hashtext(current_schema())); released when done or when the connection drops.
MIGRATION_LOCK_CLASS = 0x67726D  # "grm"


def redact(url: str) -> str:
    """The URL with any password hidden: safe to print."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # The busy timeout first: switching to (or confirming) WAL takes a lock, which under concurrent first uses
    # must wait rather than fail with "database is locked" (tests/test_issue13_verdict_race.py under load).
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


@functools.cache
def get_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
        port = parsed.port  # a non-numeric port raises here, not at connect
    except (ArgumentError, ValueError):
        raise InputError("not a database URL (want sqlite:///FILE or postgresql+psycopg://…)", field="--db") from None
    if port is not None and not 0 < port < 65536:
        raise InputError(f"port {port} of {redact(url)} is not a TCP port (1-65535)", field="--db")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"):
        if parsed.get_backend_name() in ("sqlite", "postgresql"):
            want = "sqlite:///FILE" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg://…"
            raise InputError(f"driver {parsed.drivername!r} is not supported; use {want}", field="--db")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    else:
        raise InputError(f"unsupported database {parsed.get_backend_name()!r}; use SQLite or PostgreSQL", field="--db")
    return engine


def alembic_config(url: str, engine: Engine | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's ini interpolation treats '%' specially; URLs may contain percent-escapes.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["engine"] = engine or get_engine(url)
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate to ``revision``; a SQLite file under its lock file (see :func:`_prepare_sqlite`), a PostgreSQL
    schema under its advisory lock."""
    path = _sqlite_file(url) if get_engine(url).dialect.name == "sqlite" else None
    if path is None:
        with _migration_lock(url):
            _plain_upgrade(url, revision)
        return
    if not path.parent.is_dir():
        raise InfraError(f"cannot create the database {path}: no directory {path.parent}")
    with _exclusive(path):
        _prepare_sqlite(url, path, revision)


def _plain_upgrade(url: str, revision: str) -> None:
    from alembic import command

    _guard_connect(url, lambda: command.upgrade(alembic_config(url), revision))


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate down to ``revision`` under the same lock as an upgrade or a first use, so that neither runs
    against a schema a downgrade is halfway through."""
    from alembic import command

    with _migration_lock(url):
        _guard_connect(url, lambda: command.downgrade(alembic_config(url), revision))


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """SQLite: the exclusive lock on ``FILE.lock`` (:func:`_exclusive`). PostgreSQL: the schema's advisory lock,
    taken on a connection of its own (committed at once, so it holds no transaction open meanwhile)."""
    from sqlalchemy import text

    engine = get_engine(url)
    if engine.dialect.name == "sqlite":
        path = _sqlite_file(url)
        if path is None:  # in memory: nothing to share
            yield
            return
        if not path.parent.is_dir():
            raise InfraError(f"cannot open the database {path}: no directory {path.parent}")
        with _exclusive(path):
            yield
        return
    key = {"k": MIGRATION_LOCK_CLASS}
    conn = _guard_connect(url, engine.connect)
    try:
        _guard_connect(url, lambda: conn.execute(text("SELECT pg_advisory_lock(:k, hashtext(current_schema()))"), key))
        conn.commit()
        yield
    finally:
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k, hashtext(current_schema()))"), key)
            conn.commit()
        except OperationalError:
            pass  # the connection is gone, and the lock with it
        finally:
            conn.close()


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


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database)."""
    database = make_url(url).database
    return None if not database or database == ":memory:" else Path(database)


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An exclusive lock on ``FILE.lock`` beside the database: one first use (or upgrade) at a time."""
    try:
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InfraError(f"cannot lock the database {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock, also when the process is killed


def _half_migrated(url: str) -> str | None:
    """What is wrong with a SQLite file left by an interrupted first use or upgrade (None when nothing is)."""

    def look() -> str | None:
        with get_engine(url).connect() as conn:
            tables = set(inspect(conn).get_table_names())
        if any(t.startswith("_alembic_tmp_") for t in tables):
            return "holds a leftover table of an interrupted migration"
        if tables and "alembic_version" not in tables:
            return "has tables but no schema revision (an interrupted first use)"
        return None

    return _guard_connect(url, look)


def _migrate_new_sqlite(path: Path, revision: str) -> None:
    """Create the database on a temporary file beside ``path`` and rename it into place: an interrupted first use
    (kill, full disk) leaves no database, never half of one."""
    for stale in path.parent.glob(f".{path.name}.new-*"):  # left by a killed first use; we hold the lock
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.new-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp_url = f"sqlite:///{tmp}"
    from alembic import command

    try:
        engine = create_engine(tmp_url, connect_args={"timeout": 60})
        try:
            cfg = alembic_config(tmp_url, engine)
            _guard_connect(tmp_url, lambda: command.upgrade(cfg, revision))
            # Migrated under a rollback journal, then switched to WAL (a setting kept in the file's header) here,
            # alone: processes that open the renamed file concurrently would otherwise each switch it, and two
            # readers upgrading to the switch's exclusive lock get SQLITE_BUSY at once, without waiting.
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        finally:
            engine.dispose()  # the last connection's close checkpoints the WAL into the file and removes it
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise InfraError(f"cannot create the database {path}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
        for side in ("-journal", "-wal", "-shm"):
            Path(f"{tmp}{side}").unlink(missing_ok=True)


def _prepare_sqlite(url: str, path: Path, revision: str) -> None:
    """Under the lock: create a new file whole, or upgrade a whole one in place; refuse a half-migrated one."""
    # checked under the lock: a concurrent first use may have created the whole file meanwhile
    if not path.exists() or path.stat().st_size == 0:
        get_engine(url).dispose()  # no connection may keep the empty file open across the rename
        _migrate_new_sqlite(path, revision)
        return
    if revision == "head" and _stored_revision(url) == SCHEMA_REVISION:
        return
    problem = _half_migrated(url)
    if problem:
        raise InfraError(
            f"the database {path} {problem}; move it away (or delete it if it holds nothing you need)"
            " and run the command again"
        )
    _plain_upgrade(url, revision)


@functools.cache
def ensure_ready(url: str) -> bool:
    """Bring SQLite up to date on first use; refuse an out-of-date PostgreSQL with the command to fix it."""
    engine = get_engine(url)
    if engine.dialect.name == "sqlite":
        path = _sqlite_file(url)
        # a new file is never opened before the lock: opening it would create an empty one
        if path is not None and path.exists() and _stored_revision(url) == SCHEMA_REVISION:
            return True
        upgrade(url)
        return True
    if _stored_revision(url) == SCHEMA_REVISION:
        return True
    current = current_revision(url)
    if current == head_revision():
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
