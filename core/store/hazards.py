"""Tables of hidden hazards (隐患) and accidents (docs/hazards.md).

A hazard is a record with a lifecycle (candidate → open → rectified → closed, or rejected);
every step is a ``hazard_steps`` row with its actor and time, evidence files are kept in the
database beside it (one transaction, one backup, the same tenancy), and accidents are recorded
by the regulator for the plan's per-10,000-unit indicators.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from semon.store.base import Base

_ID = BigInteger().with_variant(Integer, "sqlite")


class Hazard(Base):
    """One hidden hazard on one device."""

    __tablename__ = "hazards"
    __table_args__ = (Index("ix_hazards_device_code_status", "device_id", "code", "status"),)
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(40))
    hazard_class: Mapped[str] = mapped_column(String(16), index=True, doc="major | general")
    status: Mapped[str] = mapped_column(String(16), index=True, doc="candidate|open|rectified|closed|rejected")
    source: Mapped[str] = mapped_column(String(16), doc="inspection | firm | import | alarm")
    description: Mapped[str] = mapped_column(Text, default="")
    # Who must fix it, copied from the registry when it is found (the responsible units then).
    firm_id: Mapped[str | None] = mapped_column(String(64), index=True)
    use_unit_id: Mapped[str | None] = mapped_column(String(64))
    district: Mapped[str | None] = mapped_column(String(64), index=True)
    alarm_ids: Mapped[list] = mapped_column(JSON, default=list, doc="alarms that revealed or support it")
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    found_by: Mapped[str] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(200), doc="the person who must rectify it")
    deadline: Mapped[date | None] = mapped_column(Date, doc="last local day to rectify it")
    rectified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HazardStep(Base):
    """One step of a hazard's lifecycle: who did what, when, and with which note."""

    __tablename__ = "hazard_steps"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    hazard_id: Mapped[int] = mapped_column(ForeignKey("hazards.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class HazardEvidence(Base):
    """A file (photo, report) attached to a hazard, usually with its rectification."""

    __tablename__ = "hazard_evidence"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    hazard_id: Mapped[int] = mapped_column(ForeignKey("hazards.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Accident(Base):
    """An accident on a device, recorded by the regulator."""

    __tablename__ = "accidents"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    occurred_on: Mapped[date] = mapped_column(Date, index=True, doc="local calendar day")
    deaths: Mapped[int] = mapped_column(Integer, default=0)
    injuries: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(Text, default="")
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
