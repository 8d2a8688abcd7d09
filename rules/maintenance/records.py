"""Maintenance records (维保记录): a firm records a visit; due dates recompute; overdue alarms clear.

A visit names the item classes done (TSG T5002-2017: half-month, quarterly, half-year,
yearly — cumulative, so the highest class done also covers the lower ones), when, the
technician, and whether it was recorded paperless (electronic record on site). It is *on
time* when it was done no later than the due date, in force before the visit, of every class
it covers; with no plan yet, nothing was due and the visit counts as on time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func, select

from semon.rules.maintenance.calendar import ITEM_CLASSES
from semon.rules.maintenance.compliance import Notifier, maintenance_overdue_spec, sync_alarms, wanted_alarms
from semon.rules.maintenance.planner import due_frame
from semon.rules.maintenance.policy import Policy
from semon.store.db import Database
from semon.store.maintenance import MaintenancePlan, MaintenanceRecord
from semon.store.models import Device
from semon.timeutil import DEFAULT_TIMEZONE, as_utc, local_date, now_ms, to_ms, utc_now, zone

# A record may be entered a little ahead of the server clock (a technician's phone); more is a typo.
MAX_FUTURE = timedelta(hours=1)


def last_visits(db: Database, device_ids: Sequence[str] | None = None, tz: str = DEFAULT_TIMEZONE) -> pd.DataFrame:
    """Per device, the local day (in ``tz``) of the last visit of each item class (columns ``last_<class>``)."""
    stmt = select(MaintenanceRecord.device_id, MaintenanceRecord.item_class, func.max(MaintenanceRecord.performed_at))
    if device_ids is not None and len(device_ids) <= 2000:
        stmt = stmt.where(MaintenanceRecord.device_id.in_(list(device_ids)))
    stmt = stmt.group_by(MaintenanceRecord.device_id, MaintenanceRecord.item_class)
    with db.session() as s:
        rows = [tuple(r) for r in s.execute(stmt)]
    cols = [f"last_{c}" for c in ITEM_CLASSES]
    if not rows:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="device_id"), dtype="datetime64[ns]")
    df = pd.DataFrame(rows, columns=["device_id", "item_class", "at"])
    # A visit at 07:00 in Guangzhou is on that local day, not on yesterday's UTC day.
    df["at"] = pd.to_datetime(df["at"], utc=True).dt.tz_convert(zone(tz)).dt.tz_localize(None).dt.normalize()
    wide = df.pivot_table(index="device_id", columns="item_class", values="at", aggfunc="max")
    wide = wide.reindex(columns=list(ITEM_CLASSES))
    wide.columns = cols
    return wide.astype("datetime64[ns]")


class RecordError(ValueError):
    """The visit cannot be recorded; the message says why."""


def normalise_classes(classes: list[str]) -> tuple[str, list[str]]:
    """(highest class, every class covered) for the classes a visit names."""
    if not classes:
        raise RecordError("item_classes must name at least one of " + ", ".join(ITEM_CLASSES))
    bad = [c for c in classes if c not in ITEM_CLASSES]
    if bad:
        raise RecordError(f"unknown item class(es) {', '.join(map(repr, bad))}; use {', '.join(ITEM_CLASSES)}")
    top = max(classes, key=ITEM_CLASSES.index)
    return top, list(ITEM_CLASSES[: ITEM_CLASSES.index(top) + 1])


def record_visit(
    db: Database,
    policy: Policy,
    *,
    device_id: str,
    item_classes: list[str],
    performed_at: datetime,
    technician: str,
    paperless: bool,
    notes: str = "",
    notify: Notifier | None = None,
    now: datetime | None = None,
    tz: str = DEFAULT_TIMEZONE,
) -> tuple[MaintenanceRecord, list[dict[str, Any]]]:
    """Store a visit, recompute the elevator's due dates, clear overdue alarms it settles.

    ``now`` (timezone-aware; default: the wall clock) is the server's clock: the record's
    ``recorded_at``, the limit on visits in the future, and the day the recomputed due dates are
    judged overdue on. Days (on time, due, overdue) are local days in ``tz``.
    Returns the stored record and the alarm transitions published.
    """
    top, covered = normalise_classes(item_classes)
    technician = technician.strip()
    if not technician:
        raise RecordError("technician must not be empty")
    performed_at = as_utc(performed_at)
    now = now or utc_now()
    if performed_at > now + MAX_FUTURE:
        raise RecordError(f"performed_at {performed_at.isoformat()} is in the future")
    done_day = performed_at.astimezone(zone(tz)).date()
    with db.session() as s:
        dev = s.get(Device, device_id)
        if dev is None:
            raise LookupError(f"device {device_id!r} does not exist")
        if dev.kind != "elevator":
            raise RecordError(f"device {device_id!r} is a {dev.kind}; maintenance records are for elevators")
        plan = s.get(MaintenancePlan, device_id)
        due = {c: getattr(plan, f"{c}_due") for c in covered} if plan is not None else {}
        on_time = all(done_day <= d for d in due.values() if d is not None)
        rec = MaintenanceRecord(
            device_id=device_id, firm_id=dev.firm_id, performed_at=performed_at, item_class=top,
            item_classes=covered, technician=technician[:200], paperless=bool(paperless), on_time=on_time,
            due={c: d.isoformat() for c, d in due.items() if d is not None}, notes=notes, recorded_at=now,
        )  # fmt: skip
        s.add(rec)
        s.flush()
        s.expunge(rec)
    published = recompute_due(db, policy, device_id, notify, at_ms=to_ms(now), tz=tz)
    return rec, published


def recompute_due(
    db: Database, policy: Policy, device_id: str, notify: Notifier | None = None, at_ms: int | None = None,
    tz: str = DEFAULT_TIMEZONE,
) -> list[dict[str, Any]]:
    """Recompute an elevator's due dates from its records and sync its maintenance-overdue alarms
    as of ``at_ms`` (default: now), in local days of ``tz``."""
    at = at_ms if at_ms is not None else now_ms()
    day = pd.Timestamp(local_date(at, tz))
    with db.session() as s:
        plan = s.get(MaintenancePlan, device_id, with_for_update=True)
        if plan is None:
            return []  # not planned yet: the next planning run sets the due dates
        visits = last_visits(db, [device_id], tz).reindex([device_id]).reset_index(drop=True)
        frame = pd.DataFrame({
            "interval_days": [plan.interval_days], "mode_since": [pd.Timestamp(plan.mode_since)],
            "planned_since": [pd.Timestamp(plan.planned_since)],
        })  # fmt: skip
        replaced = bool(plan.reverted) or plan.mode_since > plan.planned_since
        due = due_frame(visits, frame, policy, day, pd.Series([replaced]))
        for c in ITEM_CLASSES:
            setattr(plan, f"{c}_due", due.at[0, f"{c}_due"].date())
        firm_id = plan.firm_id
    rows = due.assign(device_id=device_id, firm_id=firm_id)
    types = [maintenance_overdue_spec(c, policy).alarm_type for c in ITEM_CLASSES]
    return sync_alarms(db, wanted_alarms(rows, None, policy, tz), {device_id}, at, notify, types)
