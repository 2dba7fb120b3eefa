"""junit ingest: drop two indexes no query uses

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 09:10:00

Every index costs each of the ~100k rows a 50 MB JUnit file adds (docs/flaky.md, "Ingest of the 50.4 MiB
JUnit file"). ``ix_test_executions_signature``: no query filters executions by signature (the verdicts carry
the signatures that the reports read). ``ix_test_verdicts_test_at`` (test_pk, at): every per-test read is
served as well by the unique (test_pk, pair_key) index (same test_pk prefix; the few verdicts of one test are
sorted after) or by ``ix_test_verdicts_window`` on PostgreSQL -- same plans and timings, measured on SQLite and
PostgreSQL. The indexes that back a foreign key's ON DELETE CASCADE are kept.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("test_executions", schema=None) as batch_op:
        batch_op.drop_index("ix_test_executions_signature")
    with op.batch_alter_table("test_verdicts", schema=None) as batch_op:
        batch_op.drop_index("ix_test_verdicts_test_at")


def downgrade() -> None:
    with op.batch_alter_table("test_verdicts", schema=None) as batch_op:
        batch_op.create_index("ix_test_verdicts_test_at", ["test_pk", "at"], unique=False)
    with op.batch_alter_table("test_executions", schema=None) as batch_op:
        batch_op.create_index("ix_test_executions_signature", ["signature"], unique=False)
