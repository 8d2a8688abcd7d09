"""Registry facts of the "3+2" policy: set one by one (API) or imported from CSV / Excel (pandas).

Device facts (commission date, inspection valid-until, last inspection, liability insurance,
vessel safety grade) go to ``maintenance_facts``; firm facts (technical level, credit grade and
score) to ``firms``; the use unit's management level to ``use_units``.

Import file: one row per device and/or firm / use unit; every column but one key is optional
and an empty cell leaves the stored value alone. Columns: ``device_id``, ``commission_date``,
``inspection_valid_until``, ``last_inspection_date``, ``liability_insurance``,
``safety_grade``, ``firm_id``, ``firm_tech_level``, ``firm_credit_grade``,
``firm_credit_score``, ``use_unit_id``, ``use_unit_mgmt_level``. Every row is checked first and
all errors are reported together; nothing is written unless the whole file is valid.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import select

from semon.store.db import Database
from semon.store.maintenance import DeviceFacts
from semon.store.models import Device, Firm, UseUnit
from semon.timeutil import utc_now

DEVICE_FACTS = ("commission_date", "inspection_valid_until", "last_inspection_date", "liability_insurance",
                "safety_grade")  # fmt: skip
FIRM_FACTS = {"firm_tech_level": "tech_level", "firm_credit_grade": "credit_grade", "firm_credit_score": "credit_score"}
UNIT_FACTS = {"use_unit_mgmt_level": "mgmt_level"}
COLUMNS = ("device_id", *DEVICE_FACTS, "firm_id", *FIRM_FACTS, "use_unit_id", *UNIT_FACTS)
_TRUE = {"1", "true", "yes", "y", "是", "有"}
_FALSE = {"0", "false", "no", "n", "否", "无"}
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")


class FactsError(ValueError):
    """Facts cannot be set or imported; the message names the rows and columns at fault."""


class UnknownEntity(FactsError):
    """A device, firm or use unit that is not in the registry."""


# ---------------------------------------------------------------------------- parsing
def parse_date(v: Any) -> date | None:
    """ISO date, Excel date cell or datetime → date; empty → None."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT or str(v).strip() == "":
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    text = str(v).strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def parse_bool(v: Any) -> bool | None:
    """true/false, 1/0, yes/no, 是/否 → bool; empty → None."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == "":
        return None
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text.endswith(".0"):
        text = text[:-2]
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{v!r} is not a yes/no value (true/false, 1/0, yes/no)")


def _num(v: Any, lo: float, hi: float, integer: bool) -> float | int | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == "":
        return None
    try:
        f = float(str(v).strip())
    except ValueError:
        raise ValueError(f"{v!r} is not a number") from None
    if not (lo <= f <= hi):
        raise ValueError(f"{f:g} is outside {lo:g}–{hi:g}")
    if integer:
        if f != int(f):
            raise ValueError(f"{f:g} is not a whole number")
        return int(f)
    return f


def _text(v: Any, max_len: int = 64) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    text = str(v).strip()
    if not text:
        return None
    if len(text) > max_len:
        raise ValueError(f"{text[:20]!r}… is longer than {max_len} characters")
    return text


PARSERS: dict[str, Any] = {
    "commission_date": parse_date,
    "inspection_valid_until": parse_date,
    "last_inspection_date": parse_date,
    "liability_insurance": parse_bool,
    "safety_grade": lambda v: _num(v, 1, 5, True),
    "firm_tech_level": lambda v: _num(v, 0, 10, True),
    "firm_credit_grade": lambda v: (_text(v, 8) or "").upper() or None,
    "firm_credit_score": lambda v: _num(v, 0, 100, False),
    "use_unit_mgmt_level": lambda v: _num(v, 0, 10, True),
}


def parse_values(values: dict[str, Any]) -> dict[str, Any]:
    """Validate named fact values (as the API or a file row gives them); raise ValueError naming the field."""
    out = {}
    for k, v in values.items():
        if k not in PARSERS:
            raise ValueError(f"unknown fact {k!r}")
        try:
            out[k] = PARSERS[k](v)
        except ValueError as e:
            raise ValueError(f"{k}: {e}") from None
    return out


# ----------------------------------------------------------------------------- writing
def update_device_facts(db: Database, device_id: str, values: dict[str, Any]) -> DeviceFacts:
    """Set the given device facts (a None value clears it); other facts stay as they are."""
    unknown = set(values) - set(DEVICE_FACTS)
    if unknown:
        raise FactsError(f"not device facts: {', '.join(sorted(unknown))}")
    with db.session() as s:
        if s.get(Device, device_id) is None:
            raise UnknownEntity(f"device {device_id!r} does not exist")
        f = s.get(DeviceFacts, device_id) or DeviceFacts(device_id=device_id)
        for k, v in values.items():
            setattr(f, k, v)
        f.updated_at = utc_now()
        s.add(f)
        s.flush()
        s.expunge(f)
        return f


def update_firm(db: Database, firm_id: str, values: dict[str, Any]) -> Firm:
    """Set a firm's technical level, credit grade and / or credit score (keys as in the import file)."""
    return _update_row(db, Firm, firm_id, "firm", values, FIRM_FACTS)


def update_use_unit(db: Database, use_unit_id: str, values: dict[str, Any]) -> UseUnit:
    """Set a use unit's management level."""
    return _update_row(db, UseUnit, use_unit_id, "use unit", values, UNIT_FACTS)


_Row = TypeVar("_Row", Firm, UseUnit)


def _update_row(
    db: Database, model: type[_Row], key: str, what: str, values: dict[str, Any], columns: Mapping[str, str]
) -> _Row:
    """Set ``values`` (import-file keys, mapped to attributes by ``columns``) on one row; it comes back detached."""
    with db.session() as s:
        row = s.get(model, key)
        if row is None:
            raise UnknownEntity(f"{what} {key!r} does not exist")
        for k, v in values.items():
            setattr(row, columns[k], v)
        s.flush()
        s.expunge(row)
        return row


def read_table(source: Path | str | bytes, filename: str = "") -> pd.DataFrame:
    """A CSV or Excel file (by suffix; bytes need ``filename``) as text cells."""
    name = str(source) if not isinstance(source, bytes) else filename
    data: Any = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        if name.lower().endswith(EXCEL_SUFFIXES):
            return pd.read_excel(data, dtype=object)
        return pd.read_csv(data, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise FactsError(
            f"{name or 'upload'}: cannot read as {'Excel' if name.endswith(EXCEL_SUFFIXES) else 'CSV'}: {e}"
        ) from e


def import_facts(db: Database, source: Path | str | bytes, filename: str = "") -> dict[str, int]:
    """Import facts from CSV / Excel (all-or-nothing); return counts of devices, firms, use units updated."""
    name = filename or (str(source) if not isinstance(source, bytes) else "upload")
    df = read_table(source, filename)
    df.columns = [str(c).strip() for c in df.columns]
    unknown = [c for c in df.columns if c not in COLUMNS]
    if unknown:
        raise FactsError(f"{name}: unknown column(s) {', '.join(unknown)} (known: {', '.join(COLUMNS)})")
    if not {"device_id", "firm_id", "use_unit_id"} & set(df.columns):
        raise FactsError(f"{name}: needs a device_id, firm_id or use_unit_id column")
    with db.session() as s:
        devices = set(s.scalars(select(Device.id)))
        firms = set(s.scalars(select(Firm.id)))
        units = set(s.scalars(select(UseUnit.id)))
    errors: list[str] = []
    dev_rows: dict[str, dict[str, Any]] = {}
    firm_rows: dict[str, dict[str, Any]] = {}
    unit_rows: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(df.to_dict("records"), start=2):  # line 1 is the header
        try:
            keys = {k: _text(row.get(k)) for k in ("device_id", "firm_id", "use_unit_id")}
            vals = parse_values({k: row[k] for k in PARSERS if k in row})
            vals = {k: v for k, v in vals.items() if v is not None}  # empty cell: leave as is
            dev, firm, unit = keys["device_id"], keys["firm_id"], keys["use_unit_id"]
            dev_vals = {k: vals[k] for k in DEVICE_FACTS if k in vals}
            firm_vals = {k: vals[k] for k in FIRM_FACTS if k in vals}
            unit_vals = {k: vals[k] for k in UNIT_FACTS if k in vals}
            if dev_vals and dev is None:
                raise ValueError("device facts need a device_id")
            if firm_vals and firm is None:
                raise ValueError("firm facts need a firm_id")
            if unit_vals and unit is None:
                raise ValueError("use-unit facts need a use_unit_id")
            if dev is not None and dev not in devices:
                raise ValueError(f"device {dev!r} is not in the registry")
            if firm is not None and firm not in firms:
                raise ValueError(f"firm {firm!r} is not in the registry")
            if unit is not None and unit not in units:
                raise ValueError(f"use unit {unit!r} is not in the registry")
        except ValueError as e:
            errors.append(f"line {i}: {e}")
            continue
        if dev is not None and dev_vals:
            dev_rows.setdefault(dev, {}).update(dev_vals)
        if firm is not None and firm_vals:
            firm_rows.setdefault(firm, {}).update(firm_vals)
        if unit is not None and unit_vals:
            unit_rows.setdefault(unit, {}).update(unit_vals)
    if errors:
        shown = "\n  ".join(errors[:50])
        more = f"\n  … and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise FactsError(f"{name}: {len(errors)} invalid row(s):\n  {shown}{more}")
    now = utc_now()
    with db.session() as s:
        for dev, vals in dev_rows.items():
            f = s.get(DeviceFacts, dev) or DeviceFacts(device_id=dev)
            for k, v in vals.items():
                setattr(f, k, v)
            f.updated_at = now
            s.add(f)
        for firm_id, vals in firm_rows.items():
            firm_rec = s.get(Firm, firm_id)
            for k, v in vals.items():
                setattr(firm_rec, FIRM_FACTS[k], v)
        for unit_id, vals in unit_rows.items():
            unit_rec = s.get(UseUnit, unit_id)
            for k, v in vals.items():
                setattr(unit_rec, UNIT_FACTS[k], v)
    return {"devices": len(dev_rows), "firms": len(firm_rows), "use_units": len(unit_rows)}
