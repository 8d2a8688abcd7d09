"""Alarm store: the alarm lifecycle in the database, and the messages that announce it.

* One active alarm per device and type is guaranteed by the database (partial unique index),
  so two collectors racing to raise the same alarm end up with one row.
* Transitions of one (device, type) are serialized (:meth:`AlarmStore._serialize`) and fenced
  in device time: a raise whose onset lies before the last rules-clear's end, or a clear or
  severity change older than the active alarm's onset, comes from a stale view of the stream
  (a redelivered backlog, a second collector that saw part of it) and changes nothing. Without
  the serialization the fence is a check-then-insert race: one collector's clear committing
  between another's check and insert gave a second alarm for one entrapment.
* Severity rises and falls on the same alarm; acknowledge, clear, comment and assign are
  recorded with who and when. Every transition is an ``alarm_events`` row, published on
  ``semon/v1/alarms/{firm}/{device}``; ``published_at`` marks what the broker acknowledged
  (publish first, mark after the PUBACK: at-least-once), so a collector relays operator actions
  made through the API and anything a crash or a broker outage left unannounced. Each message
  carries its ``alarm_events`` id as ``event_id``, so consumers drop the rare duplicate.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from semon.rules.base import AlarmTransition
from semon.store.db import Database
from semon.store.models import Alarm, AlarmEvent
from semon.store.notify_models import NotifyLate
from semon.timeutil import to_ms, utc_now

log = logging.getLogger(__name__)

RULES_ACTOR = "rules"
# A transition by the rules is published right after it is stored; one still unmarked after
# this long was lost to a crash between the two and is relayed.
RELAY_GRACE = timedelta(seconds=30)


class AlarmNotFound(LookupError):
    """No alarm with that id."""


class AlarmConflict(ValueError):
    """The operation does not apply to the alarm in its current state."""


def alarm_message(
    a: Alarm,
    event: str,
    ts: int,
    actor: str = RULES_ACTOR,
    extra: dict[str, Any] | None = None,
    *,
    event_id: int,
) -> dict[str, Any]:
    """The JSON transition published on ``semon/v1/alarms/{firm}/{device}`` (schemas/alarm.json).

    ``event_id`` is the ``alarm_events`` row id: unique per transition and the same on every
    channel (MQTT, webhooks, SSE) and every redelivery, so it is the consumers' dedupe key.
    """
    msg = {
        "event_id": event_id,
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
        "assignee": a.assignee,
        "onset_ts": a.onset_ts,
        "start_ts": a.start_ts,
        "end_ts": a.end_ts,
        "ts": ts,
        "actor": actor,
        "message": a.message,
        "details": a.details if not extra else {**a.details, **extra},
    }
    return msg


def event_message(ev: AlarmEvent, a: Alarm) -> dict[str, Any]:
    """The message of a stored transition, rebuilt from its row (relay, webhooks, SSE).

    The severity is the one recorded with the transition (what it was right after it), not the
    alarm's current one, so a transition delivered late still says what happened then.
    """
    msg = alarm_message(a, ev.event, ev.ts, ev.actor, extra=ev.details or None, event_id=ev.id)
    msg["severity"] = ev.severity
    return msg


# The alarm columns an alarm message carries (alarm_message), by message key.
_SNAPSHOT = {
    "alarm_id": "id", "device_id": "device_id", "kind": "kind", "firm_id": "firm_id", "type": "type",
    "rule_id": "rule_id", "severity": "severity", "active": "active", "acknowledged": "acknowledged",
    "assignee": "assignee", "onset_ts": "onset_ts", "start_ts": "start_ts", "end_ts": "end_ts",
    "message": "message", "details": "details",
}  # fmt: skip


def snapshot_columns(msg: dict[str, Any]) -> dict[str, Any]:
    """The alarm's columns as an alarm message states them (to rebuild a transient Alarm)."""
    return {col: msg[key] for key, col in _SNAPSHOT.items()}


@dataclass(slots=True)
class Stored:
    """A stored transition: its event row id and the message to publish."""

    event_id: int
    message: dict[str, Any]


def new_alarm(t: AlarmTransition, now: datetime, alarm_id: int | None = None) -> Alarm:
    """The alarm a raise transition begins (not yet in any session)."""
    code = t.rule.id.startswith("code.")
    return Alarm(
        id=alarm_id, device_id=t.device.id, kind=t.device.kind, firm_id=t.device.firm_id or None,
        type=t.rule.alarm_type, rule_id=t.rule.id, severity=t.severity.value, active=True, acknowledged=False,
        assignee=None, onset_ts=t.onset_ts, start_ts=t.ts, end_ts=None, created_at=now, updated_at=now,
        message=t.message, details=t.details, raw_code=t.details.get("code") if code else None,
        code_scheme=t.details.get("scheme") if code else None,
    )  # fmt: skip


def change_alarm(a: Alarm, t: AlarmTransition, now: datetime) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """Apply a severity change or a clear to an active alarm: the event's details and the
    message's extra fields, or None when it changes nothing."""
    if t.event == "severity_changed":
        if a.severity == t.severity.value:
            return None
        before = a.severity
        a.severity, a.updated_at = t.severity.value, now
        if t.message:
            a.message = t.message
        return {**t.details, "from": before, "to": a.severity}, {"from": before}
    a.active, a.end_ts, a.updated_at, a.cleared_by = False, t.ts, now, RULES_ACTOR
    return t.details, None


class AlarmStore:
    """Applies transitions and operator actions to ``alarms`` / ``alarm_events``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def active(self) -> list[Alarm]:
        """Every active alarm (used to restore engine state at start-up)."""
        with self.db.session() as s:
            return list(s.scalars(select(Alarm).where(Alarm.active)))

    # -- from the rule engine ------------------------------------------------------------
    def apply(self, t: AlarmTransition) -> Stored | None:
        """Store an engine transition; None when it changes nothing (already raised elsewhere…)."""
        return self._raise(t) if t.event == "raised" else self._change(t)

    def _serialize(self, s: Any, device_id: str, alarm_type: str) -> None:
        """Hold, until ``s`` ends, the lock that orders the transitions of one (device, type).

        PostgreSQL: a transaction-scoped advisory lock on a 63-bit hash of the pair (other pairs
        never wait). SQLite: take the database's write lock now (a no-op UPDATE) rather than at
        the first INSERT, so what the transaction reads stays true until it commits.
        """
        if self.db.engine.dialect.name == "postgresql":
            digest = hashlib.blake2b(f"{device_id}\x1f{alarm_type}".encode(), digest_size=8).digest()
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(digest, "big", signed=True)})
        elif self.db.engine.dialect.name == "sqlite":
            s.execute(text("UPDATE alarms SET id = id WHERE 0 = 1"))

    def _raise(self, t: AlarmTransition) -> Stored | None:
        now = utc_now()
        try:
            with self.db.session() as s:
                self._serialize(s, t.device.id, t.rule.alarm_type)
                # A redelivered backlog after a crash replays conditions that an alarm already
                # covered and cleared: an alarm cannot begin before the previous one ended. (After
                # a manual clear the condition may rightly go on: that raises a new alarm.)
                last_end = s.scalar(
                    select(func.max(Alarm.end_ts)).where(
                        Alarm.device_id == t.device.id,
                        Alarm.type == t.rule.alarm_type,
                        ~Alarm.active,
                        Alarm.cleared_by == RULES_ACTOR,
                    )
                )
                if last_end is not None and last_end > t.onset_ts:
                    log.info(
                        "replayed %s on %s (onset %d < last end %d)",
                        t.rule.alarm_type,
                        t.device.id,
                        t.onset_ts,
                        last_end,
                    )
                    return None
                a = new_alarm(t, now)
                s.add(a)
                s.flush()
                ev = AlarmEvent(alarm_id=a.id, event="raised", ts=t.ts, at=now, severity=a.severity, details=t.details)
                s.add(ev)
                s.flush()
                return Stored(ev.id, alarm_message(a, "raised", t.ts, event_id=ev.id))
        except IntegrityError:
            # Another collector (or the same type from a terminal code) raised it first.
            log.info("%s on %s already active (raised elsewhere)", t.rule.alarm_type, t.device.id)
            return None

    def _active_for(self, s: Any, t: AlarmTransition) -> Alarm | None:
        """The active alarm a clear or severity change applies to, under the pair's lock; None
        when there is none, or when the transition is older than the alarm (a stale view)."""
        self._serialize(s, t.device.id, t.rule.alarm_type)
        a = s.scalar(
            select(Alarm)
            .where(Alarm.device_id == t.device.id, Alarm.type == t.rule.alarm_type, Alarm.active)
            .with_for_update()
        )
        if a is not None and t.ts < a.onset_ts:
            log.info(
                "stale %s of %s on %s (ts %d < onset %d)", t.event, t.rule.alarm_type, t.device.id, t.ts, a.onset_ts
            )
            return None
        return a

    def _change(self, t: AlarmTransition) -> Stored | None:
        now = utc_now()
        with self.db.session() as s:
            a = self._active_for(s, t)
            changed = None if a is None else change_alarm(a, t, now)
            if a is None or changed is None:
                return None
            details, extra = changed
            ev = AlarmEvent(alarm_id=a.id, event=t.event, ts=t.ts, at=now, severity=a.severity, details=details)
            s.add(ev)
            s.flush()
            return Stored(ev.id, alarm_message(a, t.event, t.ts, extra=extra, event_id=ev.id))

    # -- transitions published while the database was away ---------------------------------
    def reserve_ids(self, n_alarms: int, n_events: int) -> tuple[list[int], list[int]]:
        """Alarm and event ids drawn now from the database's sequences, for a collector to publish
        transitions under while the database is away (PostgreSQL; elsewhere none)."""
        if self.db.engine.dialect.name != "postgresql":
            return [], []
        draw = "SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"
        with self.db.session() as s:
            alarm_ids = [int(x) for x in s.scalars(text(draw), {"t": "alarms", "n": n_alarms})]
            event_ids = [int(x) for x in s.scalars(text(draw), {"t": "alarm_events", "n": n_events})]
        return alarm_ids, event_ids

    def store_provisional(self, msg: dict[str, Any], details: dict[str, Any], at: datetime, published: bool) -> bool:
        """Store a transition a collector published during a database outage, under the ids it
        was published with; queue it for the dispatcher's scan. False when the database's state
        no longer allows it (another collector raised the same alarm meanwhile): logged, since
        the message went out."""
        with self.db.session() as s:
            self._serialize(s, msg["device_id"], msg["type"])
            if msg["event"] == "raised":
                a = Alarm(**snapshot_columns(msg), created_at=at, updated_at=at)
                a.raw_code = msg["details"].get("code") if msg["rule_id"].startswith("code.") else None
                a.code_scheme = msg["details"].get("scheme") if msg["rule_id"].startswith("code.") else None
                try:
                    with s.begin_nested():
                        s.add(a)
                        s.flush()
                except IntegrityError:
                    log.warning("alarm %d published during the outage is already active under another id", a.id)
                    return False
            else:
                held = s.get(Alarm, msg["alarm_id"], with_for_update=True)
                if held is None or not held.active:
                    log.warning("%s of alarm %s published in an outage: not active", msg["event"], msg["alarm_id"])
                    return False
                a = held
                a.severity, a.updated_at = msg["severity"], at
                if msg["event"] == "cleared":
                    a.active, a.end_ts, a.cleared_by = False, msg["end_ts"], RULES_ACTOR
                if msg["message"]:
                    a.message = msg["message"]
            s.add(
                AlarmEvent(
                    id=msg["event_id"], alarm_id=a.id, event=msg["event"], ts=msg["ts"], at=at,
                    severity=msg["severity"], actor=RULES_ACTOR, details=details,
                    published_at=utc_now() if published else None,
                )
            )  # fmt: skip
            s.flush()
            s.add(NotifyLate(event_id=msg["event_id"], queued_at=utc_now()))
        return True

    # -- operators (API) -----------------------------------------------------------------
    def _operate(self, alarm_id: int, actor: str, event: str, details: dict[str, Any], change: Any) -> Alarm:
        now = utc_now()
        with self.db.session() as s:
            a = s.scalar(select(Alarm).where(Alarm.id == alarm_id).with_for_update())
            if a is None:
                raise AlarmNotFound(alarm_id)
            change(a, now)
            a.updated_at = now
            s.add(
                AlarmEvent(
                    alarm_id=a.id, event=event, ts=to_ms(now), at=now, severity=a.severity, actor=actor, details=details
                )
            )
            return a

    def acknowledge(self, alarm_id: int, actor: str) -> Alarm:
        """Acknowledge (idempotent errors: acknowledging twice is a conflict)."""

        def change(a: Alarm, now: datetime) -> None:
            if a.acknowledged:
                raise AlarmConflict(f"alarm {a.id} is already acknowledged (by {a.acked_by})")
            a.acknowledged, a.ack_ts, a.acked_by = True, to_ms(now), actor

        return self._operate(alarm_id, actor, "acknowledged", {}, change)

    def clear(self, alarm_id: int, actor: str, reason: str = "") -> Alarm:
        """Clear by hand; if the condition still holds, the engine raises a new alarm."""

        def change(a: Alarm, now: datetime) -> None:
            if not a.active:
                raise AlarmConflict(f"alarm {a.id} is already cleared")
            a.active, a.end_ts, a.cleared_by = False, to_ms(now), actor

        return self._operate(alarm_id, actor, "cleared", {"reason": reason} if reason else {}, change)

    def comment(self, alarm_id: int, actor: str, text: str) -> Alarm:
        """Add a comment."""
        return self._operate(alarm_id, actor, "comment", {"text": text}, lambda a, now: None)

    def assign(self, alarm_id: int, actor: str, assignee: str | None) -> Alarm:
        """Assign to someone (None unassigns)."""

        def change(a: Alarm, now: datetime) -> None:
            a.assignee, a.assigned_at = assignee, now if assignee else None

        return self._operate(alarm_id, actor, "assigned", {"assignee": assignee}, change)

    # -- publishing ----------------------------------------------------------------------
    def mark_published(self, event_ids: Iterable[int]) -> None:
        """Record that the broker acknowledged these transitions (call only after the PUBACK)."""
        ids = list(event_ids)
        if ids:
            with self.db.session() as s:
                s.execute(update(AlarmEvent).where(AlarmEvent.id.in_(ids)).values(published_at=utc_now()))

    def relay(self, send: Callable[[list[tuple[AlarmEvent, Alarm]]], Iterable[int]], limit: int = 200) -> int:
        """Publish-then-mark the transitions not yet announced: operator actions (escalations,
        rescue steps…) at once, and rules transitions a crash or broker outage left unmarked
        after :data:`RELAY_GRACE`.

        ``send`` publishes the rows it is given and returns the ids the broker acknowledged;
        only those are marked, so a crash or a lost PUBACK means "sent again", never "lost".
        On PostgreSQL the rows stay locked (``FOR UPDATE SKIP LOCKED``) while ``send`` runs, so
        of several collectors only one relays each transition. SQLite has one writer and, in
        practice, one collector; there a short read is followed by the mark (holding a read
        transaction across the publish would make the mark fail whenever someone else wrote).
        Returns how many were marked.
        """
        now = utc_now()
        stmt = (
            select(AlarmEvent, Alarm)
            .join(Alarm, Alarm.id == AlarmEvent.alarm_id)
            .where(
                AlarmEvent.published_at.is_(None),
                (AlarmEvent.actor != RULES_ACTOR) | (AlarmEvent.at < now - RELAY_GRACE),
            )
            .order_by(AlarmEvent.id)
            .limit(limit)
        )
        if self.db.engine.dialect.name == "postgresql":
            with self.db.session() as s:
                rows = [(e, a) for e, a in s.execute(stmt.with_for_update(of=AlarmEvent, skip_locked=True)).all()]
                if not rows:
                    return 0
                done = list(send(rows))
                if done:
                    s.execute(update(AlarmEvent).where(AlarmEvent.id.in_(done)).values(published_at=utc_now()))
                return len(done)
        with self.db.session() as s:
            rows = [(e, a) for e, a in s.execute(stmt).all()]
        if not rows:
            return 0
        done = list(send(rows))
        self.mark_published(done)
        return len(done)
