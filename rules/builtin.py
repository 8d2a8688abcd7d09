"""The first built-in rules: trapped passenger (elevator) and overpressure (vessel).

Thresholds and durations come from shared/domain.md §4.3 and §5; where no public rule fixes
a value it is a design choice, marked so here and in docs/rules.md.
"""

from __future__ import annotations

from semon.contract.messages import DoorState, ElevatorStatus, ServiceMode, VesselStatus
from semon.rules.base import HOLD, Check, Rule, RuleSpec, Severity, Verdict
from semon.store.registry import DeviceInfo

# Below this the car counts as stopped (m/s); encoders jitter around zero.
STOPPED_SPEED = 0.05


class TrappedPassenger(Rule):
    """困人: stopped, doors closed, passenger present for ≥ 20 s (domain.md §4.3)."""

    spec = RuleSpec(
        id="elevator.trapped_passenger",
        kind="elevator",
        alarm_type="trapped_passenger",
        severity=Severity.critical,
        trigger_for_ms=20_000,
        explain="Passenger trapped in {device}: car stopped {where} at floor {floor}, doors closed",
    )

    def check(self, s: ElevatorStatus, device: DeviceInfo) -> Check:
        """Trigger while the car holds a passenger behind closed doors without moving."""
        if s.mode is not ServiceMode.normal:
            # Inspection / fire service: a technician or firefighter is in control.
            return Check(Verdict.CLEAR)
        stopped = not s.running and s.speed < STOPPED_SPEED
        if stopped and s.door is DoorState.closed and s.occupied:
            where = "at a landing" if s.door_zone else "outside the door zone"
            return Check(Verdict.TRIGGER, {"where": where, "floor": s.floor, "door_zone": s.door_zone})
        return Check(Verdict.CLEAR)


class Overpressure(Rule):
    """Pressure at or above the safety-valve set pressure (domain.md §5, design choice)."""

    # Clear only once pressure is back below 95 % of set pressure (design choice): a vessel
    # hovering at the set point must not raise and clear an alarm on every sample.
    CLEAR_RATIO = 0.95

    spec = RuleSpec(
        id="vessel.overpressure",
        kind="vessel",
        alarm_type="overpressure",
        severity=Severity.critical,
        clear_for_ms=2_000,
        explain="Overpressure on {device}: {pressure:.3f} MPa ≥ set pressure {set_pressure:.3f} MPa",
    )

    def check(self, s: VesselStatus, device: DeviceInfo) -> Check:
        """Trigger at ≥ set pressure; clear below 95 % of it; hold in between."""
        sp = device.set_pressure
        if not sp:
            return HOLD
        if s.pressure >= sp:
            return Check(Verdict.TRIGGER, {"pressure": s.pressure, "set_pressure": sp})
        if s.pressure < self.CLEAR_RATIO * sp:
            return Check(Verdict.CLEAR, {"pressure": s.pressure, "set_pressure": sp})
        return HOLD


def builtin_rules() -> list[Rule]:
    """Every rule semon ships, in evaluation order."""
    return [TrappedPassenger(), Overpressure()]
