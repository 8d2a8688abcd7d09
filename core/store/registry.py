"""Equipment registry: CSV import (pandas) and the in-memory view collectors use."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select, text

from semon.contract.topics import DEVICE_ID_RE, KINDS
from semon.store.db import Database
from semon.store.models import Device, Firm, UseUnit

REQUIRED_COLUMNS = ("id", "kind")
DEVICE_COLUMNS = (
    "equipment_code", "district", "address", "lat", "lon", "firm_id", "use_unit_id", "install_date",
    "rated_speed", "floors", "bottom_floor", "design_pressure", "set_pressure", "design_temperature", "medium",
    "max_working_pressure",
)  # fmt: skip
_INT_COLUMNS = {"floors", "bottom_floor"}
_FLOAT_COLUMNS = {
    "lat", "lon", "rated_speed", "design_pressure", "set_pressure", "design_temperature", "max_working_pressure",
}  # fmt: skip


class RegistryImportError(ValueError):
    """The CSV cannot be imported; the message names the rows and columns at fault."""


def _clean(v: object) -> object:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT or v == "":
        return None
    return v


def _check_code(code: str | None) -> str | None:
    """Equipment code: 18-char 设备代码 (TSG 08-2017) or 20-digit legacy 注册代码 (domain.md §3)."""
    if code is None:
        return None
    code = str(code).strip()
    if len(code) == 18 and code[:4].isdigit() and code[9:13].isdigit():
        return code
    if len(code) == 20 and code.isdigit():
        return code
    raise ValueError(f"equipment_code {code!r} is neither an 18-char device code nor a 20-digit registration code")


def import_devices_csv(db: Database, path: Path | str) -> dict[str, int]:
    """Upsert firms, use units and devices from a registry CSV; return counts.

    Every row is validated first and all errors are reported together; nothing is written
    unless the whole file is valid (a half-imported registry is worse than none).
    """
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise RegistryImportError(f"{path}: missing column(s) {', '.join(missing)}")
    errors: list[str] = []
    devices: list[dict[str, object]] = []
    firms: dict[str, dict[str, object]] = {}
    units: dict[str, dict[str, object]] = {}
    for i, row in enumerate(df.to_dict("records"), start=2):  # line 1 is the header
        try:
            rec = _device_record(row)
        except ValueError as e:
            errors.append(f"line {i}: {e}")
            continue
        devices.append(rec)
        if rec["firm_id"]:
            firms[str(rec["firm_id"])] = {
                "id": rec["firm_id"],
                "name": _clean(row.get("firm_name")) or rec["firm_id"],
                "tech_level": _opt_int(row.get("firm_tech_level")),
                "credit_grade": _clean(row.get("firm_credit_grade")),
                "credit_score": _opt_float(row.get("firm_credit_score")),
            }
        if rec["use_unit_id"]:
            units[str(rec["use_unit_id"])] = {
                "id": rec["use_unit_id"],
                "name": _clean(row.get("use_unit_name")) or rec["use_unit_id"],
                "mgmt_level": _opt_int(row.get("use_unit_mgmt_level")),
            }
    if errors:
        shown = "\n  ".join(errors[:50])
        more = f"\n  … and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise RegistryImportError(f"{path}: {len(errors)} invalid row(s):\n  {shown}{more}")
    with db.session() as s:
        for f in firms.values():
            s.merge(Firm(**f))
        for u in units.values():
            s.merge(UseUnit(**u))
        s.flush()
        for d in devices:
            s.merge(Device(**d))
    return {"devices": len(devices), "firms": len(firms), "use_units": len(units)}


def _opt_int(v: object) -> int | None:
    v = _clean(v)
    return None if v is None else int(float(str(v)))


def _opt_float(v: object) -> float | None:
    v = _clean(v)
    if v is None:
        return None
    f = float(str(v))
    if not math.isfinite(f):
        raise ValueError(f"value {v!r} is not a finite number")
    return f


def _device_record(row: dict[str, str]) -> dict[str, object]:
    dev_id = str(row["id"]).strip()
    if not DEVICE_ID_RE.fullmatch(dev_id):
        raise ValueError(f"id {dev_id!r} must match {DEVICE_ID_RE.pattern}")
    kind = str(row["kind"]).strip()
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    rec: dict[str, object] = {"id": dev_id, "kind": kind, "attributes": {}}
    for col in DEVICE_COLUMNS:
        raw = row.get(col)
        try:
            if col in _INT_COLUMNS:
                rec[col] = _opt_int(raw)
            elif col in _FLOAT_COLUMNS:
                rec[col] = _opt_float(raw)
            elif col == "install_date":
                v = _clean(raw)
                rec[col] = None if v is None else date.fromisoformat(str(v))
            elif col == "equipment_code":
                rec[col] = _check_code(_clean(raw))  # type: ignore[arg-type]
            else:
                v = _clean(raw)
                rec[col] = None if v is None else str(v).strip()
        except ValueError as e:
            raise ValueError(f"column {col}: {e}") from e
    if kind == "vessel" and rec["set_pressure"] is None:
        raise ValueError("vessel needs set_pressure (MPa) — the overpressure rule depends on it")
    return rec


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
