"""Schema migrations on both databases; secrets never shown."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa

from guardrail.store import db as store_db


def test_upgrade_and_downgrade_to_base(db_url):
    store_db.upgrade(db_url)
    assert store_db.current_revision(db_url) == store_db.head_revision()
    tables = set(sa.inspect(store_db.get_engine(db_url)).get_table_names())
    assert {"runs", "results", "measurements", "series", "checks", "verdicts", "alerts"} <= tables
    store_db.downgrade(db_url, "base")
    assert store_db.current_revision(db_url) is None
    left = set(sa.inspect(store_db.get_engine(db_url)).get_table_names()) - {"alembic_version"}
    assert left == set()
    store_db.upgrade(db_url)  # and back up again
    assert store_db.current_revision(db_url) == store_db.head_revision()


def test_cli_db_commands(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "guardrail", "db", *args, "--db", url], capture_output=True, text=True
        )

    up = run("upgrade")
    assert up.returncode == 0 and f"schema at {store_db.head_revision()}" in up.stdout
    assert "at base" in run("downgrade").stdout


def test_unreachable_database_is_an_infra_error_without_the_password():
    url = "postgresql+psycopg://guard:s3cr3t-pw@127.0.0.1:1/nothing"
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail", "check", "--run", "1", "--db", url],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3
    assert "cannot reach the database" in proc.stderr and "s3cr3t-pw" not in proc.stderr + proc.stdout
    assert "***" in proc.stderr


def test_postgres_out_of_date_schema_says_what_to_run(pg_url):
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail", "check", "--run", "1", "--db", pg_url],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3 and "guardrail db upgrade" in proc.stderr


def test_schema_revision_constant_is_alembics_head():
    assert store_db.SCHEMA_REVISION == store_db.head_revision()


def test_cli_start_up_loads_no_heavy_stack():
    """Every command pays for what `import guardrail.cli` imports: keep torch, scipy, the web stack and the
    database layer out of it (they load inside the commands that use them)."""
    code = (
        "import sys, guardrail.cli; heavy = {'torch', 'scipy', 'sqlalchemy', 'fastapi', 'diffusers', 'alembic'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
