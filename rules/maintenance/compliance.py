"""Compliance alarms through the one alarm store: maintenance overdue, inspection overdue / due
soon, and the reversion notice to the firm.

They are ordinary alarms (``alarms`` / ``alarm_events``, one active per device and type, raised
and cleared transitions published on ``semon/v1/alarms/{firm}/{device}``) with rule ids
``maintenance.*``, so operators acknowledge and list them like any other alarm.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import pandas as pd
from sqlalchemy import select

from semon.contract.topics import alarm_topic
from semon.domain import DeviceInfo
from semon.rules.alarms import AlarmStore
from semon.rules.base import AlarmTransition, RuleSpec, Severity
from semon.rules.maintenance.calendar import ITEM_CLASSES
from semon.rules.maintenance.policy import Policy
from semon.store.db import Database
from semon.store.models import Alarm
from semon.timeutil import DEFAULT_TIMEZONE, local_day_start_ms

log = logging.getLogger(__name__)

# (topic, JSON payload) → publish; the collector's MQTT client or a short-lived one in the CLI.
# It may return the publish handle (paho's MQTTMessageInfo): the transition is then marked
# published once the broker acknowledged it; otherwise a collector's relay confirms it later.
Notifier = Callable[[str, bytes], Any]
# How long a maintenance run waits for the broker to acknowledge one notice.
PUBACK_WAIT_S = 5.0

_CLASS_LABEL = {"half_month": "half-month", "quarterly": "quarterly", "half_year": "half-year", "yearly": "yearly"}


def maintenance_overdue_spec(cls: str, policy: Policy) -> RuleSpec:
    """Rule spec of "items of ``cls`` overdue" on an elevator."""
    return RuleSpec(
        id=f"maintenance.overdue_{cls}",
        kind="elevator",
        alarm_type=f"maintenance_overdue_{cls}",
        severity=Severity(policy.compliance.maintenance_overdue_severity),
        explain="{device}: " + _CLASS_LABEL[cls] + " maintenance items overdue since {due}",
    )


def inspection_spec(kind: str, status: str, policy: Policy) -> RuleSpec:
    """Rule spec of a periodic inspection ``overdue`` or ``due_soon`` on an elevator or vessel."""
    c = policy.compliance
    sev = c.inspection_overdue_severity if status == "overdue" else c.inspection_due_soon_severity
    text = "periodic inspection overdue since {due}" if status == "overdue" else "periodic inspection due on {due}"
    return RuleSpec(
        id=f"maintenance.inspection_{status}",
        kind=kind,
        alarm_type=f"inspection_{status}",
        severity=Severity(sev),
        explain="{device}: " + text,
    )


def reversion_spec(policy: Policy) -> RuleSpec:
    """Rule spec of the notice "back on the standard cycle" sent to the firm."""
    return RuleSpec(
        id="maintenance.reversion",
        kind="elevator",
        alarm_type="maintenance_reverted",
        severity=Severity(policy.compliance.reversion_severity),
        explain="{device} back on the " + policy.standard.mode + " maintenance cycle: {reason}",
    )


def device_info(device_id: str, kind: str, firm_id: str | None, district: str | None = None) -> DeviceInfo:
    """The minimal registry view an alarm transition needs."""
    return DeviceInfo(device_id, kind, district or "", firm_id or "", None, None, None, None, None)


_HAS_SEVERITY = "severity" in {f.name for f in dataclasses.fields(AlarmTransition)}


def transition(
    event: str, spec: RuleSpec, device: DeviceInfo, onset_ts: int, ts: int, message: str, details: dict[str, Any]
) -> AlarmTransition:
    """An alarm transition at the spec's severity."""
    kw: dict[str, Any] = {"severity": spec.severity} if _HAS_SEVERITY else {}
    return AlarmTransition(event, spec, device, onset_ts, ts, message, details, **kw)


def publish(store: AlarmStore, t: AlarmTransition, notify: Notifier | None) -> dict[str, Any] | None:
    """Apply a transition; publish the stored message (if any) on the firm's alarm topic.

    It is marked published only after the broker's PUBACK (publish first, mark after: at least
    once). Without a notifier (CLI / API without a broker), or without an acknowledgement in
    time, the transition stays unmarked and a running collector relays it to the alarm topic
    (consumers drop the repeat by ``event_id``).
    """
    stored: Any = store.apply(t)
    if stored is None:
        return None
    msg: dict[str, Any] = stored.message if hasattr(stored, "message") else stored
    if notify is not None:
        try:
            info = notify(alarm_topic(msg["firm_id"], msg["device_id"]), orjson.dumps(msg))
            acknowledged = False
            if info is not None:
                info.wait_for_publish(PUBACK_WAIT_S)
                acknowledged = info.is_published()
        except Exception:  # the alarm is stored; a broker hiccup must not undo planning
            log.exception("publishing %s of %s failed", msg["type"], msg["device_id"])
            return msg
        mark = getattr(store, "mark_published", None)
        if acknowledged and mark is not None and hasattr(stored, "event_id"):
            mark([stored.event_id])
    return msg


@dataclass(frozen=True, slots=True)
class Wanted:
    """An alarm that should be active now."""

    spec: RuleSpec
    device: DeviceInfo
    onset_ts: int
    message: str
    details: dict[str, Any]


def _day_ms(ts: pd.Timestamp, tz: str, days_after: int = 0) -> int:
    """The instant local day ``ts`` + ``days_after`` begins in ``tz``."""
    return local_day_start_ms(ts.date() + timedelta(days=days_after), tz)


def wanted_alarms(
    plan: pd.DataFrame | None, inspections: pd.DataFrame | None, policy: Policy, tz: str = DEFAULT_TIMEZONE
) -> Iterable[Wanted]:
    """Compliance alarms that should be active, from a plan frame and an inspection frame.

    Due dates are local days in ``tz``: "overdue" begins at local midnight after the due day.

    ``plan`` rows (elevators): ``device_id``, ``firm_id``, ``overdue_<class>``, ``<class>_due``.
    ``inspections`` rows (any kind): ``device_id``, ``kind``, ``firm_id``, ``inspection_status``,
    ``inspection_due``.
    """
    if plan is not None and len(plan):
        for cls in ITEM_CLASSES:
            spec = maintenance_overdue_spec(cls, policy)
            rows = plan.loc[plan[f"overdue_{cls}"], ["device_id", "firm_id", f"{cls}_due"]]
            for dev, firm, due in rows.itertuples(index=False):
                due_s = due.strftime("%Y-%m-%d")
                info = device_info(dev, "elevator", firm)
                yield Wanted(
                    spec,
                    info,
                    _day_ms(due, tz, 1),
                    spec.explain.format(device=dev, due=due_s),
                    {"item_class": cls, "due": due_s},
                )
    if inspections is not None and len(inspections):
        for status in ("overdue", "due_soon"):
            rows = inspections.loc[
                inspections["inspection_status"] == status,
                ["device_id", "kind", "firm_id", "inspection_due", "inspection_basis"],
            ]
            for dev, kind, firm, due, basis in rows.itertuples(index=False):
                spec = inspection_spec(kind, status, policy)
                due_s = due.strftime("%Y-%m-%d")
                onset = (
                    _day_ms(due, tz, 1) if status == "overdue" else _day_ms(due, tz, -policy.inspection.due_soon_days)
                )
                yield Wanted(
                    spec,
                    device_info(dev, kind, firm),
                    onset,
                    spec.explain.format(device=dev, due=due_s),
                    {"due": due_s, "basis": basis},
                )


COMPLIANCE_TYPES = (
    *(f"maintenance_overdue_{c}" for c in ITEM_CLASSES), "inspection_overdue", "inspection_due_soon",
)  # fmt: skip


def sync_alarms(
    db: Database,
    wanted: Iterable[Wanted],
    scope: set[str] | None,
    now_ms: int,
    notify: Notifier | None = None,
    types: Iterable[str] = COMPLIANCE_TYPES,
) -> list[dict[str, Any]]:
    """Raise the wanted alarms that are not active; clear active ones of ``types`` no longer wanted.

    Only devices in ``scope`` are cleared (None: every device), so planning a subset leaves the
    others' alarms alone. Returns the published transition messages.
    """
    types = tuple(types)
    store = AlarmStore(db)
    want = {(w.device.id, w.spec.alarm_type): w for w in wanted}
    with db.session() as s:
        active = s.execute(
            select(
                Alarm.device_id, Alarm.type, Alarm.kind, Alarm.firm_id, Alarm.rule_id, Alarm.onset_ts, Alarm.severity
            ).where(Alarm.active, Alarm.type.in_(types))
        ).all()
    have = {(a.device_id, a.type): a for a in active}
    out: list[dict[str, Any]] = []
    for key, w in want.items():
        if key not in have:
            t = transition("raised", w.spec, w.device, w.onset_ts, max(now_ms, w.onset_ts), w.message, w.details)
            msg = publish(store, t, notify)
            if msg is not None:
                out.append(msg)
    for key, a in have.items():
        if key in want or (scope is not None and a.device_id not in scope):
            continue
        spec = RuleSpec(id=a.rule_id, kind=a.kind, alarm_type=a.type, severity=Severity(a.severity))
        t = transition(
            "cleared",
            spec,
            device_info(a.device_id, a.kind, a.firm_id),
            a.onset_ts,
            max(now_ms, a.onset_ts),
            "",
            {"resolved": True},
        )
        msg = publish(store, t, notify)
        if msg is not None:
            out.append(msg)
    return out
