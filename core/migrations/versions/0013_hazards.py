"""Hidden hazards, their steps and evidence, and accidents (docs/hazards.md).

Revision ID: 0013
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create hazards, hazard_steps, hazard_evidence, accidents."""
    op.create_table(
        "hazards",
        sa.Column("id", _ID, nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("hazard_class", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("firm_id", sa.String(64), nullable=True),
        sa.Column("use_unit_id", sa.String(64), nullable=True),
        sa.Column("district", sa.String(64), nullable=True),
        sa.Column("alarm_ids", sa.JSON(), nullable=False),
        sa.Column("found_at", _TS, nullable=False),
        sa.Column("found_by", sa.String(64), nullable=False),
        sa.Column("assignee", sa.String(200), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("rectified_at", _TS, nullable=True),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("closed_by", sa.String(64), nullable=True),
        sa.Column("escalated_at", _TS, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for col in ("device_id", "hazard_class", "status", "firm_id", "district", "found_at", "closed_at"):
        op.create_index(f"ix_hazards_{col}", "hazards", [col])
    op.create_index("ix_hazards_device_code_status", "hazards", ["device_id", "code", "status"])
    op.create_table(
        "hazard_steps",
        sa.Column("id", _ID, nullable=False),
        sa.Column("hazard_id", _ID, nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["hazard_id"], ["hazards.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_hazard_steps_hazard_id", "hazard_steps", ["hazard_id"])
    op.create_table(
        "hazard_evidence",
        sa.Column("id", _ID, nullable=False),
        sa.Column("hazard_id", _ID, nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_by", sa.String(64), nullable=False),
        sa.Column("uploaded_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["hazard_id"], ["hazards.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_hazard_evidence_hazard_id", "hazard_evidence", ["hazard_id"])
    op.create_table(
        "accidents",
        sa.Column("id", _ID, nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("deaths", sa.Integer(), nullable=False),
        sa.Column("injuries", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_accidents_device_id", "accidents", ["device_id"])
    op.create_index("ix_accidents_occurred_on", "accidents", ["occurred_on"])


def downgrade() -> None:
    """Drop the hazard tables."""
    for t in ("accidents", "hazard_evidence", "hazard_steps", "hazards"):
        op.drop_table(t)
