"""Relational schema (SQLAlchemy 2): registry, alarms and their transitions, dead letters.

Alembic migrations in ``semon/migrations`` create exactly this schema; a test compares them.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from semon.store.base import Base


class Firm(Base):
    """Maintenance firm (维保单位)."""

    __tablename__ = "firms"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tech_level: Mapped[int | None] = mapped_column(Integer)
    credit_grade: Mapped[str | None] = mapped_column(String(8))
    credit_score: Mapped[float | None] = mapped_column(Float)


class UseUnit(Base):
    """Use unit / owner (使用单位)."""

    __tablename__ = "use_units"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mgmt_level: Mapped[int | None] = mapped_column(Integer)


class Device(Base):
    """A registered piece of equipment (domain.md §3–5)."""

    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    equipment_code: Mapped[str | None] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    district: Mapped[str | None] = mapped_column(String(64), index=True)
    address: Mapped[str | None] = mapped_column(String(300))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    firm_id: Mapped[str | None] = mapped_column(ForeignKey("firms.id"), index=True)
    use_unit_id: Mapped[str | None] = mapped_column(ForeignKey("use_units.id"), index=True)
    install_date: Mapped[date | None] = mapped_column(Date)
    # Elevator attributes.
    rated_speed: Mapped[float | None] = mapped_column(Float)
    floors: Mapped[int | None] = mapped_column(Integer)
    bottom_floor: Mapped[int | None] = mapped_column(Integer)
    # Vessel attributes.
    design_pressure: Mapped[float | None] = mapped_column(Float)
    set_pressure: Mapped[float | None] = mapped_column(Float)
    # Highest pressure of normal operation (MPa); the overpressure rule's major threshold.
    max_working_pressure: Mapped[float | None] = mapped_column(Float)
    design_temperature: Mapped[float | None] = mapped_column(Float)
    medium: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)


class Alarm(Base):
    """An alarm: one per device and type while active (enforced by a partial unique index)."""

    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    firm_id: Mapped[str | None] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    # Device time (ms) of condition onset, of raising, of clearing; wall times for audit.
    onset_ts: Mapped[int] = mapped_column(BigInteger)
    start_ts: Mapped[int] = mapped_column(BigInteger)
    end_ts: Mapped[int | None] = mapped_column(BigInteger)
    ack_ts: Mapped[int | None] = mapped_column(BigInteger)
    acked_by: Mapped[str | None] = mapped_column(String(64))
    cleared_by: Mapped[str | None] = mapped_column(String(64), doc="'rules' or the operator who cleared it")
    assignee: Mapped[str | None] = mapped_column(String(64))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The terminal's own code when a code table raised the alarm (GB/T 24476 or a platform's).
    raw_code: Mapped[int | None] = mapped_column(Integer)
    code_scheme: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index(
            "uq_alarms_one_active",
            "device_id",
            "type",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )


class AlarmEvent(Base):
    """Every alarm transition (raised, cleared, …), in order, as published."""

    __tablename__ = "alarm_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    ts: Mapped[int] = mapped_column(BigInteger, doc="device time (ms) the transition refers to")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    severity: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64), default="rules")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    # Set once the transition went out on the alarm topic; operator actions made through the
    # API are relayed by a collector, which finds them here.
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)


class DeadLetter(Base):
    """A rejected inbound message with the reason; never silently dropped."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    topic: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    payload_size: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[str | None] = mapped_column(String(64), index=True)



class ApiKey(Base):
    """An API key: only a SHA-256 of the secret is stored (keys are random, 256-bit)."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True, doc="public part, for lookup and display")
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    firm_id: Mapped[str | None] = mapped_column(ForeignKey("firms.id"))
    use_unit_id: Mapped[str | None] = mapped_column(ForeignKey("use_units.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
