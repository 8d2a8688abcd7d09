"""Fault injection: the ``TYPE:DEVICE@ONSET[+DURATION][,KEY=VALUE…]`` spec language and the fault types.

A fault type is one class registered with :func:`fault_type`: which equipment kinds (and
media) it applies to, which alarm it should cause and at which severity, what it does to the
device model at its start and end, and how to recognise the faulty condition in the published
messages (``holds`` for statuses, ``on_event`` for events) so the ground truth records when the
condition is *visible in the data*, not merely when it was scheduled. ``FAULT_TYPES`` is the
catalog; each class's docstring says which rule condition it satisfies and how.

Onset and duration are device time since the simulation start: ``30s``, ``2m``, ``500ms``,
``1h`` (a bare number means seconds). Without a duration each type uses its own default
(``default_duration_ms``). Options follow the duration, comma-separated, e.g.
``trapped:E000002@30s+90s,where=between`` or ``gas_leak:V000004@2m,peak=40``.
"""

from __future__ import annotations

import itertools
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from semon.simulators.elevator import FLOOR_HEIGHT_M, Elevator
from semon.simulators.fleet import MEDIA, DeviceSpec, Fleet
from semon.simulators.vessel import Segment, Vessel

DEFAULT_DURATION_MS = 40_000
MIN_DURATION_MS = 2_000  # an overpressure ramp needs 2 s to reach the set pressure
# Two faults on one device must leave the car / vessel this long to settle in between (on top
# of the earlier fault's own ``settle_ms``), so each injected fault maps to one alarm episode.
MIN_GAP_MS = 10_000
STOPPED_SPEED = 0.05  # m/s, as the trapped-passenger rule counts "stopped"
OUTSIDE_ZONE_MS = 45_000  # stopped outside the door zone: the rule's default duration
RATE_WINDOW_MS = 30_000  # pressure rise rate: over at least this much history
RATE_LIMIT = 0.05  # × set pressure per minute
CYCLE_WINDOW_MS = 60_000  # repeated door cycling: openings counted over this window…
CYCLE_COUNT = 5  # …this many without a trip
# Service modes (contract v1) and where the rules stop applying (domain.md §4.3: a technician
# aboard in inspection, firefighters in control, staff parking a car out of service).
MODES = ("normal", "inspection", "fire_return", "firefighter", "emergency_power", "earthquake", "out_of_service",
         "unknown")  # fmt: skip
NO_TRAP_MODES = frozenset({"inspection", "firefighter"})
NO_OUTSIDE_ZONE_MODES = frozenset({"inspection", "firefighter", "out_of_service"})
NO_RUN_LIMIT_MODES = frozenset({"inspection"})  # the motor run-time limiter does not act there
NO_CYCLING_MODES = frozenset({"inspection", "firefighter"})  # door tests, doors worked by hand
INVALID_BELOW_MPA = 0.0  # a pressure reading below this is a sensor fault, not a pressure
KEEPALIVE_MS = 60_000  # the terminals' keep-alive (the offline alarm fires after 3 of them)
WAIT_SLACK_MS = 70_000  # a fault waiting for an idle car / the next trip: at most about one loaded trip

_SPEC_RE = re.compile(r"^(?P<type>[a-z_]+):(?P<device>[A-Za-z0-9_.\-]+)@(?P<onset>[^+,]+)(?:\+(?P<dur>[^,]+))?$")
_TIME_RE = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}

Status = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A parsed fault request: type, device, onset and duration (device ms since start), options."""

    fault: str
    device_id: str
    onset_ms: int
    duration_ms: int
    text: str
    params: tuple[tuple[str, str], ...] = ()  # KEY=VALUE options as written

    @property
    def end_ms(self) -> int:
        """End of the fault window, device ms since start."""
        return self.onset_ms + self.duration_ms


@dataclass(frozen=True, slots=True)
class Param:
    """One ``KEY=VALUE`` option of a fault type: its parser (raises ``ValueError``) and default."""

    parse: Callable[[str], Any]
    default: Any
    help: str


@dataclass(frozen=True, slots=True)
class Secondary:
    """Another alarm the fault may legitimately cause: its condition held ≥ ``min_ms`` in the data."""

    alarm_type: str
    holds: Callable[[Status], bool]
    min_ms: int


def _choice(*options: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return v

    return parse


def _number(lo: float, hi: float) -> Callable[[str], float]:
    def parse(v: str) -> float:
        x = float(v)
        if not lo <= x <= hi:
            raise ValueError(f"expected a number in [{lo:g}, {hi:g}]")
        return x

    return parse


def _span(lo_ms: int, hi_ms: int) -> Callable[[str], int]:
    def parse(v: str) -> int:
        ms = parse_duration_ms(v)
        if not lo_ms <= ms <= hi_ms:
            raise ValueError(f"expected a time in [{lo_ms / 1000:g}s, {hi_ms / 1000:g}s]")
        return ms

    return parse


# ---------------------------------------------------------------------------- conditions
def stopped(s: Status) -> bool:
    """Not running and below the stopped speed."""
    return not s["running"] and s["speed"] < STOPPED_SPEED


def trapped_condition(s: Status) -> bool:
    """Trapped-passenger rule: a mode people ride in, stopped, doors closed, passenger present."""
    return s["mode"] not in NO_TRAP_MODES and stopped(s) and s["door"] == "closed" and s["occupied"]


def outside_zone_condition(s: Status) -> bool:
    """Stopped-outside-door-zone rule: a mode in which the car should stand at a landing, stopped, not levelled."""
    return s["mode"] not in NO_OUTSIDE_ZONE_MODES and stopped(s) and not s["door_zone"]


def run_limit_ms(device: DeviceSpec) -> int:
    """Run-time anomaly limit: max(20 s, 1.5 × landings × 3 m / rated speed + 10 s)."""
    e = device.elevator
    assert e is not None
    return round(max(20.0, 1.5 * e.floors * FLOOR_HEIGHT_M / e.rated_speed + 10.0) * 1000)


OUTSIDE_ZONE = Secondary("stopped_outside_door_zone", outside_zone_condition, OUTSIDE_ZONE_MS)


# ---------------------------------------------------------------------------------- base
class Fault(ABC):
    """One injected fault on one device. Subclasses set the class attributes and the hooks.

    Faults that need the car in a particular state wait for it (see ``semon.simulators.elevator``),
    at most about one loaded trip (≈ 65 s in a 40-floor building), so ``scenario_duration_ms``
    leaves that much slack on top of what the alarm needs.
    """

    name: ClassVar[str]  # the TYPE in the spec
    kinds: ClassVar[frozenset[str]]  # equipment kinds it applies to
    needs: ClassVar[str | None] = None  # vessel medium property required: "liquefied" / "flammable"
    alarm_type: ClassVar[str]  # alarm semon should raise (ground truth)
    severity: ClassVar[str]  # expected severity of that alarm
    implied: ClassVar[tuple[str, ...]] = ()  # other alarm types that may legitimately fire
    secondary: ClassVar[tuple[Secondary, ...]] = ()  # implied when their condition shows in the data
    default_duration_ms: ClassVar[int] = DEFAULT_DURATION_MS
    min_duration_ms: ClassVar[int] = MIN_DURATION_MS
    settle_ms: ClassVar[int] = 0  # how long the condition may outlast the fault window
    params: ClassVar[dict[str, Param]] = {}
    silent: ClassVar[bool] = False  # the device publishes nothing during the fault
    lwt: ClassVar[bool] = False  # …and its online flag goes to "0" (last will) at once

    def __init__(self, spec: FaultSpec, device: DeviceSpec) -> None:
        self.spec = spec
        self.device = device
        self.args: dict[str, Any] = {k: p.default for k, p in self.params.items()}
        for key, raw in spec.params:
            self.args[key] = self.params[key].parse(raw)
        self.details: dict[str, Any] = {"spec": spec.text, "duration_ms": spec.duration_ms}
        self.details.update({k: v for k, v in self.args.items()})
        self.started = False  # begin() ran
        self.stopped = False  # end() ran
        self.model: Any = None
        self.extra_implied: tuple[str, ...] = ()  # implied by this instance's options

    @property
    def expected_alarm_type(self) -> str:
        """Alarm semon should raise for this instance; "" when its options make it normal operation
        (a trap in inspection): the ground truth then expects no alarm at all."""
        return self.alarm_type

    @property
    def kind(self) -> str:
        """Equipment kind of the faulty device."""
        return self.device.kind

    @property
    def expected_severity(self) -> str:
        """Severity the alarm should reach (some types depend on their options)."""
        return self.severity

    @classmethod
    def check_device(cls, device: DeviceSpec) -> str | None:
        """Why the fault cannot be injected on ``device`` (None: it can)."""
        if device.kind not in cls.kinds:
            kinds = " or ".join(f"{k}s" for k in sorted(cls.kinds))
            return f"fault {cls.name!r} applies to {kinds}, but {device.device_id} is a {device.kind}"
        if cls.needs is not None:
            assert device.vessel is not None
            if not getattr(MEDIA[device.vessel.medium], cls.needs):
                return (
                    f"fault {cls.name!r} needs a {cls.needs} medium, but {device.device_id} holds "
                    f"{device.vessel.medium}"
                )
        return None

    @classmethod
    def check_duration(cls, device: DeviceSpec, duration_ms: int) -> str | None:
        """Why ``duration_ms`` is too short for the alarm to be expected on ``device`` (None: fine)."""
        return None

    waits: ClassVar[bool] = False  # the fault waits for a car state (idle, next trip) before it shows

    @classmethod
    def scenario_duration_ms(cls, device: DeviceSpec, args: Mapping[str, str]) -> int:
        """Duration the mixed scenario gives this fault on ``device`` (room for the alarm, and slack)."""
        wait = WAIT_SLACK_MS if cls.waits and device.kind == "elevator" else 0
        return cls.default_duration_ms + wait

    def begin(self, model: Any) -> None:
        """Apply the fault to the (already advanced) model."""
        self.started = True
        self.model = model
        self.start(model)

    def end(self, model: Any) -> None:
        """Let the model return to normal operation."""
        self.stopped = True
        self.stop(model)

    @abstractmethod
    def start(self, model: Any) -> None:
        """Make the device model faulty."""

    @abstractmethod
    def stop(self, model: Any) -> None:
        """Let the device model return to normal operation."""

    def holds(self, status: Status) -> bool | None:
        """Does a status (about to be) published show the faulty condition? None: it cannot tell."""
        return None

    def on_event(self, event: Status) -> bool | None:
        """Does a published event begin (True) or end (False) the condition? None: unrelated."""
        return None

    def seen(self, channel: str, payload: Status) -> None:  # noqa: B027 - optional hook, no-op by default
        """A message of the device was published (after ``holds`` / ``on_event`` judged it)."""

    def end_ts(self, ts: int) -> int:
        """End of the condition, given the first published ts that no longer shows it."""
        return ts


FAULT_TYPES: dict[str, type[Fault]] = {}


def fault_type(cls: type[Fault]) -> type[Fault]:
    """Class decorator: make a fault type available to specs under ``cls.name``."""
    FAULT_TYPES[cls.name] = cls
    return cls


_ELEVATOR = frozenset({"elevator"})
_VESSEL = frozenset({"vessel"})


def _mode_param() -> Param:
    return Param(_choice(*MODES), "normal", "service mode the car reports during the fault")


class _InMode(Fault):
    """A fault that can happen in a given service mode (``mode=…``); where the rule does not apply
    in that mode (``NOT_IN``) the same behaviour is normal operation and expects no alarm."""

    NOT_IN: ClassVar[frozenset[str]] = frozenset()

    @property
    def expected_alarm_type(self) -> str:
        """No alarm where the mode makes the behaviour normal."""
        return "" if self.args["mode"] in self.NOT_IN else self.alarm_type

    def begin(self, model: Any) -> None:
        """Switch the car to the fault's mode, then apply the fault."""
        model.set_mode(self.args["mode"])
        super().begin(model)

    def end(self, model: Any) -> None:
        """End the fault, back to normal service."""
        super().end(model)
        model.set_mode("normal")


# ------------------------------------------------------------------------------ elevator
@fault_type
class TrappedPassenger(_InMode):
    """困人: the car stops with a passenger behind closed doors (``where``: any, landing, between).

    ``any`` traps where the car is (between floors if travelling); ``landing`` traps levelled
    at a landing; ``between`` traps outside the door zone. Between floors for ≥ 45 s also
    satisfies the stopped-outside-door-zone rule (``implied``). ``mode``: the service mode the
    car is in (a power cut: ``emergency_power``, which also implies ``power_lost``); in
    inspection or firefighter operation the same stop is normal operation (no alarm expected).
    """

    name = "trapped"
    kinds = _ELEVATOR
    alarm_type = "trapped_passenger"
    severity = "critical"
    secondary = (OUTSIDE_ZONE,)
    settle_ms = 10_000  # rescue drive to a landing and doors open
    params: ClassVar[dict[str, Param]] = {
        "where": Param(_choice("any", "landing", "between"), "any", "where the car stops"),
        "mode": _mode_param(),
    }
    NOT_IN = NO_TRAP_MODES

    def __init__(self, spec: FaultSpec, device: DeviceSpec) -> None:
        super().__init__(spec, device)
        if self.args["mode"] == "emergency_power":
            self.extra_implied = ("power_lost",)

    def start(self, model: Elevator) -> None:
        """Trap (or arm the trap for the right place)."""
        model.trap(self.args["where"])

    def stop(self, model: Elevator) -> None:
        """Release the passenger (rescue drive to a landing if needed, doors open)."""
        model.recover()

    def holds(self, status: Status) -> bool:
        """Stopped, doors closed, passenger present — once started, only while the trap holds the car.

        (A car setting off for a trap between floors pauses 0.5 s, doors closed, with its
        passenger: the same condition, but not the trap. Before the start the data alone
        decides, so a car already paused when trapped counts from the pause, as a rule would.)
        """
        return trapped_condition(status) and (not self.started or self.model.trapped)

    def seen(self, channel: str, payload: Status) -> None:
        """Record where the car is when the trap becomes visible."""
        if self.started and "floor" not in self.details and channel == "status" and self.holds(payload):
            self.details.update(floor=payload["floor"], door_zone=payload["door_zone"])

    @classmethod
    def scenario_duration_ms(cls, device: DeviceSpec, args: Mapping[str, str]) -> int:
        """Enough for the 20 s alarm after waiting for a trip; between floors also ≥ 45 s."""
        return 150_000 if args.get("where") == "between" else 110_000


@fault_type
class DoorOpenWhileMoving(Fault):
    """开门走梯: on the next trip the doors open while the car moves (``hold``, 2-5 s), then close.

    Condition: speed > 0.1 m/s and door not closed. An idle car departs at once (empty run to
    the farther terminal); a busy car does it on its next departure.
    """

    name = "door_open_moving"
    kinds = _ELEVATOR
    alarm_type = "door_open_while_moving"
    severity = "critical"
    waits = True
    default_duration_ms = 90_000
    settle_ms = 5_000
    params: ClassVar[dict[str, Param]] = {
        "hold": Param(_span(2_000, 5_000), 3_000, "how long the doors are not closed")
    }

    def start(self, model: Elevator) -> None:
        """Arm the door-open episode."""
        model.door_open_run(self.args["hold"])

    def stop(self, model: Elevator) -> None:
        """Disarm (doors close if still open)."""
        model.recover()

    def holds(self, status: Status) -> bool:
        """Moving faster than 0.1 m/s with the doors not closed."""
        return status["speed"] > 0.1 and status["door"] != "closed"


@fault_type
class Overspeed(Fault):
    """超速: on the next trip the car runs at ``factor`` × rated speed, > 1.2 × for ``hold``, then normal.

    The trip goes to the farther terminal landing; in a low building with a fast car braking may
    end the overspeed before ``hold`` (≥ 2.5 s above 1.2 × in the worst case of this fleet).
    """

    name = "overspeed"
    kinds = _ELEVATOR
    alarm_type = "overspeed"
    severity = "critical"
    waits = True
    default_duration_ms = 90_000
    settle_ms = 5_000
    params: ClassVar[dict[str, Param]] = {
        "factor": Param(_number(1.25, 2.0), 1.3, "speed / rated speed"),
        "hold": Param(_span(1_000, 10_000), 3_000, "time above 1.2 × rated"),
    }

    def start(self, model: Elevator) -> None:
        """Arm the overspeed trip."""
        model.overspeed(self.args["factor"], self.args["hold"])

    def stop(self, model: Elevator) -> None:
        """Back to the rated speed."""
        model.recover()

    def holds(self, status: Status) -> bool:
        """Faster than 1.2 × rated speed."""
        return status["speed"] > 1.2 * self.device.elevator.rated_speed  # type: ignore[union-attr]


class _Overtravel(Fault):
    """The next empty trip runs past a terminal landing and stops there, outside any door zone."""

    kinds = _ELEVATOR
    waits = True
    severity = "critical"
    secondary = (OUTSIDE_ZONE,)
    default_duration_ms = 120_000
    settle_ms = 10_000
    TOP: ClassVar[bool]

    def start(self, model: Elevator) -> None:
        """Arm the overtravel."""
        model.overtravel(self.TOP)

    def stop(self, model: Elevator) -> None:
        """Drive back to the terminal landing."""
        model.recover()


@fault_type
class OvershootTop(_Overtravel):
    """冲顶: the reported floor goes above the top terminal floor; the empty car stops up there."""

    name = "overshoot_top"
    alarm_type = "overshoot_top"
    TOP = True

    def holds(self, status: Status) -> bool:
        """Reported floor above the top landing."""
        return status["floor"] > self.device.elevator.labels[-1]  # type: ignore[union-attr]


@fault_type
class BottomStrike(_Overtravel):
    """蹲底: the reported floor goes below the bottom terminal floor; the empty car stops down there."""

    name = "bottom_strike"
    alarm_type = "bottom_strike"
    TOP = False

    def holds(self, status: Status) -> bool:
        """Reported floor below the bottom landing."""
        return status["floor"] < self.device.elevator.bottom_floor  # type: ignore[union-attr]


@fault_type
class StuckOutsideZone(Fault):
    """门区外停梯: the next empty trip stops between two landings (no passenger: no trap) until the end."""

    name = "stuck_outside_zone"
    kinds = _ELEVATOR
    alarm_type = "stopped_outside_door_zone"
    severity = "major"
    default_duration_ms = 120_000
    min_duration_ms = 50_000
    settle_ms = 10_000

    def start(self, model: Elevator) -> None:
        """Arm the stop between floors."""
        model.stop_between()

    def stop(self, model: Elevator) -> None:
        """Drive to the nearest landing."""
        model.recover()

    def holds(self, status: Status) -> bool:
        """Stopped outside the door zone."""
        return outside_zone_condition(status)

    @classmethod
    def scenario_duration_ms(cls, device: DeviceSpec, args: Mapping[str, str]) -> int:
        """45 s after the stop, plus waiting for the car to be idle and empty."""
        return 180_000


class _CodeFault(Fault):
    """A fault the terminal reports itself: status ``faults`` codes and / or events."""

    kinds = _ELEVATOR
    default_duration_ms = 60_000
    settle_ms = 5_000
    waits = True
    CODES: ClassVar[tuple[int, ...]] = ()
    ON: ClassVar[tuple[tuple[int, bool, str], ...]]
    OFF: ClassVar[tuple[tuple[int, bool, str], ...]]

    def start(self, model: Elevator) -> None:
        """When idle and empty at a landing, stop there reporting the code."""
        model.halt(self.CODES, self.ON, self.OFF)

    def stop(self, model: Elevator) -> None:
        """Reset the code, back to service."""
        model.recover()

    def holds(self, status: Status) -> bool | None:
        """The code is among the status ``faults``."""
        return self.CODES[0] in status["faults"] if self.CODES else None


@fault_type
class SafetyCircuit(_CodeFault):
    """Safety circuit open (code 1): the car stays at a landing, doors closed, empty; status and event."""

    name = "safety_circuit"
    alarm_type = "safety_circuit_open"
    severity = "major"
    CODES = (1,)
    ON = ((1, True, "safety circuit open"),)
    OFF = ((1, False, "safety circuit closed"),)


@fault_type
class PowerLoss(_CodeFault):
    """Main power lost: event 41 at the onset, event 40 (back to normal) at the end; car idle at a landing."""

    name = "power_loss"
    alarm_type = "power_lost"
    severity = "major"
    ON = ((41, True, "main power lost"),)
    OFF = ((40, True, "back to normal service"),)

    def on_event(self, event: Status) -> bool | None:
        """41 begins, 40 ends the condition."""
        if event["code"] == 41 and event["active"]:
            return True
        if event["code"] == 40:
            return False
        return None


@fault_type
class DoorFault(_CodeFault):
    """Door close fault (code 2): at an idle landing the doors open and fail to close; status and events."""

    name = "door_fault"
    alarm_type = "door_fault"
    severity = "minor"
    CODES = (2,)
    ON = ((2, True, "door close fault"),)
    OFF = ((2, False, "door close fault reset"),)

    def start(self, model: Elevator) -> None:
        """When idle and empty, doors open and stay open, code 2 reported."""
        model.door_stuck_open(self.CODES, self.ON, self.OFF)


@fault_type
class DoorCycling(_InMode):
    """反复开关门: an idle, empty car opens and closes its doors every 7 s without a trip.

    Condition: ≥ 5 openings (door turns "opening") within 60 s with no run in between.
    ``onset_ts`` is the 5th opening (counting any opening in the data, e.g. the car's arrival
    just before); ``end_ts`` is the last opening + 60 s (the window no longer holds one), or the
    next run if that comes first.
    """

    name = "door_cycling"
    kinds = _ELEVATOR
    alarm_type = "repeated_door_cycling"
    severity = "minor"
    waits = True
    params: ClassVar[dict[str, Param]] = {"mode": _mode_param()}
    NOT_IN = NO_CYCLING_MODES  # door tests in inspection are not repeated cycling
    default_duration_ms = 60_000
    min_duration_ms = 35_000
    settle_ms = CYCLE_WINDOW_MS + 10_000

    def __init__(self, spec: FaultSpec, device: DeviceSpec) -> None:
        super().__init__(spec, device)
        self._openings: deque[int] = deque()  # published openings since the last run
        self._prev_door = "closed"
        self._reached = False  # 5 in a window seen since the fault started

    def start(self, model: Elevator) -> None:
        """Start cycling when idle and empty."""
        model.cycle_doors()

    def stop(self, model: Elevator) -> None:
        """Close the doors, back to service."""
        model.recover()

    def _judge(self, s: Status) -> tuple[bool, bool, int | None]:
        """(holds, count reached, last opening) if ``s`` were published now.

        Every opening in the data counts, as a rule counts them (the car's own arrival opening
        just before the fault too); an episode begins only once the fault has started.
        """
        if s["running"]:
            return False, False, None
        ts = s["ts"]
        last = self._openings[-1] if self._openings else None
        n = sum(1 for o in self._openings if o > ts - CYCLE_WINDOW_MS)
        if s["door"] == "opening" and self._prev_door != "opening":
            last, n = ts, n + 1
        reached = self._reached or (self.started and n >= CYCLE_COUNT)
        return reached and last is not None and ts < last + CYCLE_WINDOW_MS, reached, last

    def holds(self, status: Status) -> bool:
        """From the 5th opening in 60 s until 60 s after the last one (or a run)."""
        return self._judge(status)[0]

    def seen(self, channel: str, payload: Status) -> None:
        """Count openings; a run starts the count over."""
        if channel != "status":
            return
        _, reached, last = self._judge(payload)
        if payload["running"]:
            self._openings.clear()
        elif last is not None and (not self._openings or last != self._openings[-1]):
            self._openings.append(last)
            if self.started:
                self.details["openings"] = self.details.get("openings", 0) + 1
            if reached and not self._reached:
                self.details["fifth_opening_ts"] = last
        while self._openings and self._openings[0] <= payload["ts"] - 2 * CYCLE_WINDOW_MS:
            self._openings.popleft()
        self._reached = reached
        self._prev_door = payload["door"]

    def end_ts(self, ts: int) -> int:
        """60 s after the last opening, or the first run if earlier."""
        last = self._openings[-1] if self._openings else None
        return ts if last is None else min(ts, last + CYCLE_WINDOW_MS)


@fault_type
class AlarmButton(Fault):
    """Car alarm button held (status ``alarm_button``, event 90 at the onset); the car runs on normally."""

    name = "alarm_button"
    kinds = _ELEVATOR
    alarm_type = "alarm_button"
    severity = "major"
    default_duration_ms = 30_000
    settle_ms = 2_000

    def start(self, model: Elevator) -> None:
        """Press the button."""
        model.press_alarm(((90, True, "car alarm button pressed"),))

    def stop(self, model: Elevator) -> None:
        """Let go."""
        model.recover()

    def holds(self, status: Status) -> bool:
        """The status shows the button pressed."""
        return bool(status["alarm_button"])


@fault_type
class RunOvertime(_InMode):
    """Run-time anomaly: when idle and empty, the motor runs and the car creeps (``speed``) without arriving.

    Condition: running continuously longer than the limit (:func:`run_limit_ms`);
    ``onset_ts`` is the start of the run, the alarm is due ``limit`` later. At the end the car
    creeps on to the next landing and stops there (``end_ts``).
    """

    name = "run_overtime"
    kinds = _ELEVATOR
    alarm_type = "run_time_anomaly"
    severity = "major"
    default_duration_ms = 180_000
    settle_ms = 15_000  # up to one floor at creep speed
    params: ClassVar[dict[str, Param]] = {
        "speed": Param(_number(0.1, 0.5), 0.3, "creep speed, m/s"),
        "mode": _mode_param(),
    }
    NOT_IN = NO_RUN_LIMIT_MODES  # an inspection run lasts as long as the work does

    def __init__(self, spec: FaultSpec, device: DeviceSpec) -> None:
        super().__init__(spec, device)
        self._in_run = False  # the current run began as a creep
        self.details["run_limit_ms"] = run_limit_ms(device)

    @classmethod
    def check_duration(cls, device: DeviceSpec, duration_ms: int) -> str | None:
        """The run must outlast the limit."""
        need = run_limit_ms(device) + 15_000
        if duration_ms < need:
            return f"run_overtime on {device.device_id} needs at least {need / 1000:g}s (run limit + 15s)"
        return None

    @classmethod
    def scenario_duration_ms(cls, device: DeviceSpec, args: Mapping[str, str]) -> int:
        """Limit + 60 s, plus waiting for the car to be idle and empty."""
        return run_limit_ms(device) + 150_000

    def start(self, model: Elevator) -> None:
        """Arm the creep."""
        model.creep(self.args["speed"])

    def stop(self, model: Elevator) -> None:
        """Creep on to the next landing and stop."""
        model.recover()

    def holds(self, status: Status) -> bool:
        """Running, in a run that began as the creep."""
        return bool(status["running"]) and (self._in_run or (self.model is not None and self.model.creeping))

    def seen(self, channel: str, payload: Status) -> None:
        """Follow the run."""
        if channel == "status":
            self._in_run = self.holds(payload)


class _Offline(Fault):
    kinds = frozenset({"elevator", "vessel"})
    alarm_type = "terminal_offline"
    severity = "minor"
    waits = True
    default_duration_ms = 240_000
    settle_ms = 5_000
    silent = True

    def start(self, model: Any) -> None:
        """Nothing to change in the model: the engine stops publishing."""

    def stop(self, model: Any) -> None:
        """The device reports at once when it is back."""
        model.dirty = True


@fault_type
class Offline(_Offline):
    """The terminal goes silent (no status, no event) for the duration, then reports again.

    ``onset_ts`` is the ts of its last message before the silence (the offline alarm is due
    3 × keep-alive = 180 s later); ``end_ts`` the ts of its first message afterwards.
    """

    name = "offline"


@fault_type
class OfflineLastWill(_Offline):
    """As ``offline``, and its online flag goes to retained ``0`` at the onset (last will), ``1`` at the end.

    ``onset_ts`` is the device time the ``0`` is published (the alarm is due at once).
    """

    name = "offline_lwt"
    lwt = True


# -------------------------------------------------------------------------------- vessel
class _PressureExcursion(Fault):
    """Pressure ramps to a ratio of the set pressure, holds (with noise), ramps back."""

    kinds = _VESSEL
    alarm_type = "overpressure"
    # A pressure going from the normal band to the set point within seconds is also a steep
    # rise: the rise-rate rule may fire as well.
    implied = ("pressure_rise_rate",)
    settle_ms = 10_000
    RAMP_MS: ClassVar[int] = 2000

    def _ratio(self) -> float:
        raise NotImplementedError

    def start(self, model: Vessel) -> None:
        """Start the excursion."""
        ratio = self._ratio()
        model.force_pressure(ratio, self.RAMP_MS)
        set_p = model.set_pressure
        self.details.update(set_pressure=set_p, peak_pressure=round(ratio * set_p, 4))

    def stop(self, model: Vessel) -> None:
        """Back to normal."""
        model.release_pressure(self.RAMP_MS)


@fault_type
class Overpressure(_PressureExcursion):
    """Pressure ramps to ≈ 1.05 × set pressure within ≈ 2 s, holds, then ramps back (critical rung)."""

    name = "overpressure"
    severity = "critical"
    PEAK_RATIO = 1.05

    def _ratio(self) -> float:
        return self.PEAK_RATIO

    def holds(self, status: Status) -> bool:
        """At or above the safety-valve set pressure."""
        return status["pressure"] >= self.device.vessel.set_pressure  # type: ignore[union-attr]


@fault_type
class NearOverpressure(_PressureExcursion):
    """Pressure ramps to ``ratio`` (0.96-0.99, default 0.975) × set pressure — above the maximum
    working pressure (≤ set / 1.05 = 0.952 × set), never reaching the set pressure (major rung)."""

    name = "near_overpressure"
    severity = "major"
    default_duration_ms = 60_000
    RAMP_MS = 5000
    params: ClassVar[dict[str, Param]] = {"ratio": Param(_number(0.96, 0.99), 0.975, "pressure / set pressure")}

    def _ratio(self) -> float:
        return self.args["ratio"]

    def holds(self, status: Status) -> bool:
        """Above the maximum working pressure."""
        return status["pressure"] > self.device.vessel.working_pressure  # type: ignore[union-attr]


@fault_type
class ValveDischarge(_PressureExcursion):
    """The safety valve discharges: ``valve_discharge`` true, pressure held just under the set pressure."""

    name = "valve_discharge"
    severity = "critical"
    PEAK_RATIO = 0.99

    def _ratio(self) -> float:
        return self.PEAK_RATIO

    def start(self, model: Vessel) -> None:
        """Pressure up to the set point, valve open."""
        super().start(model)
        model.set_valve(True)

    def stop(self, model: Vessel) -> None:
        """Valve reseats, pressure back to normal."""
        model.set_valve(False)
        model.release_pressure(5_000)

    def holds(self, status: Status) -> bool:
        """The valve is discharging."""
        return bool(status["valve_discharge"])


@fault_type
class OverTemperature(Fault):
    """Temperature ramps (60 s) to design temperature + ``excess`` (default 8 °C), holds, ramps back (60 s)."""

    name = "overtemperature"
    kinds = _VESSEL
    alarm_type = "over_temperature"
    severity = "major"
    default_duration_ms = 300_000
    min_duration_ms = 90_000
    settle_ms = 90_000
    params: ClassVar[dict[str, Param]] = {"excess": Param(_number(5.0, 30.0), 8.0, "°C above the design temperature")}
    RAMP_MS = 60_000

    def start(self, model: Vessel) -> None:
        """Heat up."""
        target = self.device.vessel.design_temperature + self.args["excess"]  # type: ignore[union-attr]
        rate = abs(target - model.temperature) / self.RAMP_MS
        model.override("temperature", [Segment(target, rate)], jitter=0.3)

    def stop(self, model: Vessel) -> None:
        """Cool down."""
        model.release("temperature", within_ms=self.RAMP_MS)

    def holds(self, status: Status) -> bool:
        """Above the design temperature."""
        return status["temperature"] > self.device.vessel.design_temperature  # type: ignore[union-attr]


@fault_type
class PressureSurge(Fault):
    """Pressure rises fast (``rate``, default 12 % of set pressure per minute) but stays under 0.88 × set.

    The pressure first eases down to 0.70 × set (at 4 %/min, under the rule even for falls),
    holds 30 s, then rises to 0.87 × set, holds, and eases back at 4 %/min. The vessel reports
    at least every 5 s during the fault. Condition: the rise over the last ≥ 30 s of published
    samples (from the newest sample at least 30 s old) exceeds 5 % of set pressure per minute.
    """

    name = "pressure_surge"
    kinds = _VESSEL
    alarm_type = "pressure_rise_rate"
    severity = "major"
    default_duration_ms = 480_000
    min_duration_ms = 360_000
    settle_ms = 200_000
    params: ClassVar[dict[str, Param]] = {"rate": Param(_number(6.0, 20.0), 12.0, "% of set pressure per minute")}
    LOW, HIGH, EASE = 0.70, 0.87, 0.04 / 60_000
    REPORT_MS = 5_000

    def __init__(self, spec: FaultSpec, device: DeviceSpec) -> None:
        super().__init__(spec, device)
        self._hist: deque[tuple[int, float]] = deque()  # published (ts, pressure)

    def start(self, model: Vessel) -> None:
        """Ease down, hold, surge, hold."""
        rate = self.args["rate"] / 100 / 60_000
        segs = [Segment(self.LOW, self.EASE, 30_000), Segment(self.HIGH, rate)]
        model.override("pressure", segs, jitter=0.001)
        model.max_silence_ms = self.REPORT_MS

    def stop(self, model: Vessel) -> None:
        """Ease back to normal."""
        model.release("pressure", rate=self.EASE)
        model.max_silence_ms = None

    def rate(self, status: Status) -> float | None:
        """Rise over the window in fractions of set pressure per minute (None: not enough history,
        or the reading itself is invalid)."""
        ts = status["ts"]
        if status["pressure"] < INVALID_BELOW_MPA:
            return None
        ref = None
        for t, p in reversed(self._hist):
            if t <= ts - RATE_WINDOW_MS:
                ref = (t, p)
                break
        if ref is None:
            return None
        sp = self.device.vessel.set_pressure  # type: ignore[union-attr]
        return (status["pressure"] - ref[1]) / (ts - ref[0]) * 60_000 / sp

    def holds(self, status: Status) -> bool:
        """Rising faster than 5 % of set pressure per minute."""
        r = self.rate(status)
        return r is not None and r > RATE_LIMIT

    def seen(self, channel: str, payload: Status) -> None:
        """Keep 3 minutes of published (valid) pressures."""
        if channel != "status" or payload["pressure"] < INVALID_BELOW_MPA:
            return
        self._hist.append((payload["ts"], payload["pressure"]))
        while len(self._hist) > 2 and self._hist[1][0] <= payload["ts"] - 180_000:
            self._hist.popleft()
        if self.started:
            r = self.rate(payload)
            if r is not None and r > self.details.get("max_rate_per_min", 0.0):
                self.details["max_rate_per_min"] = round(r, 4)


@fault_type
class GlitchThenSurge(PressureSurge):
    """A sensor glitch before a rise: the pressure reads −0.08 MPa for 10 s, recovers, and 20 s
    later the surge of ``pressure_surge`` begins. The invalid reading raises
    ``sensor_out_of_range`` (implied) and must not become the reference of the rise rate: the
    rise-rate alarm is due from the real rise only."""

    name = "glitch_surge"
    implied = ("sensor_out_of_range",)
    GLITCH_MPA, GLITCH_MS, RECOVER_MS = -0.08, 10_000, 20_000

    def start(self, model: Vessel) -> None:
        """Glitch, recover, then ease down, hold, surge, hold."""
        now = model.reading("pressure")
        assert now is not None
        rate = self.args["rate"] / 100 / 60_000
        glitch = self.GLITCH_MPA / model.set_pressure
        segs = [
            Segment(glitch, float("inf"), self.GLITCH_MS),
            Segment(now, float("inf"), self.RECOVER_MS),
            Segment(self.LOW, self.EASE, 30_000),
            Segment(self.HIGH, rate),
        ]
        model.override("pressure", segs, jitter=0.001)
        model.max_silence_ms = self.REPORT_MS


@fault_type
class PressureAtLimit(Fault):
    """Exact-threshold readings: the pressure eases (4 % of set per minute, under the rise-rate
    limit) to exactly the maximum working pressure and holds it without noise for 60 s — normal
    operation, the major rung is *above* it — then (``at=set``, the default) steps to exactly the
    set pressure and holds it: critical, "≥ set pressure" (the step is steep: ``pressure_rise_rate``
    is implied). ``at=max_working`` stays on the maximum: no alarm expected."""

    name = "pressure_at_limit"
    kinds = _VESSEL
    alarm_type = "overpressure"
    severity = "critical"
    implied = ("pressure_rise_rate",)
    default_duration_ms = 360_000
    min_duration_ms = 240_000
    settle_ms = 30_000
    params: ClassVar[dict[str, Param]] = {
        "at": Param(_choice("max_working", "set"), "set", "the threshold the reading ends on")
    }
    EASE = 0.04 / 60_000
    HOLD_MS = 60_000

    @property
    def expected_alarm_type(self) -> str:
        """At the maximum working pressure the vessel is in normal operation."""
        return "" if self.args["at"] == "max_working" else self.alarm_type

    def start(self, model: Vessel) -> None:
        """Ease to the maximum working pressure, hold it exactly; then step to the set pressure."""
        v = self.device.vessel
        assert v is not None
        segs = [Segment(v.working_pressure / v.set_pressure, self.EASE, self.HOLD_MS)]
        if self.args["at"] == "set":
            segs.append(Segment(1.0, float("inf")))
        model.override("pressure", segs, jitter=0.0)
        model.max_silence_ms = PressureSurge.REPORT_MS
        self.details.update(max_working_pressure=v.working_pressure, set_pressure=v.set_pressure)

    def stop(self, model: Vessel) -> None:
        """Back to normal within 10 s."""
        model.release("pressure", within_ms=10_000)
        model.max_silence_ms = None

    def holds(self, status: Status) -> bool:
        """At or above the set pressure (``at=set``)."""
        return status["pressure"] >= self.device.vessel.set_pressure  # type: ignore[union-attr]


class _Level(Fault):
    kinds = _VESSEL
    needs = "liquefied"
    alarm_type = "level_out_of_band"
    severity = "major"
    default_duration_ms = 180_000
    settle_ms = 60_000
    TARGET: ClassVar[float]
    RATE = 2.0 / 1000  # % per ms

    def start(self, model: Vessel) -> None:
        """Level runs to the target (2 %/s) and stays."""
        model.override("level", [Segment(self.TARGET, self.RATE)], jitter=0.5)

    def stop(self, model: Vessel) -> None:
        """Back into the normal band."""
        model.release("level", rate=self.RATE)


@fault_type
class LevelHigh(_Level):
    """Liquid level rises to ≈ 92 % (> 85 %), then back into the normal band (liquefied gas)."""

    name = "level_high"
    TARGET = 92.0

    def holds(self, status: Status) -> bool:
        """Above 85 %."""
        return status["level"] is not None and status["level"] > 85.0


@fault_type
class LevelLow(_Level):
    """Liquid level falls to ≈ 5 % (< 10 %), then back into the normal band (liquefied gas)."""

    name = "level_low"
    TARGET = 5.0

    def holds(self, status: Status) -> bool:
        """Below 10 %."""
        return status["level"] is not None and status["level"] < 10.0


def _peak(lo: float, hi: float) -> Callable[[str], float]:
    inner = _number(lo, hi)

    def parse(v: str) -> float:
        x = inner(v)
        if 48.0 <= x < 53.0:
            # With ±2 % LEL of noise the reading would wander across the 50 % critical line.
            raise ValueError("a peak in [48, 53) is ambiguous between major and critical; pick ≤ 47 or ≥ 53")
        return x

    return parse


class _Gas(Fault):
    kinds = _VESSEL
    needs = "flammable"
    alarm_type = "gas_leak"
    default_duration_ms = 120_000
    settle_ms = 30_000
    JITTER = 2.0

    @property
    def expected_severity(self) -> str:
        """Critical if the peak stays ≥ 50 % LEL."""
        return "critical" if self.args["peak"] - self.JITTER >= 50.0 else "major"

    def start(self, model: Vessel) -> None:
        """Gas reading climbs to the peak within 10 s and stays."""
        peak = self.args["peak"]
        model.override("gas_lel", [Segment(peak, peak / 10_000)], jitter=self.JITTER)

    def stop(self, model: Vessel) -> None:
        """Leak stopped: back under 5 % LEL within 20 s."""
        model.release("gas_lel", within_ms=20_000)

    def holds(self, status: Status) -> bool:
        """At or above the first alarm level, 25 % LEL."""
        return status["gas_lel"] is not None and status["gas_lel"] >= 25.0

    def seen(self, channel: str, payload: Status) -> None:
        """Note when the second alarm level (50 % LEL) shows."""
        if (
            self.started
            and channel == "status"
            and "critical_onset_ts" not in self.details
            and payload["gas_lel"] is not None
            and payload["gas_lel"] >= 50.0
        ):
            self.details["critical_onset_ts"] = payload["ts"]


@fault_type
class GasLeak(_Gas):
    """Combustible gas near the vessel rises to ``peak`` (default 35 % LEL: major, ≥ 25), then clears."""

    name = "gas_leak"
    severity = "major"
    params: ClassVar[dict[str, Param]] = {"peak": Param(_peak(28.0, 100.0), 35.0, "% LEL")}


@fault_type
class GasAtThreshold(_Gas):
    """An exact-threshold reading: combustible gas climbs to exactly 25.0 % LEL — the first alarm
    level, "≥ 25 % LEL" (GB/T 50493-2019) — and holds it without noise: major."""

    name = "gas_at_threshold"
    severity = "major"
    JITTER = 0.0
    params: ClassVar[dict[str, Param]] = {"peak": Param(_number(25.0, 25.0), 25.0, "% LEL (exactly the first level)")}


@fault_type
class GasLeakSevere(_Gas):
    """As ``gas_leak`` with ``peak`` default 60 % LEL: critical (≥ 50); ``critical_onset_ts`` in details."""

    name = "gas_leak_severe"
    severity = "critical"
    params: ClassVar[dict[str, Param]] = {"peak": Param(_peak(53.0, 100.0), 60.0, "% LEL")}


@fault_type
class SensorStuck(Fault):
    """The pressure transmitter freezes: the same published value for the duration (≥ 31 min).

    Temperature keeps moving. ``onset_ts`` is the first frozen sample; the alarm is due 30 min
    later. At the end the reading eases back to the live value at 1 % of set pressure per minute.
    """

    name = "sensor_stuck"
    kinds = _VESSEL
    alarm_type = "sensor_stuck"
    severity = "minor"
    default_duration_ms = 40 * 60_000
    min_duration_ms = 31 * 60_000
    settle_ms = 200_000

    def __init__(self, spec: FaultSpec, device: DeviceSpec) -> None:
        super().__init__(spec, device)
        self.frozen: float | None = None

    def start(self, model: Vessel) -> None:
        """Freeze the pressure reading where it is."""
        model.override("pressure", [], jitter=0.0)
        self.frozen = round(model.pressure, 4)
        self.details["frozen_pressure"] = self.frozen

    def stop(self, model: Vessel) -> None:
        """Unfreeze."""
        model.release("pressure", rate=0.01 / 60_000)

    def holds(self, status: Status) -> bool:
        """The published pressure is the frozen value."""
        return self.frozen is not None and status["pressure"] == self.frozen


@fault_type
class SensorOutOfRange(Fault):
    """The pressure transmitter breaks: readings ≈ −0.05 MPa (under range) until the end, then live again."""

    name = "sensor_out_of_range"
    kinds = _VESSEL
    alarm_type = "sensor_out_of_range"
    severity = "minor"
    # The reading jumps back from −0.05 MPa to the live value: a rate rule that does not skip
    # out-of-range samples sees a steep rise.
    implied = ("pressure_rise_rate",)
    default_duration_ms = 120_000
    settle_ms = 5_000
    VALUE_MPA = -0.05

    def start(self, model: Vessel) -> None:
        """Break the transmitter."""
        sp = model.set_pressure
        model.override("pressure", [], start=self.VALUE_MPA / sp, jitter=0.002 / sp)

    def stop(self, model: Vessel) -> None:
        """Transmitter replaced: live reading at once."""
        model.release("pressure")

    def holds(self, status: Status) -> bool:
        """Below zero gauge pressure."""
        return status["pressure"] < 0.0


# -------------------------------------------------------------------------------- parsing
def parse_duration_ms(text: str, what: str = "time") -> int:
    """``30s`` / ``2m`` / ``1h`` / ``500ms`` / ``12`` (seconds) -> milliseconds."""
    m = _TIME_RE.match(text.strip())
    if not m:
        raise ValueError(f"bad {what} {text!r}: use a number with ms, s, m or h (e.g. 30s, 1.5m, 500ms)")
    return round(float(m["num"]) * _UNIT_MS[m["unit"]])


def parse_fault_spec(text: str, fleet: Fleet | None = None) -> FaultSpec:
    """Parse ``TYPE:DEVICE@ONSET[+DURATION][,KEY=VALUE…]``; with a fleet, also check the device."""
    raw = text.strip()
    head, *opts = raw.split(",")
    m = _SPEC_RE.match(head)
    if not m:
        raise ValueError(
            f"bad fault spec {text!r}: expected TYPE:DEVICE@ONSET[+DURATION][,KEY=VALUE…], e.g. "
            "trapped:E000003@30s or overpressure:V000002@40s+20s"
        )
    name = m["type"]
    cls = FAULT_TYPES.get(name)
    if cls is None:
        raise ValueError(f"fault spec {text!r}: unknown fault type {name!r} (known: {', '.join(sorted(FAULT_TYPES))})")
    try:
        onset = parse_duration_ms(m["onset"], "onset")
        duration = parse_duration_ms(m["dur"], "duration") if m["dur"] is not None else cls.default_duration_ms
    except ValueError as e:
        raise ValueError(f"fault spec {text!r}: {e}") from None
    if duration < cls.min_duration_ms:
        raise ValueError(f"fault spec {text!r}: duration must be at least {cls.min_duration_ms / 1000:g}s")
    params: list[tuple[str, str]] = []
    for opt in opts:
        key, eq, value = opt.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or key not in cls.params:
            known = ", ".join(sorted(cls.params)) or "none"
            raise ValueError(f"fault spec {text!r}: unknown option {opt!r} for {name} (options: {known})")
        try:
            cls.params[key].parse(value)
        except ValueError as e:
            raise ValueError(f"fault spec {text!r}: option {key}={value}: {e}") from None
        params.append((key, value))
    device_id = m["device"]
    if fleet is not None:
        device = fleet.by_id.get(device_id)
        if device is None:
            raise ValueError(f"fault spec {text!r}: device {device_id} is not in the fleet ({_fleet_range(fleet)})")
        problem = cls.check_device(device) or cls.check_duration(device, duration)
        if problem:
            raise ValueError(f"fault spec {text!r}: {problem}")
    return FaultSpec(name, device_id, onset, duration, raw, tuple(params))


def gap_after_ms(spec: FaultSpec) -> int:
    """How long after ``spec`` ends the next fault on the same device may begin."""
    return MIN_GAP_MS + FAULT_TYPES[spec.fault].settle_ms


def overlaps(a: FaultSpec, b: FaultSpec) -> bool:
    """Do two faults on one device come too close (each needs its settle time and ``MIN_GAP_MS``)?"""
    return a.onset_ms < b.end_ms + gap_after_ms(b) and b.onset_ms < a.end_ms + gap_after_ms(a)


def parse_fault_specs(texts: Iterable[str], fleet: Fleet | None = None) -> list[FaultSpec]:
    """Parse several specs; faults on one device must not overlap (see :func:`overlaps`)."""
    specs = sorted((parse_fault_spec(t, fleet) for t in texts), key=lambda s: (s.device_id, s.onset_ms))
    check_no_overlap(specs)
    return sorted(specs, key=lambda s: (s.onset_ms, s.device_id))


def check_no_overlap(specs: Iterable[FaultSpec]) -> None:
    """Raise ``ValueError`` if two faults on one device overlap."""
    ordered = sorted(specs, key=lambda s: (s.device_id, s.onset_ms))
    for a, b in itertools.pairwise(ordered):
        if a.device_id == b.device_id and overlaps(a, b):
            raise ValueError(
                f"fault specs {a.text!r} and {b.text!r} overlap: faults on one device need "
                f"{gap_after_ms(a) / 1000:g}s between the end of one and the onset of the next"
            )


def make_fault(spec: FaultSpec, fleet: Fleet) -> Fault:
    """Instantiate the fault type of a parsed spec for its device."""
    return FAULT_TYPES[spec.fault](spec, fleet.by_id[spec.device_id])


def _fleet_range(fleet: Fleet) -> str:
    parts = []
    for kind in ("elevator", "vessel"):
        ids = fleet.ids_of(kind)
        if ids:
            parts.append(f"{kind}s {ids[0]}..{ids[-1]}" if len(ids) > 1 else f"{kind} {ids[0]}")
    return ", ".join(parts) or "the fleet is empty"
