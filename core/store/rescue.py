"""The table of trapped-passenger rescues (困梯救援, docs/alerts.md): one row per entrapment alarm,
its dispatch, arrival and release. Every step is also an ``alarm_events`` row, the source of
truth; this row is the rescue's current state and its KPIs' input.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from semon.store.base import Base

_ID = BigInteger().with_variant(Integer, "sqlite")


class Rescue(Base):
    """A trapped-passenger rescue (困梯救援): alarm → dispatched → arrived → released."""

    __tablename__ = "rescues"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), unique=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    # The firm responsible when the entrapment happened (KPIs group by it).
    firm_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), doc="open | dispatched | arrived | released")
    alarm_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # Guangzhou 96333 tiers: own_firm | rescue_station | fire_service.
    tier: Mapped[str | None] = mapped_column(String(16))
    responder: Mapped[str | None] = mapped_column(String(100))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dispatched_by: Mapped[str | None] = mapped_column(String(64))
    arrived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    arrived_by: Mapped[str | None] = mapped_column(String(64))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_by: Mapped[str | None] = mapped_column(String(64))
    # external | misuse | equipment | unknown (recorded at release).
    cause: Mapped[str | None] = mapped_column(String(16))
    arrival_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    breach_escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notes: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
