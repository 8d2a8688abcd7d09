"""Rule engine: per-device state in device (event) time for every catalog rule, terminal codes
and offline detection. Pure logic; the collector feeds it and stores what it returns.

* Messages of one device are evaluated in its ``seq`` order, judged by the ordering gate
  (``ordering.py``): a duplicate or older message never moves the state backwards
  (ThingsBoard's "latest value" hole), a jumped clock is evaluated at the device's estimated
  time, and a message a few seconds late still counts for repetition rules (``_late``).
* A duration ("for ≥ 20 s") fires on the first message that proves it elapsed — or on a timer
  when the device, which reports on change, says nothing more (the late-alarm hole).
* Hysteresis (HOLD between the level and the clear condition) and a minimum clear time keep a
  value bouncing around a threshold from raising a storm; a severity ladder moves up at once
  and down only after the minimum clear time.
* Offline detection runs on timers from arrival time, paused while the collector itself is
  disconnected (no alarm storm when the broker restarts).
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any

from semon.domain import DeviceInfo
from semon.rules import expr
from semon.rules.base import AlarmTransition, RuleSpec, Severity
from semon.rules.catalog import Catalog, CompiledRule, DeviceRules
from semon.rules.codes import CodeTable
from semon.rules.ordering import Admission, Order, OrderGate

OFFLINE_SPEC_ID = "device.terminal_offline"
# Pressure samples kept for the rise rate are at least this far apart: a terminal reporting
# many times a second costs no more memory or time than one reporting twice a second.
SAMPLE_SPACING_MS = 500
# Messages remembered per device for late arrivals (ordering.REORDER_MS of door transitions).
LATE_NEIGHBOURS = 6
# The derived values of a kind without any (elevators): one shared, read-only, empty mapping
# instead of an empty dict per device. _derive replaces ds.derived whole, never mutates it.
NO_DERIVED: Mapping[str, Any] = MappingProxyType({})
_FIELDS: dict[type, tuple[str, ...]] = {}


def field_names(model: type) -> tuple[str, ...]:
    """A status model's field names in the order of its instances' ``__dict__`` (one shared tuple)."""
    names = _FIELDS.get(model)
    if names is None:
        names = _FIELDS[model] = tuple(model.model_fields)  # type: ignore[attr-defined]
    return names


def status_env(ds: DeviceState) -> dict[str, Any]:
    """The device's newest status as expression variables (field name → value)."""
    if ds.last_status is None:
        return {}
    return dict(zip(field_names(ds.last_type), ds.last_status, strict=True))


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
    level: int = 0  # index into the rule's severity ladder (0 = highest)
    lower_since: int = -1  # device ms a lower level began while ACTIVE (de-escalation timer)
    prev: bool = False  # last raw condition (edge detection for repetition rules)
    edges: deque[int] | None = None  # rising edges inside the repetition window


@dataclass(slots=True)
class DeviceState:
    """Per-device ordering watermarks, rule states, derived values and liveness.

    Kept small (issue 17: ≤ 2 kB of rule state per device at city scale): a rule that is IDLE
    with no history has no RuleState (``None``), the pressure samples and the late-arrival
    neighbours exist only while there is something to remember, and the last status is kept as
    its field dict rather than the whole message.
    """

    device: DeviceInfo
    rules: DeviceRules
    states: list[RuleState | None]
    last_ts: int = -1
    last_seq: int = -1
    ev_ts: int = -1
    ev_seq: int = -1
    clock_offset_ms: int = 0  # device time minus wall time at the last message
    # The newest status's field values, in its model's field order (status_env names them): a
    # tuple costs a third of the message's field dict.
    last_status: tuple[Any, ...] | None = None
    last_type: type = object  # its model (field_names names the values)
    derived: Mapping[str, Any] = field(default_factory=lambda: NO_DERIVED)  # shared: allocates nothing
    # Pressure samples of the last 30 s, at least SAMPLE_SPACING_MS apart (so at most ~60 of them
    # whatever the device's rate), and the newest sample older than that: the rate's reference.
    samples: deque[tuple[int, float]] | None = None
    rate_ref: tuple[int, float] | None = None
    p_changed: int = -1
    t_changed: int = -1
    last_p: float | None = None
    last_t: float | None = None
    code_alarms: dict[str, tuple[RuleSpec, int]] | None = None  # alarm_type → (spec, onset)
    last_seen_wall: int = 0
    last_device_ts: int | None = None
    offline: bool = False
    offline_onset: int = 0
    offline_severity: Severity = Severity.minor
    quiet: bool = True  # every rule IDLE with no repetition history: CLEAR everywhere is a no-op
    # The last few messages' (seq, ts, which repetition rules (DeviceRules.rep) held): what a
    # late message needs to place its edge between its neighbours. None while none of them
    # held: see _remember.
    recent: deque[tuple[int, int, int]] | None = None


class RuleEngine:
    """Runs the catalog over status snapshots and events; yields alarm transitions; no I/O."""

    def __init__(self, catalog: Catalog | None = None, codes: CodeTable | None = None) -> None:
        self.catalog = catalog or Catalog()
        self.codes = codes or CodeTable()
        self._devices: dict[str, DeviceState] = {}
        self._timed: set[tuple[str, int]] = set()  # (device, rule index) waiting on the clock
        off = self.catalog.offline
        self.offline_enabled = off.enabled
        self.offline_timeout_ms = int(off.keepalive_s * off.factor * 1000)
        self.offline_spec = RuleSpec(OFFLINE_SPEC_ID, "*", "terminal_offline", off.severity, self.offline_timeout_ms)
        self._offline_heap: list[tuple[int, str]] = []
        self._offline_paused = False
        self.stale_skipped = 0
        self.order = OrderGate()

    # -- device state ------------------------------------------------------------------
    def _state(self, device: DeviceInfo) -> DeviceState:
        ds = self._devices.get(device.id)
        if ds is not None and (ds.device is device or ds.device == device):
            ds.device = device  # the same facts, reloaded: keep the fast identity check
            return ds
        rules = self.catalog.for_device(device)
        if ds is None:
            ds = DeviceState(device, rules, [None] * len(rules.rules))
            self._devices[device.id] = ds
        else:
            # The registry changed (new set pressure, override…): keep states of rules that remain.
            old = {c.spec.id: st for c, st in zip(ds.rules.rules, ds.states, strict=True)}
            ds.states = [old.get(c.spec.id) for c in rules.rules]
            ds.device, ds.rules = device, rules
            ds.quiet = False
            ds.recent = None  # its bits name the old rules' repetition rules
            self._timed = {k for k in self._timed if k[0] != device.id}
            for i, st in enumerate(ds.states):
                if st is not None and st.phase in (Phase.PENDING, Phase.CLEARING):
                    self._timed.add((device.id, i))
        return ds

    @staticmethod
    def _fresh(c: CompiledRule) -> RuleState:
        return RuleState(edges=deque() if c.repeat else None)

    def _materialize(self, ds: DeviceState, i: int) -> RuleState:
        """Rule ``i``'s state, created when it first has something to hold."""
        st = ds.states[i]
        if st is None:
            st = ds.states[i] = self._fresh(ds.rules.rules[i])
        return st

    @staticmethod
    def _remember(ds: DeviceState, seq: int, ts: int, held: int, prev_seq: int, prev_ts: int) -> None:
        """Add a message to the late-arrival neighbours (``recent``).

        While none of the remembered messages held, their exact seqs do not matter to a late
        message (no neighbour holds either way), so nothing is kept. What does matter once one
        holds is that the message before it did not: ``prev_seq``/``prev_ts`` (the newest message
        evaluated before this one; seq −1 if none) is put back in front as that neighbour.
        """
        rec = ds.recent
        if rec is None:
            if not held:
                return
            rec = ds.recent = deque(maxlen=LATE_NEIGHBOURS)
            if prev_seq >= 0:
                rec.append((prev_seq, prev_ts, 0))
        rec.append((seq, ts, held))
        if not held and not any(m[2] for m in rec):
            ds.recent = None

    def watch(self, devices: Iterable[DeviceInfo], wall_ms: int) -> None:
        """Expect messages from these devices from now on (offline detection for silent ones)."""
        for d in devices:
            ds = self._state(d)
            if ds.last_seen_wall == 0:
                ds.last_seen_wall = wall_ms
                heapq.heappush(self._offline_heap, (wall_ms + self.offline_timeout_ms, d.id))

    def restore_active(self, device: DeviceInfo, rule_id: str, onset_ts: int, start_ts: int, severity: str) -> None:
        """Mark an alarm found active in the database, so the engine can clear it later."""
        ds = self._state(device)
        if rule_id == OFFLINE_SPEC_ID:
            ds.offline, ds.offline_onset = True, onset_ts
            return
        if rule_id.startswith("code."):
            scheme, _, code = rule_id.removeprefix("code.").rpartition(".")
            cr = self.codes.lookup(scheme, int(code)) if code.isdigit() else None
            if cr is not None:
                if ds.code_alarms is None:
                    ds.code_alarms = {}
                ds.code_alarms[cr.spec.alarm_type] = (cr.spec, onset_ts)
            return
        for i, c in enumerate(ds.rules.rules):
            if c.spec.id == rule_id:
                st = self._materialize(ds, i)
                st.phase, st.since, st.onset = Phase.ACTIVE, start_ts, onset_ts
                ds.quiet = False
                st.level = next((i for i, s in enumerate(c.severities) if s == severity), 0)

    # -- status ------------------------------------------------------------------------
    def evaluate(self, device: DeviceInfo, status: Any, wall_ms: int) -> list[AlarmTransition]:
        """Run the device kind's rules over one status snapshot."""
        ds = self._devices.get(device.id)
        if ds is None or ds.device is not device:
            ds = self._state(device)
        adm = self.order.admit(device.id, "status", status.ts, status.seq, wall_ms)
        if adm.ts != status.ts:  # a clock jump: evaluated at the device's estimated time
            status = status.model_copy(update={"ts": adm.ts})
        if ds.offline or not ds.last_seen_wall:
            out = self._alive(ds, status.ts, wall_ms)
        else:  # the hot path of _alive, inlined: this runs for every message
            ds.last_seen_wall, ds.last_device_ts = wall_ms, status.ts
            out = []
        if adm.order is not Order.NEW:
            self.stale_skipped += 1
            if adm.order is Order.LATE:
                out += self._late(ds, status, adm)
            return out
        ts = status.ts
        prev_seq, prev_ts = ds.last_seq, ds.last_ts
        ds.last_ts, ds.last_seq = ts, status.seq
        ds.clock_offset_ms = ts - wall_ms
        s = status.__dict__
        ds.last_status = tuple(s.values())
        ds.last_type = type(status)
        r = ds.rules
        if r.derived:
            self._derive(ds, status)
        verdicts = r.evaluate(s, r.attrs, ds.derived)
        if r.rep:
            held = 0 if verdicts == r.all_clear else self._held(r.rep, verdicts)
            if held or ds.recent is not None:
                self._remember(ds, status.seq, ts, held, prev_seq, prev_ts)
        if ds.quiet and verdicts == r.all_clear:
            return out  # the common case, kept to one C-level tuple comparison
        resets = r.reset(s, r.attrs, ds.derived) if r.reset is not None else None
        states, idle = ds.states, Phase.IDLE
        busy = False
        for i, v in enumerate(verdicts):
            st = states[i]
            if st is None:
                if v < 0:
                    continue  # IDLE, no history, and no reason to change: nothing to do
                st = states[i] = self._fresh(r.rules[i])
            if st.edges is not None:
                if v < 0 and st.phase is idle and not st.prev and not st.edges:
                    continue  # no edge now, none remembered: nothing to count
                v = self._repeat(r.rules[i], st, v >= 0, bool(resets and resets[i]), ts)
            elif v == -1 and st.phase is idle:
                continue  # the common case: nothing to do
            t = self._step(ds, i, r.rules[i], st, v, ts)
            if t is not None:
                out.append(t)
            if st.edges and st.phase is Phase.ACTIVE:
                self._timed.add((ds.device.id, i))  # the window closes on time (tick), message or not
            if st.phase is not idle or st.prev or st.edges:
                busy = True
            else:
                states[i] = None  # back to IDLE with nothing remembered: free it
        ds.quiet = not busy
        return out

    @staticmethod
    def _window_expiry(c: CompiledRule, st: RuleState) -> int:
        """Device ms at which the repetition count drops below the rule's count (edges leave)."""
        assert c.repeat is not None and st.edges is not None
        n = len(st.edges) - c.repeat.count  # edges that may leave before the count is short
        return st.edges[n] + round(c.repeat.within_s * 1000) + 1 if n >= 0 else -1

    @staticmethod
    def _held(rep: tuple[int, ...], verdicts: tuple[int, ...]) -> int:
        """Bit k set: the k-th repetition rule's condition holds."""
        return sum(1 << k for k, i in enumerate(rep) if verdicts[i] >= 0)

    def _late(self, ds: DeviceState, status: Any, adm: Admission) -> list[AlarmTransition]:
        """A message up to ordering.REORDER_MS late: place its edges for the repetition rules.

        Only repetition (edge/window) rules look at it — durations and levels already moved on
        with newer messages and must not go back. Its edge is counted if its predecessor (by
        seq) did not hold; a successor that held was counted as the edge and stops being one;
        a late break between two holding neighbours makes the successor an edge.
        """
        if not ds.rules.rep:
            return []
        r, ts, seq = ds.rules, adm.ts, status.seq
        verdicts = r.evaluate(status.__dict__, r.attrs, ds.derived)
        resets = r.reset(status.__dict__, r.attrs, ds.derived) if r.reset is not None else None
        held = self._held(r.rep, verdicts)
        recent = ds.recent or ()
        pred = max((m for m in recent if m[0] < seq), default=None)
        succ = min((m for m in recent if m[0] > seq), default=None)
        if held or ds.recent is not None:
            self._remember(ds, seq, ts, held, ds.last_seq, ds.last_ts)
        out: list[AlarmTransition] = []
        for k, i in enumerate(r.rep):
            c, st = r.rules[i], self._materialize(ds, i)
            assert c.repeat is not None and st.edges is not None
            bit = 1 << k
            before = pred is not None and bool(pred[2] & bit)
            after = succ is not None and bool(succ[2] & bit)
            edges = st.edges
            if resets and resets[i]:
                while edges and edges[0] <= ts:
                    edges.popleft()
                continue
            if held & bit and not before:
                insort(edges, ts)
                if after and succ is not None and succ[1] in edges:
                    edges.remove(succ[1])
            elif not held & bit and before and after and succ is not None and succ[1] not in edges:
                insort(edges, succ[1])
            else:
                continue
            ds.quiet = False
            horizon = ds.last_ts - int(c.repeat.within_s * 1000)
            while edges and edges[0] < horizon:
                edges.popleft()
            if len(edges) >= c.repeat.count and st.phase in (Phase.IDLE, Phase.PENDING):
                t = self._step(ds, i, c, st, 0, ts)
                if t is not None:
                    out.append(t)
        return out

    @staticmethod
    def _repeat(c: CompiledRule, st: RuleState, holds: bool, reset: bool, ts: int) -> int:
        assert c.repeat is not None and st.edges is not None
        if reset:
            st.edges.clear()
        elif holds and not st.prev:
            st.edges.append(ts)
        st.prev = holds and not reset
        horizon = ts - round(c.repeat.within_s * 1000)
        while st.edges and st.edges[0] < horizon:
            st.edges.popleft()
        return 0 if len(st.edges) >= c.repeat.count else -1

    def _step(self, ds: DeviceState, i: int, c: CompiledRule, st: RuleState, v: int, ts: int) -> AlarmTransition | None:
        key = (ds.device.id, i)
        if st.phase is Phase.IDLE:
            if v >= 0:
                st.phase, st.since, st.level = Phase.PENDING, ts - self._backdate_ms(ds, c), v
                return self._maybe_raise(ds, i, c, st, ts)
        elif st.phase is Phase.PENDING:
            if v >= 0:
                st.level = min(st.level, v)
                return self._maybe_raise(ds, i, c, st, ts)
            # A duration means "held without interruption": anything else starts over.
            st.phase = Phase.IDLE
            self._timed.discard(key)
        elif st.phase is Phase.ACTIVE:
            if v == -1:
                st.phase, st.since = Phase.CLEARING, ts
                return self._maybe_clear(ds, i, c, st, ts)
            if v >= 0:
                return self._severity(ds, c, st, v, ts)
        elif st.phase is Phase.CLEARING:
            if v == -1:
                return self._maybe_clear(ds, i, c, st, ts)
            # Back in the band or triggering again: still the same alarm, no flapping.
            st.phase = Phase.ACTIVE
            self._timed.discard(key)
            if v >= 0:
                return self._severity(ds, c, st, v, ts)
        return None

    @staticmethod
    def _backdate_ms(ds: DeviceState, c: CompiledRule) -> int:
        """How long the condition already held when first seen (a frozen reading, say)."""
        if c.backdate is None or ds.last_status is None:
            return 0
        env = {**status_env(ds), **ds.rules.attrs, **ds.derived, **c.params}
        return max(0, int(float(expr.evaluate(c.backdate, env)) * 1000))

    def _severity(self, ds: DeviceState, c: CompiledRule, st: RuleState, v: int, ts: int) -> AlarmTransition | None:
        if v < st.level:  # escalate at once
            st.level, st.lower_since = v, -1
            return self._transition("severity_changed", ds, c, st, ts)
        if v > st.level:  # de-escalate only once the lower level held for the minimum clear time
            if st.lower_since < 0:
                st.lower_since = ts
            elif ts - st.lower_since >= max(c.spec.clear_for_ms, 1000):
                st.level, st.lower_since = v, -1
                return self._transition("severity_changed", ds, c, st, ts)
        else:
            st.lower_since = -1
        return None

    def _maybe_raise(
        self, ds: DeviceState, i: int, c: CompiledRule, st: RuleState, now_ts: int
    ) -> AlarmTransition | None:
        due = st.since + ds.rules.trigger_ms[i]
        if now_ts < due:
            self._timed.add((ds.device.id, i))
            return None
        self._timed.discard((ds.device.id, i))
        st.phase, st.onset, st.lower_since = Phase.ACTIVE, st.since, -1
        return self._transition("raised", ds, c, st, due)

    def _maybe_clear(
        self, ds: DeviceState, i: int, c: CompiledRule, st: RuleState, now_ts: int
    ) -> AlarmTransition | None:
        if now_ts < st.since + ds.rules.clear_ms[i]:
            self._timed.add((ds.device.id, i))
            return None
        self._timed.discard((ds.device.id, i))
        st.phase = Phase.IDLE
        if st.edges is not None:
            st.edges.clear()
        # The alarm ended when the condition did, not when the clear time ran out.
        return self._transition("cleared", ds, c, st, st.since)

    def _transition(self, event: str, ds: DeviceState, c: CompiledRule, st: RuleState, ts: int) -> AlarmTransition:
        details: dict[str, Any] = {}
        if ds.last_status is not None and c.details:
            env = {**status_env(ds), **ds.rules.attrs, **ds.derived, **c.params}
            for k, tree in c.details.items():
                try:
                    details[k] = expr.evaluate(tree, env)
                except (TypeError, ValueError, ZeroDivisionError):
                    details[k] = None
        sev = c.severities[st.level]
        if event == "raised":
            details["held_ms"] = ts - st.onset
        message = c.message(ds.device.id, details) if event != "cleared" else ""
        return AlarmTransition(event, c.spec, ds.device, st.onset, ts, message, details, sev)

    def _derive(self, ds: DeviceState, s: Any) -> None:
        """Vessel values that need history: pressure rise rate and how long readings stood still.

        Only valid readings (inside the sensor's physical range, catalog ``[sensor_range]``)
        become samples: a sensor that read −0.08 MPa for a while must not be the reference of
        a rise rate once it recovers. While the reading itself is invalid there is no rate.
        """
        ts, p, t = s.ts, s.pressure, s.temperature
        if p != ds.last_p:
            ds.p_changed, ds.last_p = ts, p
        if t != ds.last_t:
            ds.t_changed, ds.last_t = ts, t
        valid = self.catalog.sensor_range.pressure_valid(p, ds.device.design_pressure)
        # Rate against the newest sample at least 30 s old (and at most 120 s): a fair slope
        # without sample noise. Samples leave the 30-s window in time order, so the last one to
        # leave is that reference: O(1) per message instead of a walk through the history.
        sm = ds.samples
        if valid and (not sm or ts - sm[-1][0] >= SAMPLE_SPACING_MS):
            if sm is None:
                sm = ds.samples = deque()
            sm.append((ts, p))
        cut = ts - 30_000
        while sm and sm[0][0] <= cut:
            ds.rate_ref = sm.popleft()
        ref = ds.rate_ref
        if ref is not None and ref[0] < ts - 120_000:
            ref = ds.rate_ref = None
        rate = (p - ref[1]) / ((ts - ref[0]) / 60_000) if ref and valid else 0.0
        ds.derived = {
            "pressure_rate": rate,
            "pressure_still_s": (ts - ds.p_changed) / 1000,
            "temperature_still_s": (ts - ds.t_changed) / 1000,
            "pressure_valid": valid,
        }

    # -- events (terminal codes) -------------------------------------------------------
    def evaluate_event(self, device: DeviceInfo, ev: Any, wall_ms: int) -> list[AlarmTransition]:
        """Map a terminal code to an alarm raise/clear (code table per platform scheme)."""
        ds = self._state(device)
        adm = self.order.admit(device.id, "event", ev.ts, ev.seq, wall_ms)
        if adm.ts != ev.ts:  # a clock jump: the code's alarm carries the estimated device time
            ev = ev.model_copy(update={"ts": adm.ts})
        out = self._alive(ds, ev.ts, wall_ms)
        if adm.order is not Order.NEW:
            # A late code says what was true before newer codes: applying it would undo them.
            self.stale_skipped += 1
            return out
        ds.ev_ts, ds.ev_seq = ev.ts, ev.seq
        if self.codes.clears_all(ev.scheme, ev.code):
            for spec, onset in (ds.code_alarms or {}).values():
                out.append(self._code_transition("cleared", ds, spec, onset, ev, ""))
            ds.code_alarms = None
            return out
        cr = self.codes.lookup(ev.scheme, ev.code)
        if cr is None:
            return out
        active = ds.code_alarms.get(cr.spec.alarm_type) if ds.code_alarms else None
        if ev.active and active is None:
            if ds.code_alarms is None:
                ds.code_alarms = {}
            ds.code_alarms[cr.spec.alarm_type] = (cr.spec, ev.ts)
            msg = f"{cr.text or cr.spec.alarm_type} on {device.id} (code {ev.code}, {ev.scheme})"
            out.append(self._code_transition("raised", ds, cr.spec, ev.ts, ev, msg))
        elif not ev.active and active is not None and ds.code_alarms is not None:
            del ds.code_alarms[cr.spec.alarm_type]
            out.append(self._code_transition("cleared", ds, active[0], active[1], ev, ""))
        return out

    @staticmethod
    def _code_transition(event: str, ds: DeviceState, spec: RuleSpec, onset: int, ev: Any, msg: str) -> AlarmTransition:
        details = {"code": ev.code, "scheme": ev.scheme, "raw_text": ev.text}
        return AlarmTransition(event, spec, ds.device, onset, ev.ts, msg, details, spec.severity)

    # -- liveness ----------------------------------------------------------------------
    def _alive(self, ds: DeviceState, device_ts: int | None, wall_ms: int) -> list[AlarmTransition]:
        """A message arrived: the device is online; end an offline alarm."""
        first = ds.last_seen_wall == 0
        ds.last_seen_wall = wall_ms
        if device_ts is not None:
            ds.last_device_ts = device_ts
        if first:
            heapq.heappush(self._offline_heap, (wall_ms + self.offline_timeout_ms, ds.device.id))
        if not ds.offline:
            return []
        ds.offline = False
        ts = device_ts if device_ts is not None else wall_ms + ds.clock_offset_ms
        return [self._offline_transition("cleared", ds, ds.offline_onset, ts, "", ds.offline_severity)]

    def online(self, device: DeviceInfo, flag: bool | None, wall_ms: int) -> list[AlarmTransition]:
        """A (retained) online flag: ``0`` / last will raises offline at once; ``1`` ends it."""
        ds = self._state(device)
        if flag is None:
            return []
        if flag:
            return self._alive(ds, None, wall_ms)
        if ds.offline or not self.offline_enabled:
            return []
        ts = wall_ms + ds.clock_offset_ms
        return [self._go_offline(ds, ts, ts, "last will / online=0")]

    def _go_offline(self, ds: DeviceState, onset: int, ts: int, why: str) -> AlarmTransition:
        # Minor, or major when the device was in a fault state (another alarm active) — domain.md §4.3.
        faulted = any(st is not None and st.phase in (Phase.ACTIVE, Phase.CLEARING) for st in ds.states)
        faulted = faulted or bool(ds.code_alarms)
        off = self.catalog.offline
        ds.offline, ds.offline_onset = True, onset
        ds.offline_severity = off.severity_if_faulted if faulted else off.severity
        msg = f"Terminal of {ds.device.id} offline ({why})"
        return self._offline_transition("raised", ds, onset, ts, msg, ds.offline_severity)

    def _offline_transition(
        self, event: str, ds: DeviceState, onset: int, ts: int, msg: str, sev: Severity
    ) -> AlarmTransition:
        details = {"last_seen_ts": ds.last_device_ts, "timeout_ms": self.offline_timeout_ms}
        return AlarmTransition(event, self.offline_spec, ds.device, onset, ts, msg, details, sev)

    def pause_offline(self) -> None:
        """The collector lost its broker: silence is ours, not the devices'."""
        self._offline_paused = True

    def resume_offline(self, wall_ms: int) -> None:
        """Connected again: every device gets a fresh timeout before it counts as silent."""
        self._offline_paused = False
        for ds in self._devices.values():
            if ds.last_seen_wall:
                ds.last_seen_wall = max(ds.last_seen_wall, wall_ms)

    def manual_clear(self, device_id: str, alarm_type: str) -> None:
        """An operator cleared an alarm: if its condition still holds, it is raised anew."""
        ds = self._devices.get(device_id)
        if ds is None:
            return
        if alarm_type == self.offline_spec.alarm_type and ds.offline:
            ds.offline = False  # still silent → the next timer check raises a new alarm
            heapq.heappush(self._offline_heap, (0, device_id))
        if ds.code_alarms:
            ds.code_alarms.pop(alarm_type, None)
        for i, (c, st) in enumerate(zip(ds.rules.rules, ds.states, strict=True)):
            if c.spec.alarm_type == alarm_type and st is not None and st.phase in (Phase.ACTIVE, Phase.CLEARING):
                # Pending since the original onset: the next message (or timer) that still shows
                # the condition raises a new alarm straight away.
                st.phase, st.since = Phase.PENDING, st.onset
                ds.quiet = False
                self._timed.add((device_id, i))

    # -- timers ------------------------------------------------------------------------
    def tick(self, wall_ms: int) -> list[AlarmTransition]:
        """Durations that elapsed while devices stayed silent, and devices gone offline."""
        out: list[AlarmTransition] = []
        for dev_id, i in list(self._timed):
            ds = self._devices[dev_id]
            st = ds.states[i]
            if st is None:  # back to IDLE since the timer was set
                self._timed.discard((dev_id, i))
                continue
            c = ds.rules.rules[i]
            # Estimated device clock: the offset is taken against the message's arrival at the
            # collector and the collector passes the arrival of what it processed last while
            # more waits, so a backlog makes it run late rather than early (a queued message
            # can still cancel the timer).
            now_ts = wall_ms + ds.clock_offset_ms
            if st.phase is Phase.PENDING:
                t = self._maybe_raise(ds, i, c, st, now_ts)
            elif st.phase is Phase.ACTIVE and st.edges:
                t = self._window_tick(ds, i, c, st, now_ts)
            elif st.phase is Phase.CLEARING:
                t = self._maybe_clear(ds, i, c, st, now_ts)
            else:
                self._timed.discard((dev_id, i))
                t = None
            if t is not None:
                out.append(t)
        if self.offline_enabled and not self._offline_paused:
            self._check_offline(wall_ms, out)
        return out

    def _window_tick(
        self, ds: DeviceState, i: int, c: CompiledRule, st: RuleState, now_ts: int
    ) -> AlarmTransition | None:
        """A repetition alarm whose window closed with no message since: it ends when it closed."""
        expiry = self._window_expiry(c, st)
        if now_ts < expiry:
            return None
        v = self._repeat(c, st, st.prev, False, expiry)
        if v >= 0:
            return None  # an edge inside the window still counts: wait for the next expiry
        self._timed.discard((ds.device.id, i))
        t = self._step(ds, i, c, st, v, expiry)
        ds.quiet = False  # the next message re-evaluates everything
        return t

    def _check_offline(self, wall_ms: int, out: list[AlarmTransition]) -> None:
        heap = self._offline_heap
        while heap and heap[0][0] <= wall_ms:
            _, dev_id = heapq.heappop(heap)
            ds = self._devices.get(dev_id)
            if ds is None:
                continue
            due = ds.last_seen_wall + self.offline_timeout_ms
            if ds.offline:
                continue  # raised; a message (or online=1) ends it, and re-arms this timer
            if due > wall_ms:
                heapq.heappush(heap, (due, dev_id))  # heard from since: check again later
                continue
            onset = ds.last_device_ts if ds.last_device_ts is not None else ds.last_seen_wall
            ts = onset + self.offline_timeout_ms
            out.append(self._go_offline(ds, onset, ts, f"silent for {self.offline_timeout_ms // 1000} s"))
            heapq.heappush(heap, (wall_ms + self.offline_timeout_ms, dev_id))
