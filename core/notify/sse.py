"""Reads behind ``GET /alarms/stream``: alarm transitions after an id, in the caller's tenancy.

The stream's data is the same document as the MQTT message and the webhook body
(``schemas/alarm.json``), its SSE ``id`` the ``alarm_events`` id, so a client that reconnects with
``Last-Event-ID`` resumes exactly after the last transition it saw.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from semon.rules.alarms import event_message
from semon.store.access import Access
from semon.store.db import Database
from semon.store.models import Alarm, AlarmEvent


def newest_event_id(db: Database) -> int:
    """Highest ``alarm_events`` id (0 when there is none)."""
    with db.session() as s:
        return s.scalar(select(func.max(AlarmEvent.id))) or 0


class Horizon:
    """The highest transition id a stream may send up to without skipping one for good.

    Ids are handed out at insert but become visible at commit, so id 12 may be readable before
    id 11; a stream that sent 12 would never send 11 (clients resume *after* their last id). The
    horizon stops below a missing id until it appears or ``grace_s`` passes (then it was a
    rolled-back insert, which concurrent raisers leave behind). One horizon per process, over
    all tenants' ids: a tenant's own ids have holes everywhere (other tenants' transitions).
    """

    def __init__(self, db: Database, grace_s: float = 2.0) -> None:
        self.db = db
        self.grace_s = grace_s
        self.safe = newest_event_id(db)
        self.gaps: dict[int, float] = {}

    def advance(self) -> int:
        """Read the ids committed since the last call; returns the new safe id."""
        now = time.monotonic()
        with self.db.session() as s:
            start = min(self.gaps) - 1 if self.gaps else self.safe
            q = select(AlarmEvent.id).where(AlarmEvent.id > start).order_by(AlarmEvent.id).limit(5000)
            ids = list(s.scalars(q))
        seen = set(ids)
        expected = start + 1
        for i in ids:
            for missing in range(expected, min(i, expected + 1000)):
                self.gaps.setdefault(missing, now)
            expected = i + 1
        for missing in list(self.gaps):
            if missing in seen or now - self.gaps[missing] >= self.grace_s:
                del self.gaps[missing]
        top = ids[-1] if ids else start
        self.safe = max(self.safe, min(self.gaps) - 1 if self.gaps else top)
        return self.safe


def transitions_after(
    access: Access, after_id: int, upto: int | None = None, limit: int = 200
) -> list[tuple[int, dict[str, Any]]]:
    """(event id, message) of the caller's transitions with ``after_id`` < id ≤ ``upto``, oldest first."""
    stmt = access.scoped(
        select(AlarmEvent, Alarm).join(Alarm, Alarm.id == AlarmEvent.alarm_id).where(AlarmEvent.id > after_id),
        Alarm.device_id,
    )
    if upto is not None:
        stmt = stmt.where(AlarmEvent.id <= upto)
    rows = access.s.execute(stmt.order_by(AlarmEvent.id).limit(limit)).all()
    return [(ev.id, event_message(ev, a)) for ev, a in rows]
