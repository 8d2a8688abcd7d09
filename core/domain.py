"""Domain types every layer shares: what semon knows of a device, with no store, web or MQTT.

The bottom layer (docs/architecture.md): rules, stores, ingest and the API all import it;
it imports nothing of semon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Set pressure is 1.05–1.10 × working pressure (domain.md §5): with no maximum working pressure
# on record, the lowest ratio gives the highest working pressure the set pressure allows.
SET_TO_WORKING_RATIO = 1.05


def effective_max_working_pressure(max_working: float | None, set_pressure: float | None) -> float | None:
    """A vessel's maximum working pressure (MPa): the registry's, else set pressure / 1.05."""
    if max_working is not None or set_pressure is None:
        return max_working
    return set_pressure / SET_TO_WORKING_RATIO


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the collector needs to know about a device on the hot path."""

    id: str
    kind: str
    district: str
    firm_id: str
    rated_speed: float | None = None
    floors: int | None = None
    bottom_floor: int | None = None
    set_pressure: float | None = None
    design_temperature: float | None = None
    design_pressure: float | None = None
    attributes: dict[str, Any] | None = None
    max_working_pressure: float | None = None  # MPa; unknown → the rules use set / 1.05
