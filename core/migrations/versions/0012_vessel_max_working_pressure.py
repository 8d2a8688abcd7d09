"""Vessels' maximum working pressure: the overpressure rule's major threshold (domain.md §5).

Revision ID: 0012
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add devices.max_working_pressure (MPa, nullable: unknown → set pressure / 1.05)."""
    op.add_column("devices", sa.Column("max_working_pressure", sa.Float(), nullable=True))


def downgrade() -> None:
    """Drop devices.max_working_pressure."""
    with op.batch_alter_table("devices") as b:
        b.drop_column("max_working_pressure")
