"""Registry import: a clerk's CSV (UTF-8, UTF-8 with BOM or GB18030; comma, semicolon or tab)
→ firms, use units and devices, all or nothing.

Every problem of every row is collected into one report (spreadsheet row numbers: the header is
row 1), each in plain words, Chinese first and English after; when there is any error nothing is
written. The columns and their checks are registry_columns.py; docs/registry.md is the clerk's table.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select

from semon.contract.topics import KINDS
from semon.store.db import Database
from semon.store.models import Device, Firm, UseUnit
from semon.store.registry_columns import (
    CODE_FAMILY,
    REQUIRED_COLUMNS,
    CellError,
    Limits,
    canonical_column,
    parsers,
)

DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "逗号 comma ','", ";": "分号 semicolon ';'", "\t": "制表符 tab"}

# Mainland China's bounding box: a point outside is a warning, not an error (a typo such as a
# dropped digit usually lands there, but a firm may also register equipment abroad).
CHINA_LAT = (3.8, 53.6)
CHINA_LON = (73.5, 135.1)


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: where (spreadsheet row, column, value) and why, in Chinese and English."""

    row: int | None
    column: str | None
    value: str | None
    zh: str
    en: str

    def __str__(self) -> str:
        where = f"第 {self.row} 行" if self.row is not None else "文件"
        col = f" {self.column}" if self.column else ""
        val = f" {json.dumps(self.value, ensure_ascii=False)}" if self.value is not None else ""
        return f"{where}{col}:{val} {self.zh} ({self.en})"


class RegistryImportError(ValueError):
    """The file cannot be imported; ``str()`` is the whole report, ``problems`` its findings."""

    def __init__(self, message: str, problems: Sequence[Problem] = (), warnings: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)
        self.warnings = list(warnings)


@dataclass(slots=True)
class Counts:
    """Created / updated / unchanged rows of one table."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"新增 {self.created}，更新 {self.updated}，不变 {self.unchanged} (created {self.created}, updated {self.updated}, unchanged {self.unchanged})"  # noqa: E501


@dataclass(slots=True)
class ImportResult:
    """What an import did (or, with ``dry_run``, would do)."""

    path: str
    encoding: str
    delimiter: str
    dry_run: bool
    devices: Counts = field(default_factory=Counts)
    firms: Counts = field(default_factory=Counts)
    use_units: Counts = field(default_factory=Counts)
    warnings: list[Problem] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The human report, one line each."""
        head = "试运行，未写入 (dry run, nothing written)" if self.dry_run else "已导入 (imported)"
        out = [
            f"{self.path}: {head}; 编码 encoding {self.encoding}, 分隔符 delimiter {_DELIMITER_NAMES[self.delimiter]}"
        ]
        out += [
            f"  设备 devices: {self.devices}",
            f"  维保单位 firms: {self.firms}",
            f"  使用单位 use units: {self.use_units}",
        ]
        out += [f"  警告 warning: {w}" for w in self.warnings]
        return out


# -- reading the file --------------------------------------------------------------------------
def decode(data: bytes, name: str, encoding: str | None = None) -> tuple[str, str]:
    """The text of ``data`` and the encoding used: a BOM names it, else valid UTF-8 → utf-8, else GB18030."""
    if encoding is not None:
        try:
            return data.decode(encoding), encoding
        except LookupError as e:
            raise RegistryImportError(f"{name}: 未知编码 {encoding!r} (unknown encoding)") from e
        except UnicodeDecodeError as e:
            raise _undecodable(name, encoding, e) from e
    # Excel's "Unicode text" is UTF-16 with a BOM (and tabs); its "CSV UTF-8" is UTF-8 with a BOM.
    boms = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
    for bom, enc in boms:
        if data.startswith(bom):
            try:
                return data.decode(enc), enc
            except UnicodeDecodeError as e:
                raise _undecodable(name, enc, e) from e
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as e:
        raise _undecodable(name, "UTF-8 / GB18030", e) from e


def _undecodable(name: str, encoding: str, e: UnicodeDecodeError) -> RegistryImportError:
    return RegistryImportError(
        f"{name}: 第 {e.start} 字节处不是有效的 {encoding} 文本，请另存为 UTF-8 或用 --encoding 指定编码 "
        f"(byte offset {e.start} is not valid {encoding}: save the file as UTF-8 or pass --encoding)"
    )


def _split(text: str, delimiter: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def sniff_delimiter(text: str) -> str:
    """The delimiter whose header row names the most known columns (ties: more cells, then comma first)."""
    first = text.splitlines()[0] if text else ""

    def score(d: str) -> tuple[int, int]:
        cells = next(csv.reader([first], delimiter=d), [])
        return sum(canonical_column(c) is not None for c in cells), len(cells)

    return max(DELIMITERS, key=lambda d: (*score(d), -DELIMITERS.index(d)))


# -- the plan ----------------------------------------------------------------------------------
DEVICE_FIELDS = (
    "equipment_code", "kind", "district", "address", "lat", "lon", "firm_id", "use_unit_id", "install_date",
    "rated_speed", "floors", "bottom_floor", "design_pressure", "set_pressure", "design_temperature", "medium",
    "max_working_pressure",
)  # fmt: skip
# Columns kept in the device's JSON attributes rather than a column of their own (none now).
ATTRIBUTE_FIELDS: tuple[str, ...] = ()
FIRM_FIELDS = {
    "firm_name": "name",
    "firm_tech_level": "tech_level",
    "firm_credit_grade": "credit_grade",
    "firm_credit_score": "credit_score",
}
UNIT_FIELDS = {"use_unit_name": "name", "use_unit_mgmt_level": "mgmt_level"}


@dataclass(slots=True)
class Plan:
    """A validated file: what to write, and what was found."""

    columns: set[str]
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    firms: dict[str, dict[str, Any]] = field(default_factory=dict)
    units: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    row_of: dict[str, int] = field(default_factory=dict)  # device id → its spreadsheet row


def _fmt(v: object) -> str:
    return "" if v is None else (v.isoformat() if isinstance(v, date) else f"{v:g}" if isinstance(v, float) else str(v))


def _owner(
    plan: Plan,
    table: dict[str, dict[str, Any]],
    key: str,
    fields: dict[str, str],
    rec: dict[str, Any],
    row: int,
    who: tuple[str, str],
) -> None:
    """Merge one row's firm (or use unit) attributes; a blank is "not stated", a different value a conflict."""
    entry = table.setdefault(key, {"_rows": {}})
    for col, attr in fields.items():
        v = rec.get(col)
        if v is None:
            continue
        if attr in entry and entry[attr] != v:
            first = entry["_rows"][attr]
            plan.errors.append(
                Problem(
                    row,
                    col,
                    _fmt(v),
                    f"与第 {first} 行的 {json.dumps(_fmt(entry[attr]), ensure_ascii=False)} 不一致"
                    f"（同一{who[0]} {key}）",
                    f"conflicts with row {first} ({json.dumps(_fmt(entry[attr]), ensure_ascii=False)}) "
                    f"for the same {who[1]} {key}",
                )
            )
        elif attr not in entry:
            entry[attr] = v
            entry["_rows"][attr] = row


def _check_row(plan: Plan, row: int, rec: dict[str, Any], bad: set[str]) -> None:
    """Checks across the columns of one row (only between values that parsed)."""
    kind = rec.get("kind")
    code = rec.get("equipment_code")
    if kind and code and code[0] != CODE_FAMILY[kind]:
        plan.errors.append(
            Problem(
                row,
                "equipment_code",
                code,
                f"品种代码 {code[:4]} 不是{'电梯（3xxx）' if kind == 'elevator' else '压力容器（2xxx）'}",
                f"variety code {code[:4]} is not {'an elevator' if kind == 'elevator' else 'a pressure vessel'} code "
                f"({CODE_FAMILY[kind]}xxx)",
            )
        )
    if kind == "vessel":
        sp, dp, mwp = rec.get("set_pressure"), rec.get("design_pressure"), rec.get("max_working_pressure")
        if sp is None and "set_pressure" not in bad:
            plan.errors.append(
                Problem(
                    row,
                    "set_pressure",
                    None,
                    "压力容器必须填写安全阀整定压力（MPa），超压报警依赖它",
                    "a vessel needs set_pressure (MPa): the overpressure alarm depends on it",
                )
            )
        if sp is not None and dp is not None and sp > dp:
            plan.errors.append(
                Problem(
                    row,
                    "set_pressure",
                    _fmt(sp),
                    f"高于设计压力 {dp:g} MPa",
                    f"above the design pressure {dp:g} MPa (set pressure must not exceed it)",
                )
            )
        if mwp is not None and sp is not None and mwp > sp:
            plan.errors.append(
                Problem(
                    row,
                    "max_working_pressure",
                    _fmt(mwp),
                    f"高于整定压力 {sp:g} MPa",
                    f"above the set pressure {sp:g} MPa",
                )
            )
    lat, lon = rec.get("lat"), rec.get("lon")
    if lat is not None and lon is not None:
        if not (CHINA_LAT[0] <= lat <= CHINA_LAT[1] and CHINA_LON[0] <= lon <= CHINA_LON[1]):
            plan.warnings.append(
                Problem(
                    row,
                    "lat/lon",
                    f"{lat:g}, {lon:g}",
                    "不在中国境内，请核对（是否把经纬度填反了？）",
                    "outside China: please check (latitude and longitude swapped?)",
                )
            )
    for owner, name in (("firm_id", "firm"), ("use_unit_id", "use unit")):
        prefix = owner.removesuffix("_id")
        stated = [c for c in rec if c.startswith(prefix + "_") and c != owner and rec[c] is not None]
        if stated and not rec.get(owner) and owner not in bad:
            plan.errors.append(
                Problem(
                    row,
                    owner,
                    None,
                    f"填写了 {', '.join(stated)} 却没有 {owner}",
                    f"{', '.join(stated)} given without the {name}'s id",
                )
            )


def _duplicate(plan: Plan, seen: dict[str, int], row: int, col: str, value: str | None, what: str) -> bool:
    """Record ``value``'s first row; a repeat is an error naming both rows (True)."""
    if value is None:
        return False
    first = seen.setdefault(value, row)
    if first != row:
        plan.errors.append(
            Problem(row, col, value, f"与第 {first} 行重复", f"duplicate: the same {what} as row {first}")
        )
    return first != row


def plan_rows(rows: Sequence[Sequence[str]], delimiter: str, limits: Limits, today: date) -> Plan:
    """Validate the parsed rows (``rows[0]`` is the header); every finding goes into the plan."""
    header = rows[0]
    index: dict[str, int] = {}
    plan = Plan(columns=set())
    unknown = []
    for i, h in enumerate(header):
        col = canonical_column(h)
        if col is None:
            if h.strip():
                unknown.append(h.strip())
            continue
        if col in index:
            plan.errors.append(
                Problem(1, col, h, f"与第 {index[col] + 1} 列重复", f"the same column as column {index[col] + 1}")
            )
            continue
        index[col] = i
    missing = [c for c in REQUIRED_COLUMNS if c not in index]
    if missing:
        plan.errors.append(
            Problem(
                1,
                None,
                None,
                f"缺少必需列 {', '.join(missing)}（按{_DELIMITER_NAMES[delimiter]}拆分表头，得到 {len(header)} 列；"
                "分隔符不对请用 --delimiter）",
                f"missing required column(s) {', '.join(missing)}; "
                f"the header was split on {_DELIMITER_NAMES[delimiter]} "
                f"into {len(header)} column(s): pass --delimiter if the file uses another",
            )
        )
        return plan
    if unknown:
        plan.warnings.append(
            Problem(
                1,
                None,
                ", ".join(unknown),
                "未知列，已忽略（见 docs/registry.md 的列名）",
                "unknown column(s), ignored (see the column list in docs/registry.md)",
            )
        )
    plan.columns = set(index)
    parse = parsers(limits, today)
    seen_ids = plan.row_of
    seen_codes: dict[str, int] = {}
    for n, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # a blank row, as spreadsheets leave at the end
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
            plan.errors.append(
                Problem(
                    n,
                    None,
                    None,
                    f"有 {len(cells)} 个字段，表头只有 {len(header)} 列",
                    f"has {len(cells)} fields but the header has {len(header)} columns",
                )
            )
            continue
        rec: dict[str, Any] = {}
        bad: set[str] = set()
        for col, i in index.items():
            raw = cells[i].strip() if i < len(cells) else ""
            if raw == "":
                if col in REQUIRED_COLUMNS:
                    plan.errors.append(Problem(n, col, None, "不能为空", "required, but empty"))
                    bad.add(col)
                rec[col] = None
                continue
            try:
                rec[col] = parse[col](raw)
            except CellError as e:
                plan.errors.append(Problem(n, col, raw, e.zh, e.en))
                bad.add(col)
                rec[col] = None
        dev_id = rec.get("id")
        if _duplicate(plan, seen_ids, n, "id", dev_id, "id"):
            continue
        _duplicate(plan, seen_codes, n, "equipment_code", rec.get("equipment_code"), "code")
        _check_row(plan, n, rec, bad)
        if rec.get("firm_id"):
            _owner(plan, plan.firms, rec["firm_id"], FIRM_FIELDS, rec, n, ("维保单位", "firm"))
        if rec.get("use_unit_id"):
            _owner(plan, plan.units, rec["use_unit_id"], UNIT_FIELDS, rec, n, ("使用单位", "use unit"))
        if dev_id is not None and not bad:
            plan.devices[dev_id] = rec
    if not seen_ids and not plan.errors:
        plan.errors.append(Problem(None, None, None, "只有表头，没有数据行", "only a header, no data rows"))
    return plan


# -- writing -----------------------------------------------------------------------------------
def _load(s: Any, model: Any, ids: Iterable[str]) -> dict[str, Any]:
    ids = list(ids)
    out: dict[str, Any] = {}
    for i in range(0, len(ids), 500):  # bounded IN lists
        out.update({o.id: o for o in s.scalars(select(model).where(model.id.in_(ids[i : i + 500])))})
    return out


def _upsert(
    s: Any, model: Any, wanted: dict[str, dict[str, Any]], counts: Counts, defaults: Callable[[str], dict[str, Any]]
) -> None:
    """Create missing rows, update changed ones, count the unchanged; only the given attributes are touched."""
    existing = _load(s, model, wanted)
    for key, values in wanted.items():
        obj = existing.get(key)
        if obj is None:
            s.add(model(id=key, **(defaults(key) | values)))
            counts.created += 1
            continue
        changed = False
        for attr, v in values.items():
            if attr == "attributes":
                merged = dict(obj.attributes or {}) | v
                if merged != (obj.attributes or {}):
                    obj.attributes, changed = merged, True
            elif getattr(obj, attr) != v:
                setattr(obj, attr, v)
                changed = True
        if changed:
            counts.updated += 1
        else:
            counts.unchanged += 1


def _write(s: Any, plan: Plan, result: ImportResult, *, flush: bool = True) -> list[Problem]:
    owner = {k: {a: v for a, v in e.items() if a != "_rows"} for k, e in plan.firms.items()}
    units = {k: {a: v for a, v in e.items() if a != "_rows"} for k, e in plan.units.items()}
    devices: dict[str, dict[str, Any]] = {}
    for dev_id, rec in plan.devices.items():
        values = {c: rec.get(c) for c in DEVICE_FIELDS if c in plan.columns}
        values["kind"] = rec["kind"]
        attrs = {c: rec[c] for c in ATTRIBUTE_FIELDS if c in plan.columns and rec.get(c) is not None}
        if attrs:
            values["attributes"] = attrs
        devices[dev_id] = values
    platform = [d for d in _load(s, Device, devices).values() if d.kind not in KINDS]
    if platform:
        return [
            Problem(plan.row_of.get(d.id), "id", d.id, "是 semon 保留的编号", "is an id semon reserves for itself")
            for d in platform
        ]
    _upsert(s, Firm, owner, result.firms, lambda k: {"name": k})
    _upsert(s, UseUnit, units, result.use_units, lambda k: {"name": k})
    if flush:
        s.flush()  # the devices' foreign keys need their firms and use units
    _upsert(s, Device, devices, result.devices, lambda k: {"attributes": {}})
    return []


def import_registry(
    db: Database,
    path: Path | str,
    *,
    dry_run: bool = False,
    encoding: str | None = None,
    delimiter: str | None = None,
    limits: Limits | None = None,
    today: date | None = None,
) -> ImportResult:
    """Validate ``path`` and upsert its firms, use units and devices in one transaction.

    Raises :class:`RegistryImportError` with the full report when anything is wrong; then
    nothing is written. With ``dry_run`` the counts are computed the same way and rolled back.
    ``today`` (default: the calendar day in ``SEMON_TIMEZONE``, Asia/Shanghai) bounds the dates.
    """
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise RegistryImportError(f"{name}: 无法读取 (cannot read: {e.strerror or e})") from e
    text, enc = decode(data, name, encoding)
    if not text.strip():
        raise RegistryImportError(f"{name}: 文件为空，没有表头也没有数据 (the file is empty: no header, no rows)")
    if delimiter is not None and delimiter not in DELIMITERS:
        raise RegistryImportError(
            f"{name}: 分隔符 {delimiter!r} 不受支持 (unsupported delimiter: use ',', ';' or a tab)"
        )
    delim = delimiter or sniff_delimiter(text)
    try:
        rows = _split(text, delim)
    except csv.Error as e:  # e.g. a NUL byte
        raise RegistryImportError(f"{name}: 不是可读的 CSV 文件 (not a readable CSV file: {e})") from e
    plan = plan_rows(rows, delim, limits or Limits(), today or _local_today())
    result = ImportResult(name, enc, delim, dry_run, warnings=plan.warnings)
    if not plan.errors and dry_run:
        with db.sessions() as s, s.no_autoflush:  # a dry run sends no INSERT or UPDATE at all
            plan.errors = _write(s, plan, result, flush=False)
            s.rollback()
    elif not plan.errors:
        with db.session() as s:
            plan.errors = _write(s, plan, result)
            if plan.errors:
                raise _report(name, plan)  # leaves through the rollback: nothing half-written
    if plan.errors:
        raise _report(name, plan)
    return result


def _local_today() -> date:
    from semon.config import get_settings
    from semon.timeutil import local_today

    return local_today(get_settings().timezone)


def _report(name: str, plan: Plan) -> RegistryImportError:
    n = len(plan.errors)
    lines = [f"{name}: {n} 处错误，未导入任何数据 ({n} error(s), nothing imported):"]
    lines += [f"  {p}" for p in plan.errors]
    lines += [f"  警告 warning: {w}" for w in plan.warnings]
    return RegistryImportError("\n".join(lines), plan.errors, plan.warnings)


def import_devices_csv(db: Database, path: Path | str, **kwargs: Any) -> dict[str, int]:
    """:func:`import_registry` with the counts of rows in the file (what the tests and tools use)."""
    r = import_registry(db, path, **kwargs)
    return {
        "devices": r.devices.created + r.devices.updated + r.devices.unchanged,
        "firms": r.firms.created + r.firms.updated + r.firms.unchanged,
        "use_units": r.use_units.created + r.use_units.updated + r.use_units.unchanged,
    }
