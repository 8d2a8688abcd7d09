"""Simulated elevator car: calls, door cycles, travel kinematics, trip counters, fault hooks.

The car is a small state machine on a simulated clock in ms. It is advanced lazily:
``advance(now)`` brings it to ``now`` and ``wake_ms`` says when it next changes by itself, so
an idle car costs nothing between calls (the engine only wakes cars that are due).

Normal operation respects the alarm rules of domain.md §4.3 by construction: the car only
stops levelled at a landing (door zone), moves only with doors closed, never exceeds its rated
speed, and "stopped + doors closed + passenger" lasts only the brake-lift / levelling pauses
(0.5 s each), far from the 20 s trapped-passenger threshold.
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


_MOVING = frozenset({Phase.TRAVEL, Phase.RESCUE})
_DOOR = {
    Phase.OPENING: "opening",
    Phase.OPEN_EXCHANGE: "open",
    Phase.OPEN_HOLD: "open",
    Phase.CLOSING: "closing",
    Phase.TRAP_CLOSING: "closing",
}
_DOOR_OPEN_PHASES = frozenset(_DOOR)


class Elevator:
    """One car; public attributes are the reported state, the rest is private machinery."""

    __slots__ = (
        "_accel", "_boarding", "_dest", "_labels", "_lobby", "_mean_gap_ms", "_phase",
        "_phase_end", "_pos", "_rated", "_rng", "_t", "_target_pos", "device_id", "dir",
        "dirty", "door_zone", "floor", "load", "occupied", "run_count", "run_hours", "speed",
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
        self.dirty = True  # the first report is always worth sending
        self._phase = Phase.IDLE
        self._phase_end = now_ms + self._call_gap()

    # ----------------------------------------------------------------------------- reporting
    @property
    def running(self) -> bool:
        """The car is moving (travel or rescue drive)."""
        return self._phase in _MOVING

    @property
    def door(self) -> str:
        """Door state as the contract spells it (closed / opening / open / closing)."""
        return _DOOR.get(self._phase, "closed")

    @property
    def phase(self) -> Phase:
        """Current phase of the state machine (tests and faults read it)."""
        return self._phase

    @property
    def rated_speed(self) -> float:
        """Rated speed in m/s."""
        return self._rated

    @property
    def wake_ms(self) -> int:
        """Next device time at which the car changes on its own."""
        return self._t + MOVE_TICK_MS if self._phase in _MOVING else self._phase_end

    def status(self, ts: int, seq: int) -> dict[str, Any]:
        """Status payload (contract v1 ``ElevatorStatus``, enum values as strings)."""
        return {
            "ts": ts,
            "seq": seq,
            "mode": "normal",
            "running": self._phase in _MOVING,
            "dir": self.dir,
            "floor": self.floor,
            "door_zone": self.door_zone,
            "door": _DOOR.get(self._phase, "closed"),
            "occupied": self.occupied,
            "speed": round(self.speed, 3),
            "load": self.load,
            "run_count": self.run_count,
            "run_hours": round(self.run_hours, 4),
            "alarm_button": False,
            "faults": [],
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
                self._enter(Phase.IDLE, self._call_gap())
        elif p is Phase.TRAP_CLOSING:
            self._enter(Phase.TRAPPED)
        else:  # TRAPPED has no timer; a released fault moves the car on
            self._phase_end = NEVER

    def _index(self) -> int:
        # The car never leaves [bottom, top], so rounding the position is enough.
        return int(self._pos / FLOOR_HEIGHT_M + 0.5)

    def _on_call(self) -> None:
        here = self._index()
        call = self._lobby if self._rng.random() < 0.4 else self._rng.randrange(len(self._labels))
        self._boarding = True
        if call == here:
            self._enter(Phase.OPENING, DOOR_MOVE_MS)
        else:
            self._dest = call  # empty run to the calling landing
            self._enter(Phase.START, START_DELAY_MS)

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
        self.dir = "up" if self._target_pos > self._pos else "down"
        self.door_zone = False
        self.run_count += 1
        self._enter(Phase.TRAVEL)

    def _move(self, now_ms: int) -> None:
        # Sub-steps of at most MOVE_TICK_MS keep the kinematics right if the engine lags.
        rescue = self._phase is Phase.RESCUE
        while self._t < now_ms and self._phase in _MOVING:
            dt = min(MOVE_TICK_MS, now_ms - self._t)
            self._t += dt
            dts = dt / 1000.0
            self.run_hours += dt / 3_600_000.0
            remaining = abs(self._target_pos - self._pos)
            if rescue:
                v = RESCUE_SPEED_M_S
            else:
                # Trapezoidal profile: accelerate, cruise at rated speed, brake to land exactly.
                v = self.speed + self._accel * dts
                if v > self._rated:
                    v = self._rated
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
            label = self._labels[self._index()]
            if label != self.floor:
                self.floor = label
                self.dirty = True

    def _arrive(self) -> None:
        self.speed = 0.0
        self.dir = "stop"
        self.door_zone = True
        self.floor = self._labels[self._index()]
        self._enter(Phase.ARRIVE, ARRIVE_DELAY_MS)

    # ------------------------------------------------------------------------------- faults
    def trap(self) -> None:
        """Fault: stop with a passenger behind closed doors (call ``advance(now)`` first).

        A travelling car stops where it is, outside the door zone; a car at a landing closes
        its doors (if open) and stays there. The car stays trapped until :meth:`release`.
        """
        if self._phase in _MOVING:
            self.speed = 0.0
            self.dir = "stop"
            self.door_zone = False
            self._enter(Phase.TRAPPED)
        elif self._phase in _DOOR_OPEN_PHASES:
            self._enter(Phase.TRAP_CLOSING, DOOR_MOVE_MS)
        else:
            self._enter(Phase.TRAPPED)
        if not self.occupied:
            self.occupied = True
            self.load = round(self._rng.uniform(*PASSENGER_KG), 1)
        self._boarding = False

    def release(self) -> None:
        """End of a trap: drive to the nearest landing if needed, open, let the passenger out."""
        if self._phase not in (Phase.TRAPPED, Phase.TRAP_CLOSING):
            return
        self._boarding = False
        if self.door_zone:
            self._enter(Phase.OPENING, DOOR_MOVE_MS)
            return
        self._dest = self._index()
        self._target_pos = self._dest * FLOOR_HEIGHT_M
        if abs(self._target_pos - self._pos) < 0.02:
            self._pos = self._target_pos
            self._arrive()
            return
        self.dir = "up" if self._target_pos > self._pos else "down"
        self.speed = RESCUE_SPEED_M_S
        self._enter(Phase.RESCUE)
