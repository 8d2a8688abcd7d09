"""Alarm lifecycle: who acknowledged / cleared / is assigned, terminal codes, publish marker.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the lifecycle columns."""
    with op.batch_alter_table("alarms", schema=None) as b:
        b.add_column(sa.Column("acked_by", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("cleared_by", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("assignee", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("raw_code", sa.Integer(), nullable=True))
        b.add_column(sa.Column("code_scheme", sa.String(length=32), nullable=True))
    with op.batch_alter_table("alarm_events", schema=None) as b:
        b.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
        b.create_index(b.f("ix_alarm_events_published_at"), ["published_at"], unique=False)


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("alarm_events", schema=None) as b:
        b.drop_index(b.f("ix_alarm_events_published_at"))
        b.drop_column("published_at")
    with op.batch_alter_table("alarms", schema=None) as b:
        for c in ("code_scheme", "raw_code", "assigned_at", "assignee", "cleared_by", "acked_by"):
            b.drop_column(c)
