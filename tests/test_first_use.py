"""SQLite's migrate-on-first-use is atomic: a kill -9 mid-migration leaves no database or a whole one, concurrent
first uses all succeed, a half-migrated file is refused in one line (issue 13 point 2)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardrail.store.db import SCHEMA_REVISION
from tests.factories import result_doc, write


def _guardrail(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "guardrail", *args], capture_output=True, text=True, timeout=120)


def _revision(db: Path) -> str | None:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.6, 0.9, 1.2, "temp-file"])
def test_kill_during_first_use_leaves_no_database_or_a_whole_one(tmp_path, delay):
    db = tmp_path / "new.db"
    proc = subprocess.Popen([sys.executable, "-m", "guardrail", "db", "upgrade", "--db", f"sqlite:///{db}"])
    if delay == "temp-file":  # the moment the migration is under way on its temporary file
        for _ in range(3000):
            if list(tmp_path.glob(".new.db.new-*")) or proc.poll() is not None:
                break
            time.sleep(0.002)
    else:
        time.sleep(float(delay))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not db.exists() or _revision(db) == SCHEMA_REVISION
    # the next command works, and tidies the killed one's temporary file
    result = tmp_path / "r.json"
    write(result, result_doc())
    done = _guardrail("ingest", "--db", f"sqlite:///{db}", str(result))
    assert done.returncode == 0, done.stderr
    assert _revision(db) == SCHEMA_REVISION
    assert not list(tmp_path.glob(".new.db.new-*"))


def test_concurrent_first_uses_all_succeed(tmp_path):
    db = tmp_path / "new.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "guardrail", "db", "upgrade", "--db", f"sqlite:///{db}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert outcomes == [(0, "")] * 6
    assert _revision(db) == SCHEMA_REVISION


@pytest.mark.parametrize(
    "damage, says",
    [
        ("CREATE TABLE api_tokens (id INTEGER PRIMARY KEY)", "no schema revision"),
        ("CREATE TABLE _alembic_tmp_test_executions (id INTEGER PRIMARY KEY)", "interrupted migration"),
    ],
)
def test_a_half_migrated_file_is_explained_in_one_line(tmp_path, damage, says):
    db = tmp_path / "half.db"
    conn = sqlite3.connect(db)
    conn.execute(damage)
    conn.commit()
    conn.close()
    result = write(tmp_path / "r.json", result_doc())
    done = _guardrail("ingest", "--db", f"sqlite:///{db}", str(result))
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(db) in lines[0] and says in lines[0] and "move it away" in lines[0]


@pytest.mark.parametrize(
    "url, code, says",
    [
        ("postgresql+psycopg://u:sekret@127.0.0.1:abc/db", 2, "not a database URL"),
        ("postgresql+psycopg://u:sekret@127.0.0.1:99999/db", 2, "not a TCP port"),
        ("postgresql+psycopg2://u:sekret@127.0.0.1:5432/db", 2, "use postgresql+psycopg://"),
        ("postgresql+psycopg://u:sekret@127.0.0.1:1/db", 3, "cannot reach the database"),
    ],
)
def test_a_bad_database_url_is_one_line_without_the_password(tmp_path, url, code, says):
    result = write(tmp_path / "r.json", result_doc())
    done = _guardrail("ingest", "--db", url, str(result))
    lines = done.stderr.strip().splitlines()
    assert (done.returncode, len(lines)) == (code, 1), done.stderr
    assert says in lines[0] and "sekret" not in done.stderr + done.stdout
