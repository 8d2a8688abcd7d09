"""Simulated elevator car: calls, door cycles, travel kinematics, trip counters, fault behaviours.

The car is a small state machine on a simulated clock in ms. It is advanced lazily:
``advance(now)`` brings it to ``now`` and ``wake_ms`` says when it next changes by itself, so
an idle car costs nothing between calls and a travelling car is woken only when its reported
floor changes or it arrives (the engine only wakes cars that are due).

Normal operation respects the alarm rules of domain.md §4.3 by construction: the car only
stops levelled at a landing (door zone), moves only with doors closed, never exceeds its rated
speed, never leaves the shaft between the terminal landings, opens its doors at most twice
between two trips, reports no fault codes, and "stopped + doors closed + passenger" lasts only
the brake-lift / levelling pauses (0.5 s each), far from the 20 s trapped-passenger threshold.

Faults are *plans* armed by :mod:`semon.simulators.faults` (``trap``, ``door_open_run``,
``overspeed``, ``overtravel``, ``stop_between``, ``creep``, ``halt``, ``door_stuck_open``,
``cycle_doors``, ``press_alarm``) and ended by :meth:`Elevator.recover`. A plan that needs a
particular state waits for it: e.g. a safety-circuit halt waits until the car is idle and
empty at a landing, an overtravel waits for the next empty trip (an idle car departs at once).
Fault codes and events the terminal would send go to :attr:`Elevator.events`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

FLOOR_HEIGHT_M = 3.0
ACCEL_M_S2 = 0.8  # comfortable passenger-lift acceleration / deceleration
DOOR_MOVE_MS = 2000  # opening or closing
DOOR_OPEN_BEFORE_EXCHANGE_MS = 1000  # doors open until passengers step in or out
DOOR_OPEN_AFTER_EXCHANGE_MS = 2000  # rest of the ≈3 s open time
START_DELAY_MS = 500  # doors locked -> brake lifted, car starts
ARRIVE_DELAY_MS = 500  # levelled -> doors start to open
MOVE_TICK_MS = 100  # integration step while the car moves
RESCUE_SPEED_M_S = 0.3  # manual rescue drive to the nearest landing
MIN_CALL_GAP_MS = 2000
PASSENGER_KG = (50.0, 90.0)
NEVER = 2**62  # "no timer" (far beyond any device time)
# Overtravel stops this far past the terminal landing: beyond half a floor, so the reported
# floor (nearest landing position) is past the terminal floor.
OVERTRAVEL_M = 1.8
CREEP_MARGIN_M = 1.0  # a creeping car turns back this far before a terminal landing
CYCLE_OPEN_MS = 1000  # door cycling: open time, then closing, then closed for CYCLE_CLOSED_MS
CYCLE_CLOSED_MS = 2000
EventTuple = tuple[int, bool, str]  # (GB/T 24476 code, active, text)


def floor_labels(bottom_floor: int, floors: int) -> list[int]:
    """Labels of the ``floors`` landings from ``bottom_floor`` up; there is no floor 0 (1 follows -1)."""
    labels: list[int] = []
    label = bottom_floor
    while len(labels) < floors:
        if label != 0:
            labels.append(label)
        label += 1
    return labels


class Phase(IntEnum):
    """What the car is doing; the door state and motion follow from it."""

    IDLE = 0  # levelled, doors closed, empty, waiting for a call
    START = 1  # doors locked, about to move
    TRAVEL = 2
    ARRIVE = 3  # levelled at the destination, doors about to open
    OPENING = 4
    OPEN_EXCHANGE = 5  # doors open, passengers about to board or leave
    OPEN_HOLD = 6
    CLOSING = 7
    TRAP_CLOSING = 8  # fault: doors close at a landing and then stay shut
    TRAPPED = 9  # fault: stopped with a passenger inside until released
    RESCUE = 10  # released between floors: slow drive to the nearest landing
    HALTED = 11  # fault: stopped, doors closed, held (safety circuit, power loss, stuck, overtravel)
    FAULT_OPENING = 12  # door fault: doors open and stay open
    FAULT_OPEN = 13
    CYCLE_OPENING = 14  # door cycling: open, close, open… without a trip
    CYCLE_OPEN = 15
    CYCLE_CLOSING = 16
    CYCLE_CLOSED = 17
    CREEP = 18  # fault: the motor runs, the car creeps up and down without arriving anywhere


_MOVING = frozenset({Phase.TRAVEL, Phase.RESCUE, Phase.CREEP})
_DOOR = {
    Phase.OPENING: "opening",
    Phase.OPEN_EXCHANGE: "open",
    Phase.OPEN_HOLD: "open",
    Phase.CLOSING: "closing",
    Phase.TRAP_CLOSING: "closing",
    Phase.FAULT_OPENING: "opening",
    Phase.FAULT_OPEN: "open",
    Phase.CYCLE_OPENING: "opening",
    Phase.CYCLE_OPEN: "open",
    Phase.CYCLE_CLOSING: "closing",
}
_DOOR_OPEN_PHASES = frozenset(_DOOR)
# Plans that take effect on a departure, and those of them that need an empty car.
_DEPARTURE_PLANS = frozenset({"door_open_run", "overspeed", "overtravel", "stuck", "creep"})
_EMPTY_PLANS = frozenset({"overtravel", "stuck", "creep"})
_IDLE_PLANS = _EMPTY_PLANS | {"halt", "door_stuck_open", "cycle"}  # need the car idle and empty first


class Elevator:
    """One car; public attributes are the reported state, the rest is private machinery."""

    __slots__ = (
        "_accel", "_boarding", "_creep_dir", "_dest", "_door_override", "_labels", "_lobby",
        "_mean_gap_ms", "_off_events", "_pargs", "_phase", "_phase_end", "_plan", "_plan_active",
        "_pos", "_rated", "_rng", "_t", "_target_pos", "_trip", "_trip_from", "_trip_t", "_vcap",
        "alarm_button", "codes", "device_id", "dir", "dirty", "door_zone", "events", "floor", "load",
        "max_silence_ms", "mode", "occupied", "run_count", "run_hours", "speed",
    )  # fmt: skip

    def __init__(
        self,
        device_id: str,
        labels: Sequence[int],
        rated_speed: float,
        rng: random.Random,
        now_ms: int,
        *,
        mean_call_gap_ms: int = 60_000,
        start_index: int = 0,
        run_count: int = 0,
        run_hours: float = 0.0,
    ) -> None:
        self.device_id = device_id
        self._labels = list(labels)
        # Most traffic starts or ends at the ground floor (label 1), as in office / housing blocks.
        self._lobby = self._labels.index(1) if 1 in self._labels else 0
        self._rated = rated_speed
        self._vcap = rated_speed  # cruise speed of the current trip (rated unless overspeeding)
        self._accel = 1.0 if rated_speed >= 2.5 else ACCEL_M_S2
        self._rng = rng
        self._mean_gap_ms = mean_call_gap_ms
        self._t = now_ms
        self._pos = start_index * FLOOR_HEIGHT_M
        self._target_pos = self._pos
        self._dest = start_index
        self._boarding = False
        self.floor = self._labels[start_index]
        self.speed = 0.0
        self.dir = "stop"
        self.door_zone = True
        self.occupied = False
        self.load = 0.0
        self.run_count = run_count
        self.run_hours = run_hours
        self.alarm_button = False
        self.mode = "normal"  # service mode reported in the status (a fault may change it)
        self.codes: tuple[int, ...] = ()  # active GB/T 24476 fault codes (status ``faults``)
        self.events: list[EventTuple] = []  # events not yet taken by the engine
        self.max_silence_ms: int | None = None  # the engine's keep-alive applies
        self.dirty = True  # the first report is always worth sending
        self._door_override: str | None = None  # door state forced by a fault while travelling
        self._plan: str | None = None  # armed fault behaviour
        self._pargs: dict[str, Any] = {}
        self._plan_active = False  # the plan has taken effect (it is not applied twice)
        self._off_events: tuple[EventTuple, ...] = ()  # sent when the plan ends
        self._trip: str | None = None  # fault behaviour running during the current trip
        self._trip_t = -1  # device ms the trip behaviour's current stage began (-1: not yet)
        self._trip_from: float | None = None  # position the trip behaviour counts from
        self._creep_dir = 1
        self._phase = Phase.IDLE
        self._phase_end = now_ms + self._call_gap()

    # ----------------------------------------------------------------------------- reporting
    @property
    def running(self) -> bool:
        """The car is moving (travel, rescue drive or creep)."""
        return self._phase in _MOVING

    @property
    def door(self) -> str:
        """Door state as the contract spells it (closed / opening / open / closing)."""
        return self._door_override or _DOOR.get(self._phase, "closed")

    @property
    def phase(self) -> Phase:
        """Current phase of the state machine (tests and faults read it)."""
        return self._phase

    @property
    def rated_speed(self) -> float:
        """Rated speed in m/s."""
        return self._rated

    @property
    def labels(self) -> list[int]:
        """Floor labels of the landings, bottom first."""
        return self._labels

    @property
    def quiet(self) -> bool:
        """Idle at a landing, doors closed, empty: nothing a rule could hold against a silent terminal."""
        return self._phase is Phase.IDLE

    @property
    def trapped(self) -> bool:
        """A trap fault holds the car (stopped, doors shut, passenger inside)."""
        return self._phase is Phase.TRAPPED

    @property
    def creeping(self) -> bool:
        """The motor runs in a creep (run-time anomaly) rather than a trip."""
        return self._phase is Phase.CREEP

    @property
    def wake_ms(self) -> int:
        """Next device time at which the car changes on its own (a reported field may change)."""
        if self._phase in _MOVING:
            return self._next_move_event()
        return self._phase_end

    def status(self, ts: int, seq: int) -> dict[str, Any]:
        """Status payload (contract v1 ``ElevatorStatus``, enum values as strings)."""
        return {
            "ts": ts,
            "seq": seq,
            "mode": self.mode,
            "running": self._phase in _MOVING,
            "dir": self.dir,
            "floor": self.floor,
            "door_zone": self.door_zone,
            "door": self._door_override or _DOOR.get(self._phase, "closed"),
            "occupied": self.occupied,
            "speed": round(self.speed, 3),
            "load": self.load,
            "run_count": self.run_count,
            "run_hours": round(self.run_hours, 4),
            "alarm_button": self.alarm_button,
            "faults": list(self.codes),
        }

    def mark_published(self) -> None:
        """The current state has been reported."""
        self.dirty = False

    # ------------------------------------------------------------------------------ dynamics
    def advance(self, now_ms: int) -> None:
        """Bring the car to device time ``now_ms``; sets ``dirty`` when a reported field changes."""
        while True:
            if self._phase in _MOVING:
                if now_ms > self._t:
                    self._move(now_ms)
                if self._phase in _MOVING:
                    break
            elif self._phase_end <= now_ms:
                # Timers fire at their exact time so chained phases keep their lengths.
                self._t = max(self._t, self._phase_end)
                self._end_phase()
            else:
                break
        if now_ms > self._t:
            self._t = now_ms

    def _next_move_event(self) -> int:
        # While a fault shapes the trip, or the car creeps, every tick may matter.
        if self._trip is not None or self._phase is Phase.CREEP:
            return self._t + MOVE_TICK_MS
        # Otherwise nothing reported changes before the car crosses the next half-floor (the
        # reported floor is the nearest landing) or arrives. The car cannot cover more than
        # max(speed, cruise cap) per tick, so this many ticks is a lower bound on that time.
        v = RESCUE_SPEED_M_S if self._phase is Phase.RESCUE else max(self.speed, self._vcap)
        x = self._pos / FLOOR_HEIGHT_M
        if self._target_pos > self._pos:
            d = (math.floor(x + 0.5) + 0.5) * FLOOR_HEIGHT_M - self._pos
        else:
            d = self._pos - (math.floor(x + 0.5) - 0.5) * FLOOR_HEIGHT_M
        d = min(d, abs(self._target_pos - self._pos) - 0.03)  # arrival snaps within 2 cm
        n = int(d / (v * MOVE_TICK_MS / 1000.0))
        return self._t + max(1, n) * MOVE_TICK_MS

    def _call_gap(self) -> int:
        gap = self._rng.expovariate(1.0 / self._mean_gap_ms)
        return max(MIN_CALL_GAP_MS, int(gap) // 100 * 100)

    def _enter(self, phase: Phase, duration_ms: int = NEVER) -> None:
        self._phase = phase
        self._phase_end = self._t + duration_ms if duration_ms != NEVER else NEVER
        self.dirty = True

    def _end_phase(self) -> None:
        p = self._phase
        if p is Phase.IDLE:
            if self._plan is not None and not self._plan_active and self._start_plan_from_idle():
                return
            self._on_call()
        elif p is Phase.START:
            self._depart()
        elif p is Phase.ARRIVE:
            self._enter(Phase.OPENING, DOOR_MOVE_MS)
        elif p is Phase.OPENING:
            self._enter(Phase.OPEN_EXCHANGE, DOOR_OPEN_BEFORE_EXCHANGE_MS)
        elif p is Phase.OPEN_EXCHANGE:
            self._exchange()
            self._enter(Phase.OPEN_HOLD, DOOR_OPEN_AFTER_EXCHANGE_MS)
        elif p is Phase.OPEN_HOLD:
            self._enter(Phase.CLOSING, DOOR_MOVE_MS)
        elif p is Phase.CLOSING:
            if self.occupied:
                self._enter(Phase.START, START_DELAY_MS)
            else:
                self._go_idle()
        elif p is Phase.TRAP_CLOSING:
            self._enter(Phase.TRAPPED)
        elif p is Phase.FAULT_OPENING:
            self._enter(Phase.FAULT_OPEN)
        elif p is Phase.CYCLE_OPENING:
            self._enter(Phase.CYCLE_OPEN, CYCLE_OPEN_MS)
        elif p is Phase.CYCLE_OPEN:
            self._enter(Phase.CYCLE_CLOSING, DOOR_MOVE_MS)
        elif p is Phase.CYCLE_CLOSING:
            self._enter(Phase.CYCLE_CLOSED, CYCLE_CLOSED_MS)
        elif p is Phase.CYCLE_CLOSED:
            self._enter(Phase.CYCLE_OPENING, DOOR_MOVE_MS)
        else:  # TRAPPED, HALTED, FAULT_OPEN have no timer; ending the fault moves the car on
            self._phase_end = NEVER

    def _go_idle(self) -> None:
        """Doors closed, car empty at a landing: a waiting fault plan starts here, else wait for a call."""
        if self._plan is not None and not self._plan_active and self._start_plan_from_idle():
            return
        self._enter(Phase.IDLE, self._call_gap())

    def _index(self) -> int:
        # Nearest landing position; beyond the terminals only during an overtravel fault.
        return math.floor(self._pos / FLOOR_HEIGHT_M + 0.5)

    def _label(self, index: int) -> int:
        """Floor label of a landing index, extended past the terminals (still skipping 0)."""
        labels = self._labels
        n = len(labels)
        if 0 <= index < n:
            return labels[index]
        if index < 0:
            label = labels[0] + index
            return label - 1 if labels[0] > 0 >= label else label
        label = labels[-1] + index - n + 1
        return label + 1 if labels[-1] < 0 <= label else label

    def _far_terminal(self) -> int:
        """Index of the terminal landing farther from the car: the longest trip available."""
        top = len(self._labels) - 1
        return top if self._index() * 2 < top else 0

    def _on_call(self) -> None:
        here = self._index()
        call = self._lobby if self._rng.random() < 0.4 else self._rng.randrange(len(self._labels))
        self._boarding = True
        if call == here:
            self._enter(Phase.OPENING, DOOR_MOVE_MS)
        else:
            self._dest = call  # empty run to the calling landing
            self._enter(Phase.START, START_DELAY_MS)

    def _board_one(self) -> None:
        self.occupied = True
        self.load = round(self._rng.uniform(*PASSENGER_KG), 1)

    def _exchange(self) -> None:
        if self._boarding:
            n = self._rng.choice((1, 1, 1, 2, 2, 3))
            self.load = round(sum(self._rng.uniform(*PASSENGER_KG) for _ in range(n)), 1)
            self.occupied = True
            self._boarding = False
            self._dest = self._pick_destination()
        else:
            self.load = 0.0
            self.occupied = False

    def _pick_destination(self) -> int:
        here = self._index()
        if here != self._lobby and self._rng.random() < 0.6:
            return self._lobby
        choices = [i for i in range(len(self._labels)) if i != here]
        return self._rng.choice(choices)

    def _depart(self) -> None:
        self._target_pos = self._dest * FLOOR_HEIGHT_M
        creep = False
        if self._plan is not None and not self._plan_active:
            creep = self._apply_plan_on_departure()
        self.door_zone = False
        self.run_count += 1
        if creep:
            self._creep_dir = 1 if self._dest * FLOOR_HEIGHT_M > self._pos else -1
            self.dir = "up" if self._creep_dir > 0 else "down"
            self.speed = self._pargs["speed"]
            self._enter(Phase.CREEP)
            return
        self.dir = "up" if self._target_pos > self._pos else "down"
        self._enter(Phase.TRAVEL)

    def _move(self, now_ms: int) -> None:
        # Sub-steps of at most MOVE_TICK_MS keep the kinematics right however late the wake-up.
        while self._t < now_ms and self._phase in _MOVING:
            if self._phase is Phase.TRAVEL and self._trip is None and self.speed == self._vcap:
                self._cruise(now_ms)
                if self._t >= now_ms:
                    break
            dt = min(MOVE_TICK_MS, now_ms - self._t)
            self._t += dt
            dts = dt / 1000.0
            self.run_hours += dt / 3_600_000.0
            if self._phase is Phase.CREEP:
                self._creep_step(dts)
                continue
            remaining = abs(self._target_pos - self._pos)
            if self._phase is Phase.RESCUE:
                v = RESCUE_SPEED_M_S
            else:
                # Trapezoidal profile: accelerate, cruise at the cap, brake to land exactly.
                v = self.speed
                cap = self._vcap
                if v < cap:
                    v = min(cap, v + self._accel * dts)
                elif v > cap:
                    v = max(cap, v - self._accel * dts)  # an overspeed ends: slow back down
                brake = math.sqrt(2.0 * self._accel * remaining)
                if brake < v:
                    v = brake
            step = v * dts
            if step >= remaining - 1e-9 or remaining < 0.02:
                self._pos = self._target_pos
                self._arrive()
                return
            self._pos += step if self._target_pos > self._pos else -step
            self.speed = v
            label = self._label(self._index())
            if label != self.floor:
                self.floor = label
                self.dirty = True
            if self._trip is not None:
                self._trip_step()

    def _cruise(self, now_ms: int) -> None:
        """Jump the whole ticks of uniform motion at cruise speed, stopping at the next half-floor.

        Same result as ticking: at cruise speed a tick changes only the position (by
        ``v × tick``) as long as braking need not begin (remaining ≥ v² / 2a) — and the
        reported floor only when a half-floor is crossed, which ends the jump.
        """
        v = self.speed
        step = v * MOVE_TICK_MS / 1000.0
        remaining = abs(self._target_pos - self._pos)
        uniform = int((remaining - v * v / (2.0 * self._accel)) / step)  # ticks 0..uniform keep v
        x = self._pos / FLOOR_HEIGHT_M
        up = self._target_pos > self._pos
        if up:
            d = (math.floor(x + 0.5) + 0.5) * FLOOR_HEIGHT_M - self._pos
        else:
            d = self._pos - (math.floor(x + 0.5) - 0.5) * FLOOR_HEIGHT_M
        cross = max(1, math.ceil(d / step))  # the tick on which the half-floor is crossed
        n = min((now_ms - self._t) // MOVE_TICK_MS, uniform + 1, cross)
        if n < 2:
            return
        self._t += n * MOVE_TICK_MS
        self.run_hours += n * MOVE_TICK_MS / 3_600_000.0
        self._pos += n * step if up else -n * step
        label = self._label(self._index())
        if label != self.floor:
            self.floor = label
            self.dirty = True

    def _creep_step(self, dts: float) -> None:
        v = self._pargs["speed"]
        lo, hi = CREEP_MARGIN_M, (len(self._labels) - 1) * FLOOR_HEIGHT_M - CREEP_MARGIN_M
        pos = self._pos + self._creep_dir * v * dts
        # Turn back before a terminal landing: a creep never becomes an overtravel.
        if pos >= hi and self._creep_dir > 0:
            pos, self._creep_dir, self.dir, self.dirty = hi, -1, "down", True
        elif pos <= lo and self._creep_dir < 0:
            pos, self._creep_dir, self.dir, self.dirty = lo, 1, "up", True
        self._pos = pos
        self.speed = v
        label = self._label(self._index())
        if label != self.floor:
            self.floor = label
            self.dirty = True

    def _arrive(self) -> None:
        self.speed = 0.0
        self.dir = "stop"
        self._vcap = self._rated
        self.floor = self._label(self._index())
        if self._door_override is not None:
            self._door_override = None  # a door-open episode cut short by the arrival
        trip, self._trip = self._trip, None
        if trip == "overtravel":
            # Past the terminal landing: the car stops there, outside any door zone, empty.
            self.door_zone = False
            self._enter(Phase.HALTED)
            return
        self.door_zone = True
        if self._plan == "trap" and not self._plan_active and self._pargs["where"] == "landing" and self.occupied:
            self._plan_active = True
            self._enter(Phase.TRAPPED)  # levelled, but the doors never open
            return
        self._enter(Phase.ARRIVE, ARRIVE_DELAY_MS)

    def _stop_here(self, phase: Phase) -> None:
        """Emergency stop where the car is (outside the door zone)."""
        self.speed = 0.0
        self.dir = "stop"
        self.door_zone = False
        self._trip = None
        self._vcap = self._rated
        self._enter(phase)

    def _set_door(self, state: str | None) -> None:
        if state != self._door_override:
            self._door_override = state
            self.dirty = True

    def _trip_step(self) -> None:
        """One tick of the fault behaviour shaping the current trip."""
        trip, a = self._trip, self._pargs
        if trip == "door_open_run":
            if self._trip_t < 0:
                if self.speed >= 0.5:  # well under way, far from both landings
                    self._trip_t = self._t
                    self._set_door("opening")
                return
            elapsed, hold = self._t - self._trip_t, a["hold_ms"]
            if elapsed >= hold:
                self._set_door(None)
                self._trip = None
            elif elapsed >= hold - 1000:
                self._set_door("closing")
            elif elapsed >= 1000:
                self._set_door("open")
        elif trip == "overspeed":
            if self._trip_t < 0:
                if self.speed > 1.2 * self._rated:
                    self._trip_t = self._t
            elif self._t - self._trip_t >= a["hold_ms"]:
                self._vcap = self._rated
                self._trip = None
        elif trip in ("trap_between", "stuck"):
            x = self._pos / FLOOR_HEIGHT_M
            between = abs(x - math.floor(x + 0.5)) >= 0.3
            if between and (self._trip_from is None or abs(self._pos - self._trip_from) >= 1.5):
                self._plan_active = True
                self._stop_here(Phase.TRAPPED if trip == "trap_between" else Phase.HALTED)

    # ------------------------------------------------------------------------------- faults
    def _arm(self, plan: str, args: dict[str, Any], off_events: tuple[EventTuple, ...] = ()) -> None:
        if self._plan is not None:
            self.recover()  # one fault behaviour at a time (specs on one device never overlap)
        self._plan, self._pargs, self._plan_active, self._off_events = plan, args, False, off_events
        if plan in _IDLE_PLANS and not self.occupied and self._boarding:
            # The fault needs the car idle and empty: the waiting passenger is not picked up
            # (an empty run about to leave stays put), so the wait is one loaded trip at most.
            self._boarding = False
            if self._phase is Phase.START:
                self._go_idle()

    def _start_plan_from_idle(self) -> bool:
        """The car is (about to be) idle: levelled, doors closed, empty. Start the plan if it can."""
        p, a = self._plan, self._pargs
        if p == "halt":
            self._plan_active = True
            self.codes = a["codes"]
            self.events.extend(a["on_events"])
            self._enter(Phase.HALTED)
        elif p == "door_stuck_open":
            self._plan_active = True
            self.codes = a["codes"]
            self.events.extend(a["on_events"])
            self._enter(Phase.FAULT_OPENING, DOOR_MOVE_MS)
        elif p == "cycle":
            self._plan_active = True
            self._enter(Phase.CYCLE_OPENING, DOOR_MOVE_MS)
        elif p == "trap":
            if a["where"] == "between":
                self._board_one()  # a passenger gets in and the car sets off
                self._dest = self._far_terminal()
                self._enter(Phase.START, START_DELAY_MS)
            else:
                self._plan_active = True
                self._board_one()
                self._enter(Phase.TRAPPED)
        elif p in _DEPARTURE_PLANS:
            self._dest = self._far_terminal()  # an empty run; the plan applies on departure
            self._enter(Phase.START, START_DELAY_MS)
        else:
            return False
        return True

    def _apply_plan_on_departure(self) -> bool:
        """Shape the trip that starts now; True if the car creeps instead of travelling."""
        p, a = self._plan, self._pargs
        empty = not self.occupied
        if p == "trap":
            if a["where"] == "between" and self.occupied:
                self._trip, self._trip_from = "trap_between", self._pos
        elif p in ("door_open_run", "overspeed"):
            self._dest = self._far_terminal()
            self._target_pos = self._dest * FLOOR_HEIGHT_M
            self._trip, self._trip_t, self._plan_active = p, -1, True
            if p == "overspeed":
                self._vcap = a["factor"] * self._rated
        elif p == "stuck" and empty:
            self._dest = self._far_terminal()
            self._target_pos = self._dest * FLOOR_HEIGHT_M
            self._trip, self._trip_from, self._plan_active = "stuck", self._pos, True
        elif p == "overtravel" and empty:
            top = (len(self._labels) - 1) * FLOOR_HEIGHT_M
            self._target_pos = top + OVERTRAVEL_M if a["top"] else -OVERTRAVEL_M
            self._trip, self._plan_active = "overtravel", True
        elif p == "creep" and empty:
            self._dest = self._far_terminal()
            self._plan_active = True
            return True
        return False

    def set_mode(self, mode: str) -> None:
        """The car's service mode changes (inspection, emergency power…); reported at once."""
        if mode != self.mode:
            self.mode = mode
            self.dirty = True

    def trap(self, where: str = "any") -> None:
        """Fault: stop with a passenger behind closed doors until :meth:`recover` (call ``advance(now)`` first).

        ``any``: a travelling car stops where it is, outside the door zone; a car at a landing
        closes its doors (if open) and stays. ``landing``: a travelling car traps on arrival,
        levelled, doors shut. ``between``: the car traps between two landings — at once if it
        is travelling there, else on its next trip with a passenger (an idle car sets off with one).
        """
        if where not in ("any", "landing", "between"):
            raise ValueError(f"trap where={where!r}: expected any, landing or between")
        self._arm("trap", {"where": where})
        self._boarding = False
        p = self._phase
        if p in _MOVING:
            if where == "landing":
                return  # traps on arrival
            if where == "any":
                if not self.occupied:
                    self._board_one()
                self._plan_active = True
                self._stop_here(Phase.TRAPPED)
            elif self.occupied:
                # Traps once between two landings; if the car arrives first, the next trip does.
                self._trip, self._trip_from = "trap_between", None
        elif where == "between":
            if p is Phase.IDLE:
                self._start_plan_from_idle()
        elif p in _DOOR_OPEN_PHASES:
            self._plan_active = True
            if not self.occupied:
                self._board_one()
            self._enter(Phase.TRAP_CLOSING, DOOR_MOVE_MS)
        else:
            self._plan_active = True
            if not self.occupied:
                self._board_one()
            self._enter(Phase.TRAPPED)

    def release(self) -> None:
        """End of a trap (alias of :meth:`recover`)."""
        self.recover()

    def door_open_run(self, hold_ms: int) -> None:
        """Fault: on the next trip (an idle car departs at once) the doors open while moving for ``hold_ms``."""
        self._arm("door_open_run", {"hold_ms": hold_ms})
        self._start_if_idle()

    def overspeed(self, factor: float, hold_ms: int) -> None:
        """Fault: on the next trip the car speeds up to ``factor`` × rated, stays above 1.2 × for ``hold_ms``."""
        self._arm("overspeed", {"factor": factor, "hold_ms": hold_ms})
        self._start_if_idle()

    def overtravel(self, top: bool) -> None:
        """Fault: the next empty trip runs past the top (or bottom) terminal landing and stops there."""
        self._arm("overtravel", {"top": top})
        self._start_if_idle()

    def stop_between(self) -> None:
        """Fault: the next empty trip stops between two landings and stays there."""
        self._arm("stuck", {})
        self._start_if_idle()

    def creep(self, speed: float) -> None:
        """Fault: when idle and empty, the motor runs and the car creeps at ``speed`` without arriving."""
        self._arm("creep", {"speed": speed})
        self._start_if_idle()

    def halt(
        self, codes: tuple[int, ...], on_events: tuple[EventTuple, ...], off_events: tuple[EventTuple, ...]
    ) -> None:
        """Fault: when idle and empty at a landing, the car stays put, reporting ``codes`` (and events)."""
        self._arm("halt", {"codes": codes, "on_events": on_events}, off_events)
        self._start_if_idle()

    def door_stuck_open(
        self, codes: tuple[int, ...], on_events: tuple[EventTuple, ...], off_events: tuple[EventTuple, ...]
    ) -> None:
        """Fault: when idle and empty, the doors open and fail to close, reporting ``codes``."""
        self._arm("door_stuck_open", {"codes": codes, "on_events": on_events}, off_events)
        self._start_if_idle()

    def cycle_doors(self) -> None:
        """Fault: when idle and empty, the doors open and close over and over without a trip (7 s a cycle)."""
        self._arm("cycle", {})
        self._start_if_idle()

    def press_alarm(self, on_events: tuple[EventTuple, ...]) -> None:
        """Fault: the car alarm button is held; the car itself carries on as normal."""
        self._arm("alarm", {})
        self._plan_active = True
        self.alarm_button = True
        self.events.extend(on_events)
        self.dirty = True

    def _start_if_idle(self) -> None:
        if self._phase is Phase.IDLE:
            self._start_plan_from_idle()

    def recover(self) -> None:
        """End the armed fault: the car returns to normal service (rescue drive first if between floors)."""
        p, active = self._plan, self._plan_active
        if p is None:
            return
        self._plan, self._plan_active = None, False
        if active:  # a fault that never took effect has nothing to reset
            self.events.extend(self._off_events)
        self._off_events = ()
        self._trip = None
        self._vcap = self._rated
        self._set_door(None)
        if self.codes:
            self.codes = ()
            self.dirty = True
        if self.alarm_button:
            self.alarm_button = False
            self.dirty = True
        ph = self._phase
        if not active:
            return
        if ph in (Phase.TRAPPED, Phase.TRAP_CLOSING):
            self._boarding = False
            if self.door_zone:
                self._enter(Phase.OPENING, DOOR_MOVE_MS)  # let the passenger out
            else:
                self._rescue_to_landing()
        elif ph is Phase.HALTED:
            if self.door_zone:
                self._go_idle()
            else:
                self._rescue_to_landing()
        elif ph is Phase.TRAVEL and p == "overtravel":
            self._retarget_landing()
        elif ph is Phase.CREEP:
            # Carry on to the next landing in the direction of travel, then stop normally.
            x = self._pos / FLOOR_HEIGHT_M
            nxt = math.floor(x + 1e-9) + 1 if self._creep_dir > 0 else math.ceil(x - 1e-9) - 1
            self._drive_to(min(max(nxt, 0), len(self._labels) - 1))
        elif ph in (Phase.FAULT_OPENING, Phase.FAULT_OPEN, Phase.CYCLE_OPENING, Phase.CYCLE_OPEN, Phase.CYCLE_CLOSING):
            self._enter(Phase.CLOSING, DOOR_MOVE_MS)
        elif ph is Phase.CYCLE_CLOSED:
            self._go_idle()

    def _retarget_landing(self) -> None:
        """An overtravel trip ended early: stop at the terminal landing as a normal trip would."""
        top = len(self._labels) - 1
        if self._target_pos > top * FLOOR_HEIGHT_M:
            self._dest = top
        elif self._target_pos < 0:
            self._dest = 0
        self._target_pos = self._dest * FLOOR_HEIGHT_M
        self._trip = None

    def _rescue_to_landing(self) -> None:
        idx = min(max(self._index(), 0), len(self._labels) - 1)
        self._drive_to(idx)

    def _drive_to(self, idx: int) -> None:
        """Slow drive (rescue speed) to landing ``idx``."""
        self._dest = idx
        self._target_pos = idx * FLOOR_HEIGHT_M
        if abs(self._target_pos - self._pos) < 0.02:
            self._pos = self._target_pos
            self._arrive()
            return
        self.dir = "up" if self._target_pos > self._pos else "down"
        self.speed = RESCUE_SPEED_M_S
        self.door_zone = False
        self._enter(Phase.RESCUE)
