"""Immediate reversion to the standard cycle, driven by the collector's alarm transitions.

``install_reversion(collector)`` registers a hook on ``Collector.transition_hooks``. The hook
only queues the message (it runs on the ingest pipeline thread, which must stay quick); a
worker thread then decides, for elevators on an on-demand tier:

* an entrapment alarm raised (type ``trapped_passenger``) → revert at once. Whether it was
  equipment-caused is not known yet when it is raised, so it counts as such (conservative);
  a later ``details.cause`` of an external kind excludes it from the planner's counts.
* a major fault raised or escalated (severity major/critical on an elevator, not an entrapment,
  offline or alarm-button alarm, not a maintenance compliance alarm) → count those of the last
  30 days; ≥ 3 → revert.
* a terminal offline alarm (type ``terminal_offline``) still active after 24 h → revert; the
  worker checks active offline alarms every ``check_interval_s``.

A reversion writes a decision (trigger ``reversion``) with the reason and the alarm that
caused it, switches the plan to the standard cycle (due dates recomputed from today), and
raises a ``maintenance_reverted`` alarm through the alarm store, which is published to the
firm on ``semon/v1/alarms/{firm_id}/{device_id}``. The notice clears when a later planning run
grants an on-demand tier again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import func, select

from semon.rules.alarms import AlarmStore
from semon.rules.maintenance.calendar import ITEM_CLASSES
from semon.rules.maintenance.compliance import Notifier, device_info, publish, reversion_spec, transition
from semon.rules.maintenance.inputs import COMPLIANCE_RULE_PREFIX, DAY_MS, HOUR_MS
from semon.rules.maintenance.planner import due_frame
from semon.rules.maintenance.policy import Policy, PolicyError, load_policy
from semon.rules.maintenance.records import last_visits
from semon.store.db import Database
from semon.store.maintenance import MaintenanceDecision, MaintenancePlan
from semon.store.models import Alarm
from semon.timeutil import DEFAULT_TIMEZONE, from_ms, local_date, now_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reverted:
    """A reversion that happened: which elevator, why, the decision and the notice published."""

    device_id: str
    trigger: str
    reason: str
    decision_id: int
    notice: dict[str, Any] | None


class Reversion:
    """Decides and applies reversions; thread-safe enough for one worker (all state is in the DB).

    ``clock`` (epoch ms, default: the wall clock) is when a reversion is decided: its decision's
    time and the (local, ``tz``) day its due dates start from. A planning run that finds a
    reversion calls :meth:`revert` too, so both paths flag and tell it the same way.
    """

    def __init__(
        self, db: Database, policy: Policy | None = None, notify: Notifier | None = None,
        clock: Callable[[], int] = now_ms, tz: str = DEFAULT_TIMEZONE,
    ) -> None:  # fmt: skip
        self.tz = tz
        self.db = db
        self.policy = policy or load_policy()
        self.notify = notify
        self.alarms = AlarmStore(db)
        self.clock = clock

    # -- triggers ----------------------------------------------------------------------
    def on_transition(self, msg: dict[str, Any]) -> Reverted | None:
        """Judge one alarm transition message (as published by the collector)."""
        r = self.policy.reversion
        event = msg.get("event")
        # A fault can also become major by escalation (severity ladders); entrapments are raised.
        if event not in ("raised", "severity_changed") or msg.get("kind") != "elevator":
            return None
        if str(msg.get("rule_id", "")).startswith(COMPLIANCE_RULE_PREFIX):
            return None
        dev, typ = msg["device_id"], msg.get("type")
        at = int(msg.get("ts") or self.clock())
        if r.entrapment and typ in r.entrapment_alarm_types and event == "raised":
            what = msg.get("message") or "passenger trapped"
            reason = f"entrapment: {typ} alarm {msg.get('alarm_id')} raised — {what}"
            return self.revert(dev, "entrapment", reason, msg, at)
        if typ in r.not_fault_alarm_types or msg.get("severity") not in r.major_fault_severities:
            return None
        n = self.major_faults(dev, at)
        if n >= r.major_faults:
            reason = (
                f"major_faults: {n} major faults in the last {r.major_fault_window_days} days "
                f"(reversion at ≥ {r.major_faults}), latest {typ} alarm {msg.get('alarm_id')}"
            )
            return self.revert(dev, "major_faults", reason, msg, at, {"major_faults": n})
        return None

    def major_faults(self, device_id: str, at_ms: int) -> int:
        """Major faults of an elevator in the reversion window (alarm store)."""
        r = self.policy.reversion
        since = at_ms - r.major_fault_window_days * DAY_MS
        with self.db.session() as s:
            return int(s.scalar(
                select(func.count()).select_from(Alarm).where(
                    Alarm.device_id == device_id, Alarm.start_ts >= since, Alarm.severity.in_(r.major_fault_severities),
                    Alarm.type.not_in(r.not_fault_alarm_types), ~Alarm.rule_id.startswith(COMPLIANCE_RULE_PREFIX),
                )
            ) or 0)  # fmt: skip

    def check_offline(self, at_ms: int | None = None) -> list[Reverted]:
        """Revert on-demand elevators whose offline alarm has been active for longer than the limit."""
        r = self.policy.reversion
        at = at_ms if at_ms is not None else self.clock()
        limit = at - int(r.offline_hours * HOUR_MS)
        with self.db.session() as s:
            rows = s.execute(
                select(Alarm.id, Alarm.device_id, Alarm.type, Alarm.onset_ts)
                .join(MaintenancePlan, MaintenancePlan.device_id == Alarm.device_id)
                .where(Alarm.active, Alarm.kind == "elevator", Alarm.type.in_(r.offline_alarm_types),
                       Alarm.onset_ts < limit, MaintenancePlan.mode != self.policy.standard.mode)
            ).all()  # fmt: skip
        out = []
        for alarm_id, dev, typ, onset in rows:
            hours = (at - onset) / HOUR_MS
            reason = (
                f"offline: terminal offline for {hours:.1f} h (reversion after {r.offline_hours:g} h), "
                f"{typ} alarm {alarm_id}"
            )
            done = self.revert(
                dev,
                "offline",
                reason,
                {"alarm_id": alarm_id, "type": typ, "onset_ts": onset},
                at,
                {"offline_hours": round(hours, 2)},
            )
            if done:
                out.append(done)
        return out

    # -- applying ----------------------------------------------------------------------
    def revert(
        self,
        device_id: str,
        trigger: str,
        reason: str,
        cause: dict[str, Any],
        at_ms: int,
        extra: dict[str, Any] | None = None,
        publish_notice: bool = True,
    ) -> Reverted | None:
        """Put an on-demand elevator on the standard cycle now; None if it is not on demand.

        ``publish_notice`` False stores the reversion without raising its notice (a planning run
        told to raise no alarm)."""
        p = self.policy
        std = p.standard
        now = self.clock()
        decided_at = from_ms(now)
        day = local_date(now, self.tz)
        with self.db.session() as s:
            plan = s.get(MaintenancePlan, device_id, with_for_update=True)
            if plan is None or plan.mode == std.mode:
                return None
            prev = s.get(MaintenanceDecision, plan.decision_id)
            old_mode = plan.mode
            due = self._due(device_id, plan, day)
            reasons = [f"reversion: {reason}", f"→ {std.mode} ({std.interval_days} days), was {old_mode}"]
            d = MaintenanceDecision(
                device_id=device_id, decided_at=decided_at, as_of=day, trigger="reversion",
                policy_version=p.version, policy_sha256=p.sha256, mode=std.mode, interval_days=std.interval_days,
                eligible=False, score=plan.score, reasons=reasons,
                gates=prev.gates if prev else [],
                triggers=[{"trigger": trigger, "fired": True}],
                breakdown=prev.breakdown if prev else {},
                inputs={"trigger": {"name": trigger, "reason": reason, "alarm": _jsonable(cause), **(extra or {})},
                        "previous_decision_id": plan.decision_id, "previous_mode": old_mode},
                due={k: v.isoformat() for k, v in due.items()} | {"mode_since": day.isoformat()},
            )  # fmt: skip
            s.add(d)
            s.flush()
            plan.mode, plan.interval_days, plan.eligible, plan.reasons = std.mode, std.interval_days, False, reasons
            plan.reverted, plan.decision_id, plan.decided_at, plan.mode_since = True, d.id, decided_at, day
            plan.signature = f"{std.mode}|reversion:{trigger}|v:{p.version}"
            for k, v in due.items():
                setattr(plan, f"{k}_due", v)
            firm_id, decision_id = plan.firm_id, d.id
        log.warning("maintenance reverted", extra={"device_id": device_id, "trigger": trigger, "reason": reason})
        if not publish_notice:
            return Reverted(device_id, trigger, reason, decision_id, None)
        spec = reversion_spec(p)
        t = transition(
            "raised", spec, device_info(device_id, "elevator", firm_id), at_ms, at_ms,
            spec.explain.format(device=device_id, reason=reason),
            {"trigger": trigger, "reason": reason, "previous_mode": old_mode, "mode": std.mode,
             "interval_days": std.interval_days, "decision_id": decision_id,
             "half_month_due": due["half_month"].isoformat(), "cause_alarm_id": cause.get("alarm_id")},
        )  # fmt: skip
        notice = publish(self.alarms, t, self.notify)
        return Reverted(device_id, trigger, reason, decision_id, notice)

    def _due(self, device_id: str, plan: MaintenancePlan, day: Any) -> dict[str, Any]:
        visits = last_visits(self.db, [device_id], self.tz).reindex([device_id])
        d = visits.reset_index(drop=True)
        ts_day = pd.Timestamp(day)
        frame = pd.DataFrame({
            "interval_days": [self.policy.standard.interval_days], "mode_since": [ts_day],
            "planned_since": [pd.Timestamp(plan.planned_since)],
        })  # fmt: skip
        due = due_frame(d, frame, self.policy, ts_day, pd.Series([True]))
        return {k: due.at[0, f"{k}_due"].date() for k in ITEM_CLASSES}


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    keep = ("alarm_id", "alarm_ids", "type", "rule_id", "severity", "onset_ts", "start_ts", "ts", "message")
    return {k: d.get(k) for k in keep if k in d}


class ReversionWorker:
    """A queue and a thread: the hook enqueues, the thread decides (and checks offline periodically)."""

    def __init__(self, reversion: Reversion, check_interval_s: float = 60.0) -> None:
        self.reversion = reversion
        self.check_interval_s = check_interval_s
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=100_000)
        self.done: list[Reverted] = []
        self._thread = threading.Thread(target=self._run, name="maintenance-reversion", daemon=True)
        self._stop = threading.Event()

    def submit(self, msg: dict[str, Any]) -> None:
        """The collector hook: cheap, never blocks ingest (a full queue drops with a log line)."""
        if msg.get("event") not in ("raised", "severity_changed") or msg.get("kind") != "elevator":
            return
        try:
            self.queue.put_nowait(msg)
        except queue.Full:
            log.error("maintenance reversion queue full; dropped %s of %s", msg.get("type"), msg.get("device_id"))

    def start(self) -> ReversionWorker:
        """Start the worker thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued and stop."""
        self._stop.set()
        self.queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        next_check = 0.0
        while True:
            mono = time.monotonic()
            if mono >= next_check:
                next_check = mono + self.check_interval_s
                self._safely(self.reversion.check_offline)
            try:
                msg = self.queue.get(timeout=max(0.05, next_check - time.monotonic()))
            except queue.Empty:
                continue
            if msg is None:
                return
            self._safely(self.reversion.on_transition, msg)

    def _safely(self, fn: Any, *args: Any) -> None:
        try:
            res = fn(*args)
        except Exception:  # keep the worker alive; the next alarm or check tries again
            log.exception("maintenance reversion failed")
            return
        if isinstance(res, Reverted):
            self.done.append(res)
        elif isinstance(res, list):
            self.done.extend(res)


def install_reversion(
    collector: Any, policy: Policy | None = None, check_interval_s: float = 60.0
) -> ReversionWorker | None:
    """Hook immediate reversion into a running collector's alarm transitions (see module doc).

    Notices go out through the collector's own MQTT client, on the firm's alarm topic. An
    unusable policy file is logged and leaves the collector without reversion rather than
    stopping hazard-alarm ingest.
    """
    try:
        policy = policy or load_policy()
    except PolicyError:
        log.exception("maintenance policy unusable: reversion to the standard cycle is OFF")
        return None

    def notify(topic: str, payload: bytes) -> Any:
        return collector.client.publish(topic, payload, qos=1)  # marked once acknowledged

    settings = getattr(collector, "settings", None)
    tz = getattr(settings, "timezone", DEFAULT_TIMEZONE)
    worker = ReversionWorker(Reversion(collector.db, policy, notify, tz=tz), check_interval_s).start()
    collector.transition_hooks.append(worker.submit)
    return worker
