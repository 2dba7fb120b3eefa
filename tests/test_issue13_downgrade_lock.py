"""Issue 13: `guardrail db downgrade` takes the lock that an upgrade or a first use takes (flock on SQLite's
FILE.lock, the schema's advisory lock on PostgreSQL); on PostgreSQL `db upgrade` now takes it too.

Real processes: the test holds the lock, the command must wait for it (and change nothing meanwhile), then
finish once it is released."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from guardrail.store.db import MIGRATION_LOCK_CLASS, SCHEMA_REVISION, upgrade

WAIT = 2.0  # long enough for an unlocked downgrade to have finished (it takes ~1 s here)


def _guardrail(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "guardrail", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _waits_then_finishes(proc: subprocess.Popen, unlock, revision) -> tuple[str, str]:
    time.sleep(WAIT)
    try:
        assert proc.poll() is None, f"ran without the lock: {proc.communicate()}"
        before = revision()
    finally:
        unlock()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return before, out


def test_sqlite_downgrade_waits_for_the_first_use_lock(tmp_path: Path):
    path = tmp_path / "g.db"
    url = f"sqlite:///{path}"
    upgrade(url)

    def revision() -> str:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]

    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    proc = _guardrail("db", "downgrade", "0001", "--db", url)
    before, out = _waits_then_finishes(proc, lambda: os.close(fd), revision)
    assert before == SCHEMA_REVISION  # nothing changed while the lock was held
    assert revision() == "0001" and "schema at 0001" in out


def _pg_lock(url: str):
    """Hold the schema's migration lock from another session, as a concurrent migration would."""
    engine = sa.create_engine(url)
    conn = engine.connect()
    conn.execute(sa.text("SELECT pg_advisory_lock(:k, hashtext(current_schema()))"), {"k": MIGRATION_LOCK_CLASS})
    conn.commit()

    def unlock() -> None:
        conn.close()  # the session ends: its advisory locks go with it
        engine.dispose()

    return unlock


def _pg_revision(url: str):
    def revision() -> str | None:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        finally:
            engine.dispose()

    return revision


def test_postgres_downgrade_and_upgrade_wait_for_the_advisory_lock(pg_url: str):
    upgrade(pg_url)
    revision = _pg_revision(pg_url)
    unlock = _pg_lock(pg_url)
    before, out = _waits_then_finishes(_guardrail("db", "downgrade", "0001", "--db", pg_url), unlock, revision)
    assert before == SCHEMA_REVISION and revision() == "0001" and "schema at 0001" in out

    unlock = _pg_lock(pg_url)
    before, out = _waits_then_finishes(_guardrail("db", "upgrade", "--db", pg_url), unlock, revision)
    assert before == "0001" and revision() == SCHEMA_REVISION and f"schema at {SCHEMA_REVISION}" in out


def test_postgres_lock_is_per_schema(pg_url: str):
    # Another schema's migration does not wait on this one's.
    upgrade(pg_url)
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        held = conn.execute(
            sa.text("SELECT pg_advisory_lock(:k, hashtext('other_' || current_schema())) IS NOT NULL"),
            {"k": MIGRATION_LOCK_CLASS},
        ).scalar()
        assert held
        t0 = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "guardrail", "db", "downgrade", "0003", "--db", pg_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - t0
    engine.dispose()
    assert run.returncode == 0, run.stderr
    assert took < 30 and _pg_revision(pg_url)() == "0003"
