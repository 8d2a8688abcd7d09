"""Fault injection: the ``TYPE:DEVICE@ONSET[+DURATION]`` spec language and the fault types.

A fault type is one class registered with :func:`fault_type`: which equipment kind it applies
to, which alarm it should cause, what it does to the device model at its start and end, and
how to recognise the faulty condition in a published status (``holds``) so the ground truth
records when the condition is visible in the data, not merely when it was scheduled.

Onset and duration are device time since the simulation start; ``30s``, ``2m``, ``500ms``,
``1h`` (a bare number means seconds). The default duration is 40 s.
"""

from __future__ import annotations

import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from semon.simulators.elevator import Elevator
from semon.simulators.fleet import DeviceSpec, Fleet
from semon.simulators.vessel import Vessel

DEFAULT_DURATION_MS = 40_000
MIN_DURATION_MS = 2_000  # an overpressure ramp needs 2 s to reach the set pressure
# Two faults on one device must leave the car / vessel this long to settle in between, so
# each injected fault maps to exactly one alarm episode in the ground truth.
MIN_GAP_MS = 10_000
STOPPED_SPEED = 0.05  # m/s, as the trapped-passenger rule counts "stopped"

_SPEC_RE = re.compile(r"^(?P<type>[a-z_]+):(?P<device>[A-Za-z0-9_.\-]+)@(?P<onset>[^+]+)(?:\+(?P<dur>.+))?$")
_TIME_RE = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A parsed fault request: type, device, onset and duration (device ms since start)."""

    fault: str
    device_id: str
    onset_ms: int
    duration_ms: int
    text: str

    @property
    def end_ms(self) -> int:
        """End of the fault window, device ms since start."""
        return self.onset_ms + self.duration_ms


class Fault(ABC):
    """One injected fault on one device. Subclasses set the class attributes."""

    name: ClassVar[str]  # the TYPE in the spec
    kind: ClassVar[str]  # equipment kind it applies to
    alarm_type: ClassVar[str]  # alarm semon should raise (ground truth)

    def __init__(self, spec: FaultSpec, device: DeviceSpec) -> None:
        self.spec = spec
        self.device = device
        self.details: dict[str, Any] = {"spec": spec.text, "duration_ms": spec.duration_ms}

    @abstractmethod
    def start(self, model: Any) -> None:
        """Make the (already advanced) device model faulty."""

    @abstractmethod
    def stop(self, model: Any) -> None:
        """Let the device model return to normal operation."""

    @abstractmethod
    def holds(self, status: Mapping[str, Any]) -> bool:
        """Does a published status show the faulty condition?"""


FAULT_TYPES: dict[str, type[Fault]] = {}


def fault_type(cls: type[Fault]) -> type[Fault]:
    """Class decorator: make a fault type available to specs under ``cls.name``."""
    FAULT_TYPES[cls.name] = cls
    return cls


@fault_type
class TrappedPassenger(Fault):
    """困人: the car stops (between floors if travelling) with a passenger behind closed doors."""

    name = "trapped"
    kind = "elevator"
    alarm_type = "trapped_passenger"

    def start(self, model: Elevator) -> None:
        """Stop the car and keep the doors shut."""
        model.trap()
        self.details.update(floor=model.floor, door_zone=model.door_zone)

    def stop(self, model: Elevator) -> None:
        """Release the passenger (rescue drive to a landing if needed, doors open)."""
        model.release()

    def holds(self, status: Mapping[str, Any]) -> bool:
        """Stopped, doors closed, passenger present."""
        return (
            not status["running"]
            and status["speed"] < STOPPED_SPEED
            and status["door"] == "closed"
            and status["occupied"]
        )


@fault_type
class Overpressure(Fault):
    """Pressure ramps to ≈ 1.05 × set pressure within ≈ 2 s, holds, then ramps back."""

    name = "overpressure"
    kind = "vessel"
    alarm_type = "overpressure"
    PEAK_RATIO = 1.05
    RAMP_MS = 2000

    def start(self, model: Vessel) -> None:
        """Start the pressure excursion."""
        model.force_pressure(self.PEAK_RATIO, self.RAMP_MS)
        set_p = model.set_pressure
        self.details.update(set_pressure=set_p, peak_pressure=round(self.PEAK_RATIO * set_p, 4))

    def stop(self, model: Vessel) -> None:
        """Bring the pressure back to normal."""
        model.release_pressure(self.RAMP_MS)

    def holds(self, status: Mapping[str, Any]) -> bool:
        """At or above the safety-valve set pressure."""
        return status["pressure"] >= self.device.vessel.set_pressure  # type: ignore[union-attr]


def parse_duration_ms(text: str, what: str = "time") -> int:
    """``30s`` / ``2m`` / ``1h`` / ``500ms`` / ``12`` (seconds) -> milliseconds."""
    m = _TIME_RE.match(text.strip())
    if not m:
        raise ValueError(f"bad {what} {text!r}: use a number with ms, s, m or h (e.g. 30s, 1.5m, 500ms)")
    return round(float(m["num"]) * _UNIT_MS[m["unit"]])


def parse_fault_spec(text: str, fleet: Fleet | None = None) -> FaultSpec:
    """Parse ``TYPE:DEVICE@ONSET[+DURATION]``; with a fleet, also check the device and its kind."""
    raw = text.strip()
    m = _SPEC_RE.match(raw)
    if not m:
        raise ValueError(
            f"bad fault spec {text!r}: expected TYPE:DEVICE@ONSET[+DURATION], e.g. trapped:E000003@30s "
            "or overpressure:V000002@40s+20s"
        )
    name = m["type"]
    cls = FAULT_TYPES.get(name)
    if cls is None:
        raise ValueError(f"fault spec {text!r}: unknown fault type {name!r} (known: {', '.join(sorted(FAULT_TYPES))})")
    try:
        onset = parse_duration_ms(m["onset"], "onset")
        duration = parse_duration_ms(m["dur"], "duration") if m["dur"] is not None else DEFAULT_DURATION_MS
    except ValueError as e:
        raise ValueError(f"fault spec {text!r}: {e}") from None
    if duration < MIN_DURATION_MS:
        raise ValueError(f"fault spec {text!r}: duration must be at least {MIN_DURATION_MS // 1000}s")
    device_id = m["device"]
    if fleet is not None:
        device = fleet.by_id.get(device_id)
        if device is None:
            raise ValueError(f"fault spec {text!r}: device {device_id} is not in the fleet ({_fleet_range(fleet)})")
        if device.kind != cls.kind:
            raise ValueError(
                f"fault spec {text!r}: fault {name!r} applies to {cls.kind}s, but {device_id} is a {device.kind}"
            )
    return FaultSpec(name, device_id, onset, duration, raw)


def parse_fault_specs(texts: Iterable[str], fleet: Fleet | None = None) -> list[FaultSpec]:
    """Parse several specs; faults on one device must not overlap (``MIN_GAP_MS`` apart)."""
    specs = sorted((parse_fault_spec(t, fleet) for t in texts), key=lambda s: (s.device_id, s.onset_ms))
    for a, b in itertools.pairwise(specs):
        if a.device_id == b.device_id and b.onset_ms < a.end_ms + MIN_GAP_MS:
            raise ValueError(
                f"fault specs {a.text!r} and {b.text!r} overlap: faults on one device need "
                f"{MIN_GAP_MS // 1000}s between the end of one and the onset of the next"
            )
    return sorted(specs, key=lambda s: (s.onset_ms, s.device_id))


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
