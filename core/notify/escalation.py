"""Escalation to the regulator: alarms left unacknowledged, rescues whose arrival is overdue.

* An active alarm of a severity listed in ``escalation_after_s`` that nobody acknowledged within
  N seconds of being raised escalates (level 1), and again every N seconds while it stays active
  and unacknowledged (levels 2, 3…). A dispatcher that was down catches up with one escalation
  at the level due now, not a burst of the missed ones.
* A trapped-passenger rescue with no arrival ``rescue_arrival_limit_s`` after the alarm, while
  the alarm is still active (the car still reports the passenger), escalates once and is flagged
  as a breach. Once the sensors see the car empty, sending the fire service makes no sense; an
  arrival recorded late is still flagged (:mod:`semon.rules.rescue`).

Each escalation is an ``alarm_events`` row ``escalated`` with actor ``escalation``: the
collector's relay publishes it on MQTT, the dispatcher delivers it to webhooks (regulator
webhooks get escalations by default), ``/alarms/stream`` shows it. The ``escalations`` table's
unique (alarm, reason, level) — taken under the alarm's row lock — makes several dispatchers
escalate once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from semon.config import Settings
from semon.store.db import Database
from semon.store.models import Alarm, AlarmEvent
from semon.store.notify_models import Escalation
from semon.store.rescue import Rescue
from semon.timeutil import as_utc, to_ms, utc_now

log = logging.getLogger(__name__)

ACTOR = "escalation"
UNACKNOWLEDGED = "unacknowledged"
RESCUE_ARRIVAL = "rescue_arrival_overdue"


def escalate(
    db: Database, alarm_id: int, reason: str, level: int, details: dict[str, Any], now: datetime, *, rescue_id: int = 0
) -> int | None:
    """Record one escalation (event + escalations row) if it still applies; the event id or None."""
    try:
        with db.session() as s:
            a = s.scalar(select(Alarm).where(Alarm.id == alarm_id).with_for_update())
            if a is None or not a.active:
                return None
            if reason == UNACKNOWLEDGED and a.acknowledged:
                return None  # acknowledged while we were deciding
            done = s.scalar(
                select(Escalation.id).where(
                    Escalation.alarm_id == alarm_id, Escalation.reason == reason, Escalation.level == level
                )
            )
            if done is not None:
                return None  # another dispatcher was first (we waited on its row lock)
            r = None
            if rescue_id:
                r = s.scalar(select(Rescue).where(Rescue.id == rescue_id).with_for_update())
                if r is None or r.arrived_at is not None or r.released_at is not None:
                    return None
            ev = AlarmEvent(
                alarm_id=a.id, event="escalated", ts=to_ms(now), at=now, severity=a.severity, actor=ACTOR,
                details={"reason": reason, "level": level, "to": "regulator", **details},
            )  # fmt: skip
            s.add(ev)
            s.flush()
            s.add(Escalation(alarm_id=a.id, reason=reason, level=level, event_id=ev.id, at=now))
            if r is not None:
                r.arrival_breached, r.breach_escalated_at, r.updated_at = True, now, now
            s.flush()
            log.warning(
                "alarm escalated to the regulator",
                extra={"alarm_id": a.id, "device_id": a.device_id, "reason": reason, "level": level},
            )
            return ev.id
    except IntegrityError:
        return None  # a concurrent dispatcher (SQLite has no row lock) recorded it


def escalate_unacknowledged(db: Database, settings: Settings, now: datetime | None = None) -> int:
    """Escalate every alarm whose next escalation is due; returns how many escalated."""
    rules = {sev: after for sev, after in settings.escalation_after_s.items() if after > 0}
    if not rules:
        return 0
    now = now or utc_now()
    with db.session() as s:
        candidates = s.execute(
            select(Alarm.id, Alarm.severity, Alarm.created_at).where(
                Alarm.active, Alarm.acknowledged.is_(False), Alarm.severity.in_(list(rules))
            )
        ).all()
        if not candidates:
            return 0
        done = dict(
            s.execute(
                select(Escalation.alarm_id, func.max(Escalation.level))
                .where(Escalation.reason == UNACKNOWLEDGED, Escalation.alarm_id.in_([c[0] for c in candidates]))
                .group_by(Escalation.alarm_id)
            ).all()
        )
    n = 0
    for alarm_id, severity, created_at in candidates:
        after = rules[severity]
        waited = (now - as_utc(created_at)).total_seconds()
        level = int(waited // after)
        if level >= 1 and level > done.get(alarm_id, 0):
            details = {"after_s": after, "unacknowledged_for_s": round(waited, 1)}
            if escalate(db, alarm_id, UNACKNOWLEDGED, level, details, now) is not None:
                n += 1
    return n


def escalate_rescue_arrivals(db: Database, settings: Settings, now: datetime | None = None) -> int:
    """Escalate rescues still waiting for an arrival past the limit; returns how many escalated."""
    now = now or utc_now()
    limit = settings.rescue_arrival_limit_s
    with db.session() as s:
        overdue = s.execute(
            select(Rescue.id, Rescue.alarm_id, Rescue.alarm_at)
            .join(Alarm, Alarm.id == Rescue.alarm_id)
            .where(
                Rescue.arrived_at.is_(None),
                Rescue.released_at.is_(None),
                Rescue.breach_escalated_at.is_(None),
                Rescue.alarm_at <= now - timedelta(seconds=limit),
                Alarm.active,
            )
        ).all()
    n = 0
    for rescue_id, alarm_id, alarm_at in overdue:
        waited = (now - as_utc(alarm_at)).total_seconds()
        if waited < limit:
            continue
        details = {"rescue_id": rescue_id, "limit_s": limit, "waiting_for_arrival_s": round(waited, 1)}
        if escalate(db, alarm_id, RESCUE_ARRIVAL, 1, details, now, rescue_id=rescue_id) is not None:
            n += 1
    return n
