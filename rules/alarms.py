"""Alarm store: turns engine transitions into database rows and the message to publish.

One active alarm per device and type is guaranteed by the database (partial unique index),
so two collectors racing to raise the same alarm end up with one row.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from semon.rules.base import AlarmTransition
from semon.store.db import Database
from semon.store.models import Alarm, AlarmEvent

log = logging.getLogger(__name__)


def alarm_message(a: Alarm, event: str, ts: int) -> dict[str, Any]:
    """The JSON transition published on ``semon/v1/alarms/{firm}/{device}`` (schemas/alarm.json)."""
    return {
        "alarm_id": a.id,
        "event": event,
        "device_id": a.device_id,
        "kind": a.kind,
        "firm_id": a.firm_id,
        "type": a.type,
        "rule_id": a.rule_id,
        "severity": a.severity,
        "active": a.active,
        "acknowledged": a.acknowledged,
        "onset_ts": a.onset_ts,
        "start_ts": a.start_ts,
        "end_ts": a.end_ts,
        "ts": ts,
        "message": a.message,
        "details": a.details,
    }


class AlarmStore:
    """Applies transitions to the ``alarms`` / ``alarm_events`` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def active(self) -> list[Alarm]:
        """Every active alarm (used to restore engine state at start-up)."""
        with self.db.session() as s:
            return list(s.scalars(select(Alarm).where(Alarm.active)))

    def apply(self, t: AlarmTransition) -> dict[str, Any] | None:
        """Store a transition; return the message to publish, or None when nothing changed."""
        return self._raise(t) if t.event == "raised" else self._clear(t)

    def _raise(self, t: AlarmTransition) -> dict[str, Any] | None:
        now = datetime.now(UTC)
        try:
            with self.db.session() as s:
                # A redelivered backlog after a crash replays conditions that an alarm already
                # covered and cleared: an alarm cannot begin before the previous one ended.
                last_end = s.scalar(
                    select(func.max(Alarm.end_ts)).where(
                        Alarm.device_id == t.device.id, Alarm.type == t.rule.alarm_type, ~Alarm.active
                    )
                )
                if last_end is not None and last_end >= t.onset_ts:
                    log.info(
                        "replayed %s on %s (onset %d ≤ last end %d)",
                        t.rule.alarm_type,
                        t.device.id,
                        t.onset_ts,
                        last_end,
                    )
                    return None
                a = Alarm(
                    device_id=t.device.id,
                    kind=t.device.kind,
                    firm_id=t.device.firm_id or None,
                    type=t.rule.alarm_type,
                    rule_id=t.rule.id,
                    severity=t.rule.severity.value,
                    active=True,
                    acknowledged=False,
                    onset_ts=t.onset_ts,
                    start_ts=t.ts,
                    created_at=now,
                    updated_at=now,
                    message=t.message,
                    details=t.details,
                )
                s.add(a)
                s.flush()
                s.add(
                    AlarmEvent(alarm_id=a.id, event="raised", ts=t.ts, at=now, severity=a.severity, details=t.details)
                )
                return alarm_message(a, "raised", t.ts)
        except IntegrityError:
            # Another collector raised it first: the constraint did its job.
            log.info("%s on %s already active (raised elsewhere)", t.rule.alarm_type, t.device.id)
            return None

    def _clear(self, t: AlarmTransition) -> dict[str, Any] | None:
        now = datetime.now(UTC)
        with self.db.session() as s:
            a = s.scalar(
                select(Alarm)
                .where(Alarm.device_id == t.device.id, Alarm.type == t.rule.alarm_type, Alarm.active)
                .with_for_update()
            )
            if a is None:
                return None
            a.active, a.end_ts, a.updated_at = False, t.ts, now
            s.add(AlarmEvent(alarm_id=a.id, event="cleared", ts=t.ts, at=now, severity=a.severity, details=t.details))
            return alarm_message(a, "cleared", t.ts)
