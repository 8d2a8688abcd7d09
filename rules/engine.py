"""Rule engine: per-device state in device (event) time, durations, hysteresis and timers.

Messages of one device are evaluated in the order of their device time: a duplicate or an
older message (lower ``(ts, seq)``) never moves the state backwards. Duration conditions fire
on the first message that proves the duration elapsed — or on a timer when the device, which
reports on change, says nothing more (ThingsBoard's late-alarm hole, see shared/lessons.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from semon.rules.base import AlarmTransition, Check, Rule, Verdict
from semon.store.registry import DeviceInfo


class Phase(IntEnum):
    """Where one rule stands for one device."""

    IDLE = 0
    PENDING = 1  # condition holds, duration not yet reached
    ACTIVE = 2  # alarm raised
    CLEARING = 3  # condition gone, minimum clear time not yet reached


@dataclass(slots=True)
class RuleState:
    """One rule's state for one device."""

    phase: Phase = Phase.IDLE
    since: int = 0  # device ms the current PENDING / CLEARING began
    onset: int = 0  # device ms the alarm's condition began
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class DeviceState:
    """Per-device ordering watermark and rule states."""

    device: DeviceInfo
    last_ts: int = -1
    last_seq: int = -1
    clock_offset_ms: int = 0  # device time minus wall time at the last evaluated message
    rules: dict[str, RuleState] = field(default_factory=dict)


class RuleEngine:
    """Runs rules over status snapshots and yields alarm transitions; holds no I/O."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self._by_kind: dict[str, list[Rule]] = {}
        for r in self.rules:
            self._by_kind.setdefault(r.spec.kind, []).append(r)
        self._by_id = {r.spec.id: r for r in self.rules}
        self._devices: dict[str, DeviceState] = {}
        # (device_id, rule_id) whose PENDING/CLEARING may complete by the clock alone.
        self._timed: set[tuple[str, str]] = set()
        self.stale_skipped = 0

    def _state(self, device: DeviceInfo) -> DeviceState:
        ds = self._devices.get(device.id)
        if ds is None:
            ds = self._devices[device.id] = DeviceState(device)
        else:
            ds.device = device  # registry attributes (set pressure…) may have changed
        return ds

    def restore_active(self, device: DeviceInfo, rule_id: str, onset_ts: int, start_ts: int) -> None:
        """Mark an alarm found active in the database, so the engine can clear it later."""
        if rule_id not in self._by_id:
            return
        ds = self._state(device)
        ds.rules[rule_id] = RuleState(Phase.ACTIVE, start_ts, onset_ts)

    def evaluate(self, device: DeviceInfo, status: Any, wall_ms: int) -> list[AlarmTransition]:
        """Run the device kind's rules over one snapshot."""
        ds = self._state(device)
        if (status.ts, status.seq) <= (ds.last_ts, ds.last_seq):
            self.stale_skipped += 1
            return []
        ds.last_ts, ds.last_seq = status.ts, status.seq
        ds.clock_offset_ms = status.ts - wall_ms
        out: list[AlarmTransition] = []
        for rule in self._by_kind.get(device.kind, ()):
            st = ds.rules.get(rule.spec.id)
            if st is None:
                st = ds.rules[rule.spec.id] = RuleState()
            t = self._step(ds, rule, st, rule.check(status, device), status.ts)
            if t is not None:
                out.append(t)
        return out

    def _step(self, ds: DeviceState, rule: Rule, st: RuleState, c: Check, ts: int) -> AlarmTransition | None:
        spec = rule.spec
        key = (ds.device.id, spec.id)
        v = c.verdict
        if st.phase is Phase.IDLE:
            if v is Verdict.TRIGGER:
                st.phase, st.since, st.details = Phase.PENDING, ts, c.details
                return self._maybe_raise(ds, rule, st, ts)
        elif st.phase is Phase.PENDING:
            if v is Verdict.TRIGGER:
                st.details = c.details
                return self._maybe_raise(ds, rule, st, ts)
            # A duration means "held without interruption": anything else starts over.
            st.phase = Phase.IDLE
            self._timed.discard(key)
        elif st.phase is Phase.ACTIVE:
            if v is Verdict.CLEAR:
                st.phase, st.since = Phase.CLEARING, ts
                return self._maybe_clear(ds, rule, st, ts, c.details)
        elif st.phase is Phase.CLEARING:
            if v is Verdict.CLEAR:
                return self._maybe_clear(ds, rule, st, ts, c.details)
            # Back in the band or triggering again: still the same alarm, no flapping.
            st.phase = Phase.ACTIVE
            self._timed.discard(key)
        return None

    def _maybe_raise(self, ds: DeviceState, rule: Rule, st: RuleState, now_ts: int) -> AlarmTransition | None:
        spec = rule.spec
        due = st.since + spec.trigger_for_ms
        if now_ts < due:
            self._timed.add((ds.device.id, spec.id))
            return None
        self._timed.discard((ds.device.id, spec.id))
        st.phase, st.onset = Phase.ACTIVE, st.since
        details = {**st.details, "held_ms": now_ts - st.since}
        return AlarmTransition("raised", spec, ds.device, st.since, due, rule.message(ds.device, st.details), details)

    def _maybe_clear(
        self, ds: DeviceState, rule: Rule, st: RuleState, now_ts: int, details: dict[str, Any]
    ) -> AlarmTransition | None:
        spec = rule.spec
        if now_ts < st.since + spec.clear_for_ms:
            self._timed.add((ds.device.id, spec.id))
            return None
        self._timed.discard((ds.device.id, spec.id))
        st.phase = Phase.IDLE
        # The alarm ended when the condition did, not when the clear time ran out.
        return AlarmTransition("cleared", spec, ds.device, st.onset, st.since, "", details)

    def tick(self, wall_ms: int) -> list[AlarmTransition]:
        """Complete durations that elapsed while devices stayed silent (their state unchanged)."""
        out: list[AlarmTransition] = []
        for dev_id, rule_id in list(self._timed):
            ds = self._devices[dev_id]
            st = ds.rules[rule_id]
            rule = self._by_id[rule_id]
            # Estimated device clock now; offset taken at processing time, so a backlog makes
            # it run late rather than early (a queued message can still cancel the timer).
            now_ts = wall_ms + ds.clock_offset_ms
            if st.phase is Phase.PENDING:
                t = self._maybe_raise(ds, rule, st, now_ts)
            elif st.phase is Phase.CLEARING:
                t = self._maybe_clear(ds, rule, st, now_ts, {})
            else:
                self._timed.discard((dev_id, rule_id))
                t = None
            if t is not None:
                out.append(t)
        return out
