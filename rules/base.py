"""Shared vocabulary of the rule engine: severities, rule identity, alarm transitions.

Rules themselves are data (rules/data/catalog.toml, compiled by ``semon.rules.catalog``);
everything time-related — durations, hysteresis, minimum clear time, repetition, event-time
ordering, timers — is the engine's job, the same for every rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from semon.domain import DeviceInfo


class Severity(StrEnum):
    """Alarm severities, highest first (the same ladder as ThingsBoard's alarm severities)."""

    critical = "critical"
    major = "major"
    minor = "minor"
    warning = "warning"


SEVERITY_RANK = {Severity.critical: 0, Severity.major: 1, Severity.minor: 2, Severity.warning: 3}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """Identity of a rule: what alarm it raises for which equipment kind."""

    id: str
    kind: str
    alarm_type: str
    severity: Severity
    trigger_for_ms: int = 0
    clear_for_ms: int = 0
    explain: str = ""


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """The engine's output: an alarm begins, changes severity or ends (device time in ms)."""

    event: str  # "raised" | "severity_changed" | "cleared"
    rule: RuleSpec
    device: DeviceInfo
    onset_ts: int
    ts: int
    message: str
    details: dict[str, Any]
    severity: Severity
