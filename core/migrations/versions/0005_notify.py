"""Alert delivery: webhooks, the delivery outbox, the scan watermark, escalations, rescues.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create notify_state, webhooks, webhook_deliveries, escalations and rescues."""
    op.create_table(
        "notify_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # The dispatcher's scan starts after the transitions that exist now: history stored before
    # alert delivery was installed is not sent to anyone (nor turned into rescue records).
    op.execute(
        "INSERT INTO notify_state (name, value, updated_at) "
        "SELECT 'alarm_events_scan', COALESCE(MAX(id), 0), CURRENT_TIMESTAMP FROM alarm_events"
    )
    op.create_table(
        "webhooks",
        sa.Column("id", _ID, nullable=False),
        sa.Column("firm_id", sa.String(length=64), nullable=True),
        sa.Column("use_unit_id", sa.String(length=64), nullable=True),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("min_severity", sa.String(length=16), nullable=True),
        sa.Column("events", sa.JSON(), nullable=True),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"]),
        sa.ForeignKeyConstraint(["use_unit_id"], ["use_units.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhooks", schema=None) as b:
        b.create_index(b.f("ix_webhooks_firm_id"), ["firm_id"], unique=False)
        b.create_index(b.f("ix_webhooks_use_unit_id"), ["use_unit_id"], unique=False)

    op.create_table(
        "rescues",
        sa.Column("id", _ID, nullable=False),
        sa.Column("alarm_id", _ID, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("firm_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("alarm_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=True),
        sa.Column("responder", sa.String(length=100), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_by", sa.String(length=64), nullable=True),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("arrived_by", sa.String(length=64), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=64), nullable=True),
        sa.Column("cause", sa.String(length=16), nullable=True),
        sa.Column("arrival_breached", sa.Boolean(), nullable=False),
        sa.Column("breach_escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alarm_id"], ["alarms.id"]),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alarm_id"),
    )
    with op.batch_alter_table("rescues", schema=None) as b:
        b.create_index(b.f("ix_rescues_alarm_at"), ["alarm_at"], unique=False)
        b.create_index(b.f("ix_rescues_device_id"), ["device_id"], unique=False)
        b.create_index(b.f("ix_rescues_firm_id"), ["firm_id"], unique=False)

    op.create_table(
        "escalations",
        sa.Column("id", _ID, nullable=False),
        sa.Column("alarm_id", _ID, nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("event_id", _ID, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alarm_id"], ["alarms.id"]),
        sa.ForeignKeyConstraint(["event_id"], ["alarm_events.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alarm_id", "reason", "level", name="uq_escalations_alarm_reason_level"),
    )
    with op.batch_alter_table("escalations", schema=None) as b:
        b.create_index(b.f("ix_escalations_alarm_id"), ["alarm_id"], unique=False)

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _ID, nullable=False),
        sa.Column("webhook_id", _ID, nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["alarm_events.id"]),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhooks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "webhook_id", name="uq_webhook_deliveries_event_webhook"),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as b:
        b.create_index("ix_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False)
        b.create_index("ix_webhook_deliveries_webhook", ["webhook_id", "status", "id"], unique=False)


def downgrade() -> None:
    """Drop the alert-delivery tables."""
    with op.batch_alter_table("webhook_deliveries", schema=None) as b:
        b.drop_index("ix_webhook_deliveries_webhook")
        b.drop_index("ix_webhook_deliveries_due")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("escalations", schema=None) as b:
        b.drop_index(b.f("ix_escalations_alarm_id"))
    op.drop_table("escalations")
    with op.batch_alter_table("rescues", schema=None) as b:
        b.drop_index(b.f("ix_rescues_firm_id"))
        b.drop_index(b.f("ix_rescues_device_id"))
        b.drop_index(b.f("ix_rescues_alarm_at"))
    op.drop_table("rescues")
    with op.batch_alter_table("webhooks", schema=None) as b:
        b.drop_index(b.f("ix_webhooks_use_unit_id"))
        b.drop_index(b.f("ix_webhooks_firm_id"))
    op.drop_table("webhooks")
    op.drop_table("notify_state")
