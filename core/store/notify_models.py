"""Tables of alert delivery (docs/alerts.md): webhook subscriptions, the delivery outbox, the
dispatcher's scan watermark and escalations (rescues: :mod:`semon.store.rescue`).

Kept apart from ``models.py`` (same ``Base``) so the notification feature owns its schema. The
source of truth stays ``alarm_events``: every delivery row points at the transition it carries,
and every escalation step is itself an ``alarm_events`` row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from semon.store.base import Base

_ID = BigInteger().with_variant(Integer, "sqlite")


class Webhook(Base):
    """A webhook subscription of a firm, an owner (use unit) or — both null — the regulator."""

    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    firm_id: Mapped[str | None] = mapped_column(ForeignKey("firms.id"), index=True)
    use_unit_id: Mapped[str | None] = mapped_column(ForeignKey("use_units.id"), index=True)
    # "webhook" (signed JSON POST) or a channel: "wecom", "dingtalk", "email", "sms".
    kind: Mapped[str] = mapped_column(String(16), default="webhook", server_default="webhook")
    url: Mapped[str] = mapped_column(String(2000))
    # Sealed with SEMON_SECRET_KEY (semon.notify.sealed): the HMAC key of a webhook, the JSON
    # credentials of a channel (robot key, DingTalk secret, SMTP password, SMS key secret).
    secret: Mapped[str] = mapped_column(Text)
    # A channel's non-secret settings (recipients, sender, SMS template…), by kind.
    config: Mapped[dict | None] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Filters: only transitions at least this severe; only these event names (null = all).
    min_severity: Mapped[str | None] = mapped_column(String(16))
    events: Mapped[list | None] = mapped_column(JSON)
    # Only these severities (null = all): "critical to SMS, the rest to the group".
    severities: Mapped[list | None] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One transition to one webhook: the outbox row, drained at-least-once by the dispatcher.

    ``pending`` rows are due at ``next_attempt_at``; a dispatcher claims a row by moving that
    time forward by a lease, so a dispatcher killed mid-send leaves it due again afterwards.
    """

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("alarm_events.id"))
    status: Mapped[str] = mapped_column(String(16), doc="pending | delivered | dead")
    # The body as first built: every attempt and redelivery sends the same document.
    payload: Mapped[dict] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dead_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("event_id", "webhook_id", name="uq_webhook_deliveries_event_webhook"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook", "webhook_id", "status", "id"),
    )


class NotifyState(Base):
    """Small persistent counters of the dispatcher (the alarm_events scan watermark)."""

    __tablename__ = "notify_state"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NotifyLate(Base):
    """A transition stored after the dispatcher's scan passed its id (published during a
    database outage under a reserved id); the scan takes it from here and deletes the row."""

    __tablename__ = "notify_late"
    event_id: Mapped[int] = mapped_column(_ID, ForeignKey("alarm_events.id", ondelete="CASCADE"), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Escalation(Base):
    """An escalation to the regulator; the unique key makes concurrent dispatchers escalate once."""

    __tablename__ = "escalations"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    reason: Mapped[str] = mapped_column(String(32), doc="unacknowledged | rescue_arrival_overdue")
    level: Mapped[int] = mapped_column(Integer, doc="1 for the first, +1 per repeat")
    event_id: Mapped[int | None] = mapped_column(ForeignKey("alarm_events.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("alarm_id", "reason", "level", name="uq_escalations_alarm_reason_level"),)
