"""junit ingest: drop the foreign key test_executions.run_id -> runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 10:00:00

``test_executions.run_id`` is a copy of its report's run (written by the ingest from the same row), kept for
per-run reads. Its own foreign key checked every inserted execution against ``runs`` a second time: the
report's key already ties each execution to a run (``report_id -> test_reports.run_id -> runs``, both ON
DELETE CASCADE, so deleting a run still deletes its executions). One trigger call less per row: about 0.7 s
of PostgreSQL's time for a 50 MB file (docs/flaky.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's foreign keys are unnamed: batch mode names them by this convention so that one can be dropped.
_NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _run_fk_name() -> str | None:
    for fk in sa.inspect(op.get_bind()).get_foreign_keys("test_executions"):
        if fk["constrained_columns"] == ["run_id"]:
            return fk["name"] or "fk_test_executions_run_id_runs"
    return None


def upgrade() -> None:
    name = _run_fk_name()
    if name is None:
        return
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("test_executions", naming_convention=_NAMING) as batch_op:
            batch_op.drop_constraint(name, type_="foreignkey")
    else:
        op.drop_constraint(name, "test_executions", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("test_executions", schema=None) as batch_op:
        batch_op.create_foreign_key("test_executions_run_id_fkey", "runs", ["run_id"], ["id"], ondelete="CASCADE")
