"""Pydantic response models of the API; their examples make the OpenAPI docs at /docs useful."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, computed_field

from semon.timeutil import as_utc, ms_to_iso

FieldValue = bool | int | float | str


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
# JSON columns default to {} but rows written by hand (or older code) may hold NULL.
JsonObject = Annotated[dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)]
TsMs = Annotated[int, Field(description="device time, epoch ms UTC", examples=[1714550400123])]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(from_attributes=True, json_schema_extra={"examples": list(examples)})


# --------------------------------------------------------------------------------- errors
class ProblemError(BaseModel):
    """One offending input of a validation problem."""

    loc: list[str | int] = Field(description="where: ['query', 'limit']")
    msg: str
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details, served as ``application/problem+json`` for every 4xx/5xx."""

    model_config = _examples(
        {
            "type": "urn:semon:problem:device-not-found",
            "title": "Unknown device",
            "status": 404,
            "detail": "device 'EL-9999' does not exist",
            "instance": "/devices/EL-9999",
        }
    )
    type: str = Field(description="URN naming the problem kind, or about:blank")
    title: str
    status: int
    detail: str
    instance: str = Field(description="path of the request that failed")
    errors: list[ProblemError] | None = Field(None, description="validation problems only")


# --------------------------------------------------------------------------------- health
class HealthOut(BaseModel):
    """Liveness/readiness of the API and the stores behind it."""

    model_config = _examples({"status": "ok", "version": "0.1.0", "db": True, "telemetry": True})
    status: Literal["ok", "degraded"] = Field(description="ok when every store answers")
    version: str
    db: bool = Field(description="relational database answered SELECT 1")
    telemetry: bool = Field(description="telemetry store answered its ping")
    pipeline: dict[str, Any] | None = Field(
        None,
        description="the pipeline canary (absent when disabled): ok, reason, seconds since each collector's last echo",
    )


# -------------------------------------------------------------------------------- paging
class PageMeta(BaseModel):
    """Pagination envelope shared by every list endpoint."""

    total: int = Field(description="rows matching the filters, ignoring limit/offset")
    limit: int
    offset: int


# -------------------------------------------------------------------------------- devices
_DEVICE_EXAMPLE: dict[str, Any] = {
    "id": "EL-0001",
    "equipment_code": "31104403002019070001",
    "kind": "elevator",
    "district": "Futian",
    "address": "1 Shennan Rd, Tower A, car 1",
    "lat": 22.5431,
    "lon": 114.0579,
    "firm_id": "F-001",
    "firm_name": "Xinda Elevator Maintenance Co.",
    "use_unit_id": "U-001",
    "use_unit_name": "Tower A Property Management",
    "install_date": "2019-07-01",
    "rated_speed": 1.75,
    "floors": 24,
    "bottom_floor": -2,
    "design_pressure": None,
    "set_pressure": None,
    "design_temperature": None,
    "medium": None,
    "attributes": {"brand": "KONE"},
}


class DeviceOut(BaseModel):
    """A registered device with the names of its maintenance firm and use unit."""

    model_config = _examples(_DEVICE_EXAMPLE)
    id: str
    equipment_code: str | None = Field(description="national equipment registration code")
    kind: str = Field(description="elevator | vessel")
    district: str | None
    address: str | None
    lat: float | None
    lon: float | None
    firm_id: str | None = Field(description="maintenance firm (维保单位)")
    firm_name: str | None
    use_unit_id: str | None = Field(description="use unit / owner (使用单位)")
    use_unit_name: str | None
    install_date: date | None
    rated_speed: float | None = Field(description="elevator, m/s")
    floors: int | None = Field(description="elevator")
    bottom_floor: int | None = Field(description="elevator")
    design_pressure: float | None = Field(description="vessel, MPa")
    set_pressure: float | None = Field(description="vessel safety-valve set pressure, MPa")
    design_temperature: float | None = Field(description="vessel, °C")
    medium: str | None = Field(description="vessel")
    attributes: JsonObject = Field(default_factory=dict)
    seq_gaps: int | None = Field(
        None,
        description="messages the device sent that never arrived (gaps in its seq, docs/protocol.md); "
        "0 once heard from; only in the one-device view, null in lists",
    )


class DevicePage(PageMeta):
    """One page of devices."""

    model_config = _examples({"items": [_DEVICE_EXAMPLE], "total": 1, "limit": 100, "offset": 0})
    items: list[DeviceOut]


# ------------------------------------------------------------------------------ telemetry
class LatestOut(BaseModel):
    """Newest status row of a device."""

    model_config = _examples(
        {
            "device_id": "EL-0001",
            "kind": "elevator",
            "time": 1714550400123,
            "time_iso": "2024-05-01T08:00:00.123Z",
            "values": {"mode": "normal", "running": True, "floor": 7, "speed": 1.6, "load": 420.0},
        }
    )
    device_id: str
    kind: str
    time: TsMs
    time_iso: str
    values: dict[str, FieldValue] = Field(description="fields (and tags) of the status row")


class TelemetryOut(BaseModel):
    """Status rows of a device in ``[start, end)``, oldest first."""

    model_config = _examples(
        {
            "device_id": "V-0001",
            "kind": "vessel",
            "measurement": "vessel_status",
            "start": 1714546800000,
            "end": 1714550400000,
            "start_iso": "2024-05-01T07:00:00.000Z",
            "end_iso": "2024-05-01T08:00:00.000Z",
            "limit": 10000,
            "count": 2,
            "truncated": False,
            "points": [
                {"time": 1714546800500, "pressure": 0.81, "temperature": 24.5},
                {"time": 1714546860500, "pressure": 0.83, "temperature": 24.6},
            ],
        }
    )
    device_id: str
    kind: str
    measurement: str
    start: int = Field(description="inclusive, epoch ms")
    end: int = Field(description="exclusive, epoch ms")
    start_iso: str
    end_iso: str
    limit: int
    count: int
    truncated: bool = Field(description="true when limit cut the range short; page with start")
    points: list[dict[str, FieldValue]] = Field(description="each with 'time' (ms) and fields")


# --------------------------------------------------------------------------------- alarms
_ALARM_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "device_id": "EL-0001",
    "kind": "elevator",
    "firm_id": "F-001",
    "type": "trapped_passenger",
    "rule_id": "EL-TRAP-01",
    "severity": "critical",
    "active": True,
    "acknowledged": False,
    "onset_ts": 1714550280000,
    "start_ts": 1714550400123,
    "end_ts": None,
    "ack_ts": None,
    "start_iso": "2024-05-01T08:00:00.123Z",
    "end_iso": None,
    "message": "car stopped outside door zone with passenger for 120 s",
    "details": {"floor": 7, "door_zone": False},
    "created_at": "2024-05-01T08:00:00.456000Z",
    "updated_at": "2024-05-01T08:00:00.456000Z",
}


class AlarmOut(BaseModel):
    """An alarm; times ``*_ts`` are device time in epoch ms."""

    model_config = _examples(_ALARM_EXAMPLE)
    id: int
    device_id: str
    kind: str
    firm_id: str | None
    type: str
    rule_id: str
    severity: str
    active: bool
    acknowledged: bool
    onset_ts: int = Field(description="device time the condition began, ms")
    start_ts: int = Field(description="device time the alarm was raised, ms")
    end_ts: int | None = Field(description="device time the alarm cleared, ms")
    ack_ts: int | None = Field(None, description="time the alarm was acknowledged, ms")
    acked_by: str | None = Field(None, description="who acknowledged it")
    cleared_by: str | None = Field(None, description="'rules' (condition ended) or the operator who cleared it")
    assignee: str | None = Field(None, description="who is working on it")
    raw_code: int | None = Field(None, description="the terminal's own code, when a code table raised it")
    code_scheme: str | None = Field(None, description="the code table (gbt24476, …)")
    message: str
    details: JsonObject
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def start_iso(self) -> str:
        """``start_ts`` as ISO-8601 UTC."""
        return ms_to_iso(self.start_ts)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def end_iso(self) -> str | None:
        """``end_ts`` as ISO-8601 UTC, null while active."""
        return None if self.end_ts is None else ms_to_iso(self.end_ts)


class AlarmEventOut(BaseModel):
    """One transition of an alarm (raised, escalated, cleared, acknowledged…)."""

    model_config = _examples(
        {
            "id": 101,
            "event": "raised",
            "ts": 1714550400123,
            "ts_iso": "2024-05-01T08:00:00.123Z",
            "at": "2024-05-01T08:00:00.456000Z",
            "severity": "critical",
            "actor": "rules",
            "details": {},
        }
    )
    id: int
    event: str
    ts: int = Field(description="device time the transition refers to, ms")
    at: UtcDatetime = Field(description="wall time it was recorded")
    severity: str
    actor: str
    details: JsonObject

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ts_iso(self) -> str:
        """``ts`` as ISO-8601 UTC."""
        return ms_to_iso(self.ts)


class AlarmDetailOut(AlarmOut):
    """An alarm with its transitions in the order they happened."""

    model_config = _examples(
        {
            **_ALARM_EXAMPLE,
            "events": [
                {
                    "id": 101,
                    "event": "raised",
                    "ts": 1714550400123,
                    "ts_iso": "2024-05-01T08:00:00.123Z",
                    "at": "2024-05-01T08:00:00.456000Z",
                    "severity": "critical",
                    "actor": "rules",
                    "details": {},
                }
            ],
        }
    )
    events: list[AlarmEventOut]


class AlarmPage(PageMeta):
    """One page of alarms."""

    model_config = _examples({"items": [_ALARM_EXAMPLE], "total": 1, "limit": 100, "offset": 0})
    items: list[AlarmOut]


# --------------------------------------------------------------------------- dead letters
_DEAD_LETTER_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "received_at": "2024-05-01T08:00:01.002000Z",
    "topic": "semon/v1/elevator/EL-0001/status",
    "reason": "schema",
    "detail": "floor: Input should be less than or equal to 300",
    "device_id": "EL-0001",
    "payload": '{"ts":1714550400123,"seq":9,"floor":999}',
    "payload_size": 40,
    "payload_truncated": False,
}


class DeadLetterOut(BaseModel):
    """A rejected inbound message; ``payload`` is UTF-8 text (invalid bytes replaced), ≤ 2 KiB."""

    model_config = _examples(_DEAD_LETTER_EXAMPLE)
    id: int
    received_at: UtcDatetime
    topic: str
    reason: str
    detail: str
    device_id: str | None
    payload: str
    payload_size: int = Field(description="size of the original payload, bytes")
    payload_truncated: bool = Field(description="payload text shows only the first 2 KiB")


class DeadLetterPage(PageMeta):
    """One page of dead letters, newest first."""

    model_config = _examples(
        {"items": [_DEAD_LETTER_EXAMPLE], "total": 1, "limit": 100, "offset": 0}
    )
    items: list[DeadLetterOut]


class ReasonCount(BaseModel):
    """Dead letters of one reason."""

    reason: str
    count: int
    last_received_at: UtcDatetime | None


class DeadLetterSummary(BaseModel):
    """Dead-letter counts by reason, most frequent first."""

    model_config = _examples(
        {
            "total": 12,
            "by_reason": [
                {"reason": "schema", "count": 9, "last_received_at": "2024-05-01T08:00:01.002Z"},
                {"reason": "unknown_device", "count": 3,
                 "last_received_at": "2024-05-01T07:59:12.410Z"},
            ],
        }
    )
    total: int
    by_reason: list[ReasonCount]


class AlarmAction(BaseModel):
    """An action on an alarm; it is recorded under the API key's name."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})
    actor: str | None = Field(
        None, min_length=1, max_length=64, description="ignored with an API key (its name is used); demo mode only"
    )


class AlarmClear(AlarmAction):
    """A manual clear, with an optional reason."""

    reason: str = Field("", max_length=500)


class AlarmComment(AlarmAction):
    """A comment on an alarm."""

    text: str = Field(min_length=1, max_length=2000)


class AlarmAssign(AlarmAction):
    """Assign (or, with ``assignee: null``, unassign) an alarm."""

    assignee: str | None = Field(max_length=64)
