"""Late transitions for the dispatcher: rows stored after the scan has passed their id.

A collector that published transitions while the database was away stores them when it is
back, with the ids it published them under (reserved beforehand). Those ids are below the
dispatcher's scan position by then, so the collector queues them here and the scan takes them.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create notify_late."""
    op.create_table(
        "notify_late",
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["alarm_events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id"),
    )


def downgrade() -> None:
    """Drop notify_late."""
    op.drop_table("notify_late")
