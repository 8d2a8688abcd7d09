"""The interface every semon rule implements, and the alarm transition it leads to.

A rule only *judges one status snapshot*: does it show the hazard (TRIGGER), show that it is
over (CLEAR), or sit in the hysteresis band between (HOLD)? Durations ("for ≥ 20 s"), minimum
clear times, event-time ordering and the alarm lifecycle are the engine's job, the same for
every rule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from semon.store.registry import DeviceInfo


class Severity(StrEnum):
    """Alarm severities, highest first (as ThingsBoard, see shared/lessons.md)."""

    critical = "critical"
    major = "major"
    minor = "minor"
    warning = "warning"


class Verdict(Enum):
    """What one snapshot says about a rule's condition."""

    TRIGGER = 1
    HOLD = 0
    CLEAR = -1


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """Identity and timing of a rule; thresholds live in the rule itself."""

    id: str
    kind: str
    alarm_type: str
    severity: Severity
    trigger_for_ms: int = 0
    clear_for_ms: int = 0
    explain: str = ""


@dataclass(slots=True)
class Check:
    """A verdict plus the facts behind it (they end up in the alarm's details)."""

    verdict: Verdict
    details: dict[str, Any] = field(default_factory=dict)


HOLD = Check(Verdict.HOLD)


class Rule(ABC):
    """A hazard condition over one device's status snapshots."""

    spec: RuleSpec

    @abstractmethod
    def check(self, status: Any, device: DeviceInfo) -> Check:
        """Judge one snapshot (already validated against the contract)."""

    def message(self, device: DeviceInfo, details: dict[str, Any]) -> str:
        """Human explanation of a raised alarm, from the spec's template."""
        return self.spec.explain.format(device=device.id, **details)


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """The engine's output: an alarm begins or ends for a device (device time in ms)."""

    event: str  # "raised" | "cleared"
    rule: RuleSpec
    device: DeviceInfo
    onset_ts: int
    ts: int
    message: str
    details: dict[str, Any]
