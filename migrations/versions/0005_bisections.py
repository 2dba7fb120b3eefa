"""bisections: one row per `guardrail bisect` and one per step it took

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:30:00

A bisection's steps (which commit, why, what it read as against both ends) get tables of their own rather
than a JSON column on `alerts`: a bisection may run without an alert (`--good/--bad`), the steps arrive one
by one as results come in, and the alert page reads the newest bisection of an alert by its key.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bisections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("workload", sa.String(length=300), nullable=False),
        sa.Column("metric", sa.String(length=200), nullable=False),
        sa.Column("hardware", sa.String(length=200), nullable=True),
        sa.Column("good", sa.String(length=64), nullable=False),
        sa.Column("bad", sa.String(length=64), nullable=False),
        sa.Column("commits", sa.JSON(), nullable=False),
        sa.Column("dispatch", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("stop_reason", sa.String(length=40), nullable=True),
        sa.Column("culprit", sa.String(length=64), nullable=True),
        sa.Column("confidence", sa.JSON(), nullable=False),
        sa.Column("low", sa.Integer(), nullable=False),
        sa.Column("high", sa.Integer(), nullable=False),
        sa.Column("budget_minutes", sa.Float(), nullable=True),
        sa.Column("spent_minutes", sa.Float(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("bisections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bisections_alert_id"), ["alert_id"], unique=False)

    op.create_table(
        "bisection_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bisection_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("sha", sa.String(length=64), nullable=True),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=True),
        sa.Column("readings", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bisection_id"], ["bisections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("bisection_id", "seq"),
    )
    with op.batch_alter_table("bisection_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bisection_steps_bisection_id"), ["bisection_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("bisection_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bisection_steps_bisection_id"))
    op.drop_table("bisection_steps")
    with op.batch_alter_table("bisections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bisections_alert_id"))
    op.drop_table("bisections")
