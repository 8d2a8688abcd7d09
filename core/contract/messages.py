"""Payload models of contract v1 (pydantic v2, strict: a wrong type is rejected, not coerced).

Fields follow docs/domain.md §4.1 (elevator status, GB/T 24476-2017 §9) and §5 (vessel).
Unknown extra fields are ignored so terminals can send more than we read.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Device time in ms since the epoch (UTC). 2000-01-01 .. 2100-01-01 catches seconds-vs-ms
# mix-ups and garbage; "too far in the future" is checked against the clock at ingest.
TsMs = Annotated[int, Field(ge=946_684_800_000, lt=4_102_444_800_000, description="device time, ms UTC")]
Seq = Annotated[int, Field(ge=0, lt=2**63, description="per-device message counter")]


class Kind(StrEnum):
    """Equipment kinds in contract v1."""

    elevator = "elevator"
    vessel = "vessel"


class ServiceMode(StrEnum):
    """Elevator service mode (domain.md §4.1)."""

    normal = "normal"
    inspection = "inspection"
    fire_return = "fire_return"
    firefighter = "firefighter"
    emergency_power = "emergency_power"
    earthquake = "earthquake"
    out_of_service = "out_of_service"
    unknown = "unknown"


class TravelDir(StrEnum):
    """Direction of travel."""

    stop = "stop"
    up = "up"
    down = "down"


class DoorState(StrEnum):
    """Car door state; ``closed`` means closed and locked."""

    closed = "closed"
    opening = "opening"
    open = "open"
    closing = "closing"


_STRICT = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)


class _Message(BaseModel):
    model_config = _STRICT
    ts: TsMs
    seq: Seq


class ElevatorStatus(_Message):
    """Elevator status snapshot, sent on change and as keep-alive."""

    mode: ServiceMode
    running: bool
    dir: TravelDir
    floor: int = Field(ge=-20, le=300)
    door_zone: bool = Field(description="car is levelled inside a door (unlocking) zone")
    door: DoorState
    occupied: bool = Field(description="passenger present in the car")
    speed: float = Field(ge=0, le=30, description="m/s, magnitude")
    load: float = Field(ge=0, le=100_000, description="kg")
    run_count: int = Field(ge=0)
    run_hours: float = Field(ge=0)
    alarm_button: bool = False
    faults: tuple[int, ...] = Field(default=(), max_length=64, description="active GB/T 24476 fault codes")


class VesselStatus(_Message):
    """Pressure-vessel status snapshot."""

    pressure: float = Field(ge=-0.1, le=200, description="MPa (gauge)")
    temperature: float = Field(ge=-273.15, le=2000, description="°C")
    level: float | None = Field(default=None, ge=0, le=100, description="liquid level %, liquefied gas only")
    valve_discharge: bool = False
    gas_lel: float | None = Field(default=None, ge=0, le=100, description="combustible gas, % LEL")


class DeviceEvent(_Message):
    """Discrete code reported by the terminal (GB/T 24476-2017 numbering unless ``scheme`` says)."""

    code: int = Field(ge=0, le=65535)
    scheme: str = Field(default="gbt24476", max_length=32)
    active: bool = Field(default=True, description="fault raised (true) or reset (false)")
    text: str | None = Field(default=None, max_length=256)


STATUS_MODELS: dict[str, type[_Message]] = {"elevator": ElevatorStatus, "vessel": VesselStatus}
