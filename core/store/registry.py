"""Equipment registry: the in-memory view collectors use (the CSV import is registry_import.py)."""

from __future__ import annotations

from sqlalchemy import select, text

from semon.domain import DeviceInfo
from semon.store.db import Database
from semon.store.models import Device

# The import lives in its own module; these names stay importable from here for its callers.
from semon.store.registry_import import RegistryImportError, import_devices_csv, import_registry

__all__ = ["RegistryImportError", "import_devices_csv", "import_registry", "load_registry",
           "registry_fingerprint"]  # fmt: skip


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
