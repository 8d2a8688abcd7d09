"""``/devices``: the equipment registry and each device's telemetry."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy import Select, inspect, or_, select

from semon.api.auth import AccessDep
from semon.api.deps import Limit, Offset, TelemetryDep
from semon.api.listing import page, parse_sort, sort_query
from semon.api.openapi import problem_responses
from semon.api.problems import ProblemException, invalid_parameter, not_found
from semon.api.schemas import DeviceOut, DevicePage, LatestOut, TelemetryOut
from semon.store.access import Access
from semon.store.models import Device, Firm, UseUnit
from semon.store.seq_state import gaps_by_device
from semon.store.telemetry import STATUS_MEASUREMENT, FieldValue
from semon.timeutil import TimeParseError, ms_to_iso, now_ms, parse_time

router = APIRouter(prefix="/devices", tags=["devices"])

DEFAULT_WINDOW_MS = int(timedelta(hours=1) / timedelta(milliseconds=1))
MAX_POINTS = 50_000
_DEVICE_COLUMNS = tuple(a.key for a in inspect(Device).column_attrs)
_SORTABLE = {
    "id": Device.id,
    "equipment_code": Device.equipment_code,
    "kind": Device.kind,
    "district": Device.district,
    "address": Device.address,
    "firm_id": Device.firm_id,
    "use_unit_id": Device.use_unit_id,
    "install_date": Device.install_date,
}
DeviceId = Annotated[str, Path(description="registry id of the device", examples=["EL-0001"])]


def _registry_query(access: Access) -> Select[Device, str | None, str | None]:
    # Scoped by the data-access layer: other tenants' devices are simply not in the result.
    return access.scoped(
        select(Device, Firm.name, UseUnit.name)
        .outerjoin(Firm, Device.firm_id == Firm.id)
        .outerjoin(UseUnit, Device.use_unit_id == UseUnit.id),
        Device.id,
    )


def _device_out(device: Device, firm_name: str | None, use_unit_name: str | None) -> DeviceOut:
    data = {k: getattr(device, k) for k in _DEVICE_COLUMNS}
    data.update(firm_name=firm_name, use_unit_name=use_unit_name)
    return DeviceOut.model_validate(data)


def _status_measurement(device: Device) -> str:
    measurement = STATUS_MEASUREMENT.get(device.kind)
    if measurement is None:
        raise ProblemException(
            404, f"devices of kind {device.kind!r} have no status telemetry",
            slug="no-telemetry", title="No telemetry",
        )
    return measurement


def _values(row: dict[str, FieldValue]) -> dict[str, FieldValue]:
    # InfluxDB fills fields a row lacks with null; drop them so both stores answer alike.
    return {k: v for k, v in row.items() if v is not None and k not in ("time", "device_id")}


@router.get(
    "", response_model=DevicePage, summary="List registered devices", responses=problem_responses()
)
def list_devices(
    access: AccessDep,
    kind: Annotated[
        str | None, Query(description="elevator | vessel", examples=["elevator"])
    ] = None,
    district: Annotated[
        str | None, Query(description="exact district", examples=["Futian"])
    ] = None,
    firm_id: Annotated[str | None, Query(description="maintenance firm id")] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=100,
            description="case-insensitive substring of id, equipment code or address",
        ),
    ] = None,
    sort: Annotated[str, sort_query(_SORTABLE, ["id", "-district,id"])] = "id",
    limit: Limit = 100,
    offset: Offset = 0,
) -> DevicePage:
    """Registry records matching every given filter, with firm and use-unit names."""
    order = parse_sort(sort, _SORTABLE, Device.id.asc())
    stmt = _registry_query(access)
    if kind is not None:
        stmt = stmt.where(Device.kind == kind)
    if district is not None:
        stmt = stmt.where(Device.district == district)
    if firm_id is not None:
        stmt = stmt.where(Device.firm_id == firm_id)
    if q:
        stmt = stmt.where(
            or_(
                Device.id.icontains(q, autoescape=True),
                Device.equipment_code.icontains(q, autoescape=True),
                Device.address.icontains(q, autoescape=True),
            )
        )
    total, rows = page(access.s, stmt, order, limit, offset)
    items = [_device_out(*row) for row in rows]
    return DevicePage(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/{device_id}",
    response_model=DeviceOut,
    summary="One device",
    responses=problem_responses({404: "unknown device"}),
)
def get_device(access: AccessDep, device_id: DeviceId) -> DeviceOut:
    """Registry record of a device, including firm and use-unit names."""
    row = access.s.execute(_registry_query(access).where(Device.id == device_id)).first()
    if row is None:
        raise not_found("device", device_id)
    out = _device_out(*row)
    out.seq_gaps = gaps_by_device(access.s, [device_id]).get(device_id, 0)
    return out


@router.get(
    "/{device_id}/latest",
    response_model=LatestOut,
    summary="Newest status of a device",
    responses=problem_responses({404: "unknown device, or no status yet"}),
)
def get_latest(access: AccessDep, telemetry: TelemetryDep, device_id: DeviceId) -> LatestOut:
    """Newest ``elevator_status`` / ``vessel_status`` row (by device time) of the device."""
    device = access.device(device_id)
    kind = device.kind
    measurement = _status_measurement(device)
    row = telemetry.latest(measurement, device_id)
    if row is None:
        raise ProblemException(
            404, f"device {device_id!r} has not reported any status yet",
            slug="no-telemetry", title="No telemetry",
        )
    t = int(row["time"])
    return LatestOut(
        device_id=device_id, kind=kind, time=t, time_iso=ms_to_iso(t), values=_values(row)
    )


def _time_param(name: str, value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return parse_time(value)
    except TimeParseError as e:
        raise invalid_parameter(name, str(e)) from None


@router.get(
    "/{device_id}/telemetry",
    response_model=TelemetryOut,
    summary="Status history of a device",
    responses=problem_responses({404: "unknown device"}),
)
def get_telemetry(
    access: AccessDep,
    telemetry: TelemetryDep,
    device_id: DeviceId,
    start: Annotated[
        str | None,
        Query(description="inclusive; ISO-8601 or epoch ms (default: end − 1 h)",
              examples=["2024-05-01T07:00:00Z", "1714546800000"]),
    ] = None,
    end: Annotated[
        str | None,
        Query(description="exclusive; ISO-8601 or epoch ms (default: now)",
              examples=["2024-05-01T08:00:00Z"]),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS, description="most rows returned")] = 10_000,
) -> TelemetryOut:
    """Status rows in ``[start, end)``, oldest first; ``truncated`` tells when limit cut it."""
    start_ms = _time_param("start", start)
    end_ms = _time_param("end", end)
    if end_ms is None:
        end_ms = now_ms()
    if start_ms is None:
        start_ms = end_ms - DEFAULT_WINDOW_MS
    if end_ms <= start_ms:
        raise invalid_parameter(
            "end", f"end ({ms_to_iso(end_ms)}) must be after start ({ms_to_iso(start_ms)})"
        )
    device = access.device(device_id)
    kind = device.kind
    measurement = _status_measurement(device)
    rows = telemetry.query(measurement, device_id, start_ms, end_ms, limit)
    points = [{"time": int(r["time"]), **_values(r)} for r in rows]
    return TelemetryOut(
        device_id=device_id,
        kind=kind,
        measurement=measurement,
        start=start_ms,
        end=end_ms,
        start_iso=ms_to_iso(start_ms),
        end_iso=ms_to_iso(end_ms),
        limit=limit,
        count=len(points),
        truncated=len(points) >= limit,
        points=points,
    )
