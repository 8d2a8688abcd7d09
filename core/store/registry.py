"""Equipment registry: the in-memory view collectors use (the CSV import is registry_import.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text

from semon.store.db import Database
from semon.store.models import Device

# The import lives in its own module; these names stay importable from here for its callers.
from semon.store.registry_import import RegistryImportError, import_devices_csv, import_registry

__all__ = ["DeviceInfo", "RegistryImportError", "import_devices_csv", "import_registry", "load_registry",
           "registry_fingerprint"]  # fmt: skip


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


def registry_fingerprint(db: Database) -> tuple[int, int] | None:
    """A cheap "has the device registry changed?" probe, or None where there is none.

    Reloading 100 k devices costs a collector seconds of CPU; on PostgreSQL the row count and
    the sum of the rows' ``xmin`` (the inserting or updating transaction, which every insert,
    update and delete changes) answer the question in one scan on the server. A sum, not a
    max: transaction ids wrap around, so a max could stop moving.
    """
    if db.engine.dialect.name != "postgresql":
        return None
    with db.engine.connect() as c:
        n, total = c.execute(text("SELECT count(*), coalesce(sum(xmin::text::bigint), 0) FROM devices")).one()
    return int(n), int(total)


def load_registry(db: Database) -> dict[str, DeviceInfo]:
    """All devices as a dict keyed by id (a city's 400 k fit easily in memory)."""
    cols = (
        Device.id, Device.kind, Device.district, Device.firm_id, Device.rated_speed, Device.floors,
        Device.bottom_floor, Device.set_pressure, Device.design_temperature, Device.design_pressure, Device.attributes,
        Device.max_working_pressure,
    )  # fmt: skip
    with db.session() as s:
        # Devices that send telemetry; the platform's own row (its alarms, notify/canary.py) is not one.
        rows = s.execute(select(*cols).where(Device.kind != "platform")).all()
    return {
        r[0]: DeviceInfo(r[0], r[1], r[2] or "", r[3] or "", r[4], r[5], r[6], r[7], r[8], r[9], r[10] or None, r[11])
        for r in rows
    }
