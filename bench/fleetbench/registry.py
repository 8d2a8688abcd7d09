"""Bulk registry load for the benchmark fleet (100 k devices in seconds).

``semon devices import`` validates row by row and upserts through the ORM — right for an
operator's CSV, a few minutes for 100 k rows. The benchmark fleet is generated, so its rows
are inserted directly (SQLAlchemy Core, executemany) into the tables the migrations created.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert

from semon.simulators.fleet import DeviceSpec
from semon.simulators.loadgen import LoadFleet
from semon.store.db import Database
from semon.store.influx import InfluxStore, encode_lines
from semon.store.models import Device, Firm, UseUnit
from semon.store.telemetry import STATUS_MEASUREMENT, Point

CHUNK = 5000


def load_fleet_registry(db_url: str, fleet: LoadFleet, specs: list[DeviceSpec] | None = None) -> dict[str, int]:
    """Create the schema (migrations) and insert firms, use units and devices of ``fleet``."""
    db = Database(db_url)
    try:
        specs = specs if specs is not None else fleet.registry_specs()
        firms = {d.firm.firm_id: d.firm for d in specs}
        units = {d.use_unit.unit_id: d.use_unit for d in specs}
        rows: list[dict[str, Any]] = []
        for d in specs:
            e, v = d.elevator, d.vessel
            rows.append(
                {
                    "id": d.device_id, "equipment_code": d.equipment_code, "kind": d.kind, "district": d.district,
                    "address": d.address, "lat": d.lat, "lon": d.lon, "firm_id": d.firm.firm_id,
                    "use_unit_id": d.use_unit.unit_id, "install_date": d.install_date,
                    "rated_speed": e.rated_speed if e else None, "floors": e.floors if e else None,
                    "bottom_floor": e.bottom_floor if e else None,
                    "design_pressure": v.design_pressure if v else None,
                    "set_pressure": v.set_pressure if v else None,
                    "design_temperature": v.design_temperature if v else None, "medium": v.medium if v else None,
                    "attributes": {},
                }
            )  # fmt: skip
        with db.engine.begin() as c:
            c.execute(
                insert(Firm.__table__),
                [
                    {"id": f.firm_id, "name": f.name, "tech_level": f.tech_level, "credit_grade": f.credit_grade,
                     "credit_score": f.credit_score}
                    for f in firms.values()
                ],
            )  # fmt: skip
            c.execute(
                insert(UseUnit.__table__),
                [{"id": u.unit_id, "name": u.name, "mgmt_level": u.mgmt_level} for u in units.values()],
            )
            for i in range(0, len(rows), CHUNK):
                c.execute(insert(Device.__table__), rows[i : i + CHUNK])
        return {"devices": len(rows), "firms": len(firms), "use_units": len(units)}
    finally:
        db.dispose()


def prime_series(influx_url: str, specs: list[DeviceSpec], semon_db: str, peer_db: str) -> float:
    """Create every device's status series in both databases, one point an hour before now.

    A city's InfluxDB has its series already; the benchmark measures that steady state, not
    InfluxDB 1.6 creating 100 k series (which throttles writes to a few thousand points/s on
    this machine while it lasts). Tags are exactly those each pipeline writes: semon's from
    the registry (``kind, device_id, district, firm``), the Node-RED flow's ``device_id, kind``.
    ``seq`` gets the type each writes: integer from semon, float from node-influx. The points
    lie outside every case's time window. Returns the seconds it took.
    """
    t0 = time.time()
    ts = (int(time.time()) - 3600) * 1_000_000_000
    for db, semon in ((semon_db, True), (peer_db, False)):
        store = InfluxStore(influx_url, db, timeout_s=300)
        try:
            points = []
            for d in specs:
                meas = STATUS_MEASUREMENT[d.kind]
                if semon:
                    tags = {"kind": d.kind, "device_id": d.device_id, "district": d.district, "firm": d.firm.firm_id}
                    fields: dict[str, int | float] = {"seq": 0}
                else:
                    tags = {"device_id": d.device_id, "kind": d.kind}
                    fields = {"seq": 0.0}
                points.append(Point(meas, tags, fields, ts, ""))
            for i in range(0, len(points), CHUNK):
                store.write_lines(encode_lines(points[i : i + CHUNK]))  # raises on any refusal
        finally:
            store.close()
    return time.time() - t0
