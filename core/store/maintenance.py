"""Tables of "3+2" on-demand maintenance (docs/maintenance.md): device facts, decisions, plans, records.

Kept apart from ``models.py`` (same ``Base``) so the maintenance feature owns its schema. The
registry facts of a device live in their own table keyed by device id rather than as new
``devices`` columns; firm technical level / credit and use-unit management level already sit
on ``firms`` and ``use_units``.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from semon.store.base import Base

_ID = BigInteger().with_variant(Integer, "sqlite")


class DeviceFacts(Base):
    """Registry facts the maintenance policy and inspection due dates need, per device."""

    __tablename__ = "maintenance_facts"
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    # First put into service; falls back to devices.install_date when unset.
    commission_date: Mapped[date | None] = mapped_column(Date)
    # Periodic inspection (定期检验): certificate valid until, and date of the last inspection.
    inspection_valid_until: Mapped[date | None] = mapped_column(Date)
    last_inspection_date: Mapped[date | None] = mapped_column(Date)
    liability_insurance: Mapped[bool | None] = mapped_column(Boolean)
    # Pressure vessels: safety grade 1–5 (TSG 21-2016), sets the inspection interval.
    safety_grade: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MaintenanceDecision(Base):
    """One maintenance-interval decision with everything it was made from (append-only audit trail).

    A new row is written whenever the outcome for a device changes (mode, failed gates or
    triggers, whole-point score, policy version) and on every reversion, so the row in force
    at any moment explains the device's interval at that moment.
    """

    __tablename__ = "maintenance_decisions"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    as_of: Mapped[date] = mapped_column(Date)
    trigger: Mapped[str] = mapped_column(String(16), doc="plan | reversion")
    policy_version: Mapped[str] = mapped_column(String(64))
    policy_sha256: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(32))
    interval_days: Mapped[int] = mapped_column(Integer)
    eligible: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[float | None] = mapped_column(Float)
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    gates: Mapped[list] = mapped_column(JSON, default=list)
    triggers: Mapped[list] = mapped_column(JSON, default=list)
    breakdown: Mapped[dict] = mapped_column(JSON, default=dict)
    inputs: Mapped[dict] = mapped_column(JSON, default=dict)
    due: Mapped[dict] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_maintenance_decisions_device_time", "device_id", "decided_at"),)


class MaintenancePlan(Base):
    """The interval in force for an elevator now and its next due dates (one row per elevator)."""

    __tablename__ = "maintenance_plans"
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    firm_id: Mapped[str | None] = mapped_column(String(64), index=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("maintenance_decisions.id"))
    mode: Mapped[str] = mapped_column(String(32), index=True)
    interval_days: Mapped[int] = mapped_column(Integer)
    # The day the current mode began: a switch to a shorter cycle is due from then on, never
    # retroactively overdue.
    mode_since: Mapped[date] = mapped_column(Date)
    # First planned: calendar-period tracking (quarterly / half-year / yearly) starts here.
    planned_since: Mapped[date] = mapped_column(Date)
    eligible: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[float | None] = mapped_column(Float)
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    reverted: Mapped[bool] = mapped_column(Boolean, default=False)
    # mode | failed gates | fired triggers | whole score | policy version: a change writes a decision.
    signature: Mapped[str] = mapped_column(String(400))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    half_month_due: Mapped[date] = mapped_column(Date)
    quarterly_due: Mapped[date] = mapped_column(Date)
    half_year_due: Mapped[date] = mapped_column(Date)
    yearly_due: Mapped[date] = mapped_column(Date)


class MaintenanceRecord(Base):
    """A maintenance visit (维保记录): which item classes were done, when, by whom, paperless or not."""

    __tablename__ = "maintenance_records"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    firm_id: Mapped[str | None] = mapped_column(String(64), index=True)
    performed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # Item classes done (half_month, quarterly, half_year, yearly). TSG T5002 classes are
    # cumulative, so the highest class says what the visit covered; it is what due dates use.
    item_class: Mapped[str] = mapped_column(String(16))
    item_classes: Mapped[list] = mapped_column(JSON, default=list)
    technician: Mapped[str] = mapped_column(String(200))
    paperless: Mapped[bool] = mapped_column(Boolean)
    on_time: Mapped[bool] = mapped_column(Boolean)
    due: Mapped[dict] = mapped_column(JSON, default=dict, doc="due dates of the classes done, at recording")
    notes: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_maintenance_records_device_class_time", "device_id", "item_class", "performed_at"),)
