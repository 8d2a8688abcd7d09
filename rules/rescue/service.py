"""Rescue records and their steps: opened by the dispatcher, advanced by the firm.

A rescue is opened (``status = open``) when a trapped-passenger alarm is raised — by the
dispatcher's scan of ``alarm_events``, so it happens whichever process stored the alarm. The
firm then records, in order, ``dispatched`` (with the 96333 tier and who was sent), ``arrived``
and ``released`` (with the cause). Each step sets the record's time and author and is also an
``alarm_events`` row named exactly like the step (``dispatched`` / ``arrived`` / ``released``),
which the collector relays to MQTT and to InfluxDB's ``alarm_event`` measurement that the
Grafana boards query. An arrival later than ``rescue_arrival_limit_s`` after the alarm is
flagged as a breach. The release cause is also written into the alarm's ``details.cause``, where
the maintenance planner reads it (external causes do not count against the elevator); the causes
a release may record are one list, the maintenance policy's (:func:`rescue_causes`).

Step times may be entered afterwards: each must follow the previous step, the first one the
alarm's onset, and none may be in the future. An alarm recorded late (a terminal's replayed
buffer) can have real step times before semon stored it; its rescue is then timed from the
alarm's onset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from semon.rules.maintenance.policy import Policy, load_policy
from semon.store.access import Access, NotVisible
from semon.store.models import Alarm, AlarmEvent
from semon.store.rescue import Rescue
from semon.timeutil import as_utc, from_ms, to_ms, utc_now

TIERS = ("own_firm", "rescue_station", "fire_service")

def rescue_causes(policy: Policy | None = None) -> tuple[str, ...]:
    """Causes a release may record: ``equipment``, every external cause the maintenance policy names
    (``[reversion] external_causes``: they do not count against the elevator), and ``unknown``."""
    p = policy or load_policy()
    return tuple(dict.fromkeys(("equipment", *p.reversion.external_causes, "unknown")))


# step -> (status it needs, status after, alarm_events name)
STEPS: dict[str, tuple[str, str, str]] = {
    "dispatch": ("open", "dispatched", "dispatched"),
    "arrive": ("dispatched", "arrived", "arrived"),
    "release": ("arrived", "released", "released"),
}
# A step time may be entered a little ahead of the server clock (a phone's clock), not more.
MAX_FUTURE = timedelta(seconds=60)


class RescueConflict(ValueError):
    """The step does not follow from the rescue's current status."""


class RescueTimeInvalid(ValueError):
    """The step time is before the previous step (or the alarm's onset) or in the future."""


class RescueCauseInvalid(ValueError):
    """The release names a cause the policy does not list."""


def open_rescue(session: Session, ev: AlarmEvent, alarm: Alarm, alarm_types: list[str]) -> bool:
    """Open the rescue of a newly raised trapped-passenger alarm (idempotent); True if opened now."""
    if ev.event != "raised" or alarm.type not in alarm_types:
        return False
    if session.scalar(select(Rescue.id).where(Rescue.alarm_id == alarm.id)) is not None:
        return False
    from semon.store.db import insert_ignore  # dialect-aware idempotent insert

    now = utc_now()
    insert_ignore(session, Rescue, [{
        "alarm_id": alarm.id, "device_id": alarm.device_id, "firm_id": alarm.firm_id, "status": "open",
        "alarm_at": as_utc(alarm.created_at), "arrival_breached": False, "notes": [], "created_at": now,
        "updated_at": now,
    }])  # fmt: skip
    return True


def rescues(access: Access) -> Select[Any]:
    """Rescues of devices in the caller's scope."""
    return access.scoped(select(Rescue), Rescue.device_id)


def rescue(access: Access, rescue_id: int, *, lock: bool = False) -> Rescue:
    """One rescue in scope, or :class:`NotVisible` (404)."""
    stmt = rescues(access).where(Rescue.id == rescue_id)
    r = access.s.scalar(stmt.with_for_update() if lock else stmt)
    if r is None:
        raise NotVisible("rescue", rescue_id)
    return r


@dataclass(frozen=True, slots=True)
class Step:
    """What a firm records at one step."""

    at: datetime | None = None  # when it happened; default now
    tier: str | None = None
    responder: str | None = None
    cause: str | None = None
    note: str | None = None


def record_step(
    access: Access, rescue_id: int, step: str, actor: str, body: Step, arrival_limit_s: float,
    causes: Sequence[str] | None = None,
) -> Rescue:  # fmt: skip
    """Advance a rescue by one step and store the matching ``alarm_events`` row.

    ``causes``: the release causes allowed (default: :func:`rescue_causes` of the policy in force).
    """
    access.require_operator()
    need, status, event = STEPS[step]
    if step == "release" and body.cause is not None:
        allowed = tuple(causes) if causes is not None else rescue_causes()
        if body.cause not in allowed:
            raise RescueCauseInvalid(f"cause {body.cause!r} is not one of {', '.join(allowed)}")
    r = rescue(access, rescue_id, lock=True)
    if r.status != need:
        raise RescueConflict(f"rescue {r.id} is {r.status}; {step} needs it {need}")
    now = utc_now()
    at = as_utc(body.at) if body.at is not None else now
    alarm = access.s.scalar(select(Alarm).where(Alarm.id == r.alarm_id).with_for_update())
    assert alarm is not None
    onset = from_ms(alarm.onset_ts)
    # The first step may precede the stored alarm (recorded late), never the alarm's onset.
    previous = {"dispatch": min(as_utc(r.alarm_at), onset), "arrive": r.dispatched_at, "release": r.arrived_at}[step]
    assert previous is not None
    if at < as_utc(previous):
        what = "the alarm's onset" if step == "dispatch" else "the previous step"
        raise RescueTimeInvalid(f"{step} at {at.isoformat()} is before {what} ({as_utc(previous).isoformat()})")
    if at > now + MAX_FUTURE:
        raise RescueTimeInvalid(f"{step} at {at.isoformat()} is in the future")
    if at < as_utc(r.alarm_at):
        r.alarm_at = onset  # handled before semon stored the alarm: time the rescue from its onset
    elapsed = (at - as_utc(r.alarm_at)).total_seconds()
    details: dict[str, Any] = {"rescue_id": r.id, "since_alarm_s": round(elapsed, 1)}
    if step == "dispatch":
        r.dispatched_at, r.dispatched_by = at, actor
        r.tier = body.tier or "own_firm"
        r.responder = body.responder
        details.update(tier=r.tier, responder=r.responder)
    elif step == "arrive":
        r.arrived_at, r.arrived_by = at, actor
        if body.tier is not None:  # handed on to the next 96333 tier on the way
            r.tier = body.tier
        r.arrival_breached = r.arrival_breached or elapsed > arrival_limit_s
        details.update(tier=r.tier, breach=r.arrival_breached, limit_s=arrival_limit_s)
    else:
        r.released_at, r.released_by = at, actor
        r.cause = body.cause or "unknown"
        details.update(cause=r.cause, on_site_s=round((at - as_utc(r.arrived_at or at)).total_seconds(), 1))
        # The maintenance planner reads the cause from the alarm (docs/maintenance.md).
        alarm.details = {**(alarm.details or {}), "cause": r.cause}
        alarm.updated_at = now
    if body.note:
        r.notes = [*(r.notes or []), {"step": event, "by": actor, "at": now.isoformat(), "text": body.note}]
        details["note"] = body.note
    r.status, r.updated_at = status, now
    access.s.add(
        AlarmEvent(
            alarm_id=alarm.id, event=event, ts=to_ms(at), at=now, severity=alarm.severity,
            actor=actor, details=details,
        )
    )  # fmt: skip
    access.s.flush()
    return r


def rescue_events(access: Access, r: Rescue) -> list[AlarmEvent]:
    """The alarm's transitions (raise, steps, escalations…) for the rescue's detail view."""
    return list(access.s.scalars(select(AlarmEvent).where(AlarmEvent.alarm_id == r.alarm_id).order_by(AlarmEvent.id)))

