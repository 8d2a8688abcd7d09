"""What each registry column is called and accepts: the header vocabulary (English and Chinese)
and one parser per column, each refusing a bad cell with a reason in Chinese and English.

docs/registry.md is the table a clerk reads; registry_import.py applies it to a file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from semon.contract.topics import DEVICE_ID_RE, KINDS

# Canonical column → the header names accepted for it (matched after trimming, case-insensitive,
# with a trailing unit in brackets dropped: "设计压力(MPa)" is "设计压力").
COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("设备编号", "监测编号", "device_id"),
    "equipment_code": ("设备代码", "注册代码"),
    "kind": ("类型", "设备类型", "设备种类"),
    "district": ("区", "行政区", "所在区"),
    "address": ("地址", "安装地址"),
    "lat": ("纬度", "latitude"),
    "lon": ("经度", "longitude", "lng"),
    "firm_id": ("维保单位编号", "维保单位代码"),
    "firm_name": ("维保单位", "维保单位名称"),
    "firm_tech_level": ("维保单位技术等级", "技术等级"),
    "firm_credit_grade": ("维保单位信用等级", "信用等级"),
    "firm_credit_score": ("维保单位信用分", "信用分", "信用评分"),
    "use_unit_id": ("使用单位编号", "使用单位代码"),
    "use_unit_name": ("使用单位", "使用单位名称"),
    "use_unit_mgmt_level": ("使用单位管理等级", "管理等级"),
    "install_date": ("安装日期", "投用日期", "commissioned"),
    "rated_speed": ("额定速度",),
    "floors": ("层站数", "层数"),
    "bottom_floor": ("最低层", "最低楼层"),
    "design_pressure": ("设计压力",),
    "set_pressure": ("整定压力", "安全阀整定压力"),
    "max_working_pressure": ("最高工作压力", "max_working_pressure_mpa"),
    "design_temperature": ("设计温度",),
    "medium": ("介质",),
}
REQUIRED_COLUMNS = ("id", "kind")
KIND_NAMES = {"elevator": "elevator", "电梯": "elevator", "vessel": "vessel", "压力容器": "vessel", "容器": "vessel"}
# Variety-code family of the 设备代码 / 注册代码 per kind (domain.md §3: 3xxx lifts, 2xxx vessels).
CODE_FAMILY = {"elevator": "3", "vessel": "2"}
_UNIT_SUFFIX = re.compile(r"\s*[(（][^)）]*[)）]\s*$")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Limits:
    """The ranges that come from the maintenance policy (defaults: rules/maintenance/default_policy.toml)."""

    credit_grades: tuple[str, ...] = ("A", "B", "C", "D")
    tech_levels: tuple[int, int] = (1, 5)
    mgmt_levels: tuple[int, int] = (1, 5)
    credit_score: tuple[float, float] = (0.0, 100.0)


class CellError(ValueError):
    """A cell the column cannot accept: why, in Chinese (``zh``) and English (``en``)."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh, self.en = zh, en


def canonical_column(header: str) -> str | None:
    """The canonical column a header cell names, or None."""
    h = _UNIT_SUFFIX.sub("", header.strip().lstrip("\ufeff")).strip().casefold()
    for col, aliases in COLUMNS.items():
        if h == col or h in (a.casefold() for a in aliases):
            return col
    return None


def _text(max_len: int) -> Callable[[str], str]:
    def parse(v: str) -> str:
        if CONTROL_CHARS.search(v):
            raise CellError("含换行、制表符等控制字符", "contains a line break, tab or other control character")
        if len(v) > max_len:
            raise CellError(f"超过 {max_len} 个字符", f"longer than {max_len} characters")
        return v

    return parse


def _number(lo: float, hi: float, *, lo_open: bool = False, what: tuple[str, str] = ("", "")) -> Callable[[str], float]:
    def parse(v: str) -> float:
        try:
            f = float(v)
        except ValueError:
            raise CellError("不是数字", "not a number") from None
        if f != f or f in (float("inf"), float("-inf")):
            raise CellError("不是数字", "not a number")
        if f < lo or f > hi or (lo_open and f == lo):
            lo_txt = f"大于 {lo:g}" if lo_open else f"{lo:g}"
            raise CellError(
                f"{what[0]}超出范围 {lo_txt}…{hi:g}",
                f"{what[1]}out of range {'above ' if lo_open else ''}{lo:g} to {hi:g}",
            )
        return f

    return parse


def _integer(lo: int, hi: int) -> Callable[[str], int]:
    def parse(v: str) -> int:
        try:
            f = float(v)
        except ValueError:
            raise CellError("不是整数", "not a whole number") from None
        if not f.is_integer():
            raise CellError("不是整数", "not a whole number")
        if not lo <= f <= hi:
            raise CellError(f"超出范围 {lo}…{hi}", f"out of range {lo} to {hi}")
        return int(f)

    return parse


def _date(today: date) -> Callable[[str], date]:
    def parse(v: str) -> date:
        try:
            d = date.fromisoformat(v) if "-" in v else datetime.strptime(v, "%Y/%m/%d").date()
        except ValueError:
            raise CellError("不是有效日期", "not a valid date, expected YYYY-MM-DD") from None
        if d > today:
            raise CellError(f"晚于今天 {today.isoformat()}", f"in the future: today is {today.isoformat()}")
        if d.year < 1900:
            raise CellError("早于 1900 年", "before 1900")
        return d

    return parse


def _device_id(v: str) -> str:
    if not DEVICE_ID_RE.fullmatch(v):
        raise CellError(
            "设备编号须以字母或数字开头，只含字母、数字和 _ . -，最长 64 个字符",
            "must start with a letter or digit and hold only letters, digits, _ . -, at most 64 characters",
        )
    return v


def _kind(v: str) -> str:
    k = KIND_NAMES.get(v.casefold())
    if k is None or k not in KINDS:
        raise CellError(
            "不是设备类型，应为 elevator（电梯）或 vessel（压力容器）",
            "not an equipment kind: expected elevator or vessel",
        )
    return k


def _equipment_code(today: date) -> Callable[[str], str]:
    def parse(v: str) -> str:
        c = v.upper()
        if len(c) == 18 and c[:4].isdigit() and c[4:9].isalnum() and c[9:13].isdigit() and c[13:].isalnum():
            year = int(c[9:13])
        elif len(c) == 20 and c.isdigit() and 1 <= int(c[14:16]) <= 12:
            year = int(c[10:14])
        else:
            raise CellError(
                "既不是 18 位设备代码（4 位品种 + 5 位制造单位 + 4 位年份 + 5 位流水号），也不是 20 位数字注册代码",
                "neither an 18-character device code (4-digit variety, 5-character maker, 4-digit year, "
                "5-character serial) nor a 20-digit registration code",
            )
        if not 1900 <= year <= today.year:
            raise CellError(f"代码中的年份 {year} 不合理", f"the year {year} in the code is not plausible")
        return c

    return parse


def _grade(grades: tuple[str, ...]) -> Callable[[str], str]:
    def parse(v: str) -> str:
        g = v.upper().removesuffix("级")
        if g not in grades:
            listed = "、".join(grades)
            raise CellError(
                f"不是有效信用等级，应为 {listed} 之一", f"not a credit grade: expected one of {', '.join(grades)}"
            )
        return g

    return parse


def parsers(limits: Limits, today: date) -> dict[str, Callable[[str], Any]]:
    """One parser per canonical column; each returns the typed value or raises :class:`CellError`."""
    return {
        "id": _device_id,
        "equipment_code": _equipment_code(today),
        "kind": _kind,
        "district": _text(64),
        "address": _text(300),
        "lat": _number(-90, 90, what=("纬度", "latitude ")),
        "lon": _number(-180, 180, what=("经度", "longitude ")),
        "firm_id": _text(64),
        "firm_name": _text(200),
        "firm_tech_level": _integer(*limits.tech_levels),
        "firm_credit_grade": _grade(limits.credit_grades),
        "firm_credit_score": _number(*limits.credit_score),
        "use_unit_id": _text(64),
        "use_unit_name": _text(200),
        "use_unit_mgmt_level": _integer(*limits.mgmt_levels),
        "install_date": _date(today),
        "rated_speed": _number(0, 20, lo_open=True),
        "floors": _integer(1, 300),
        "bottom_floor": _integer(-20, 300),
        "design_pressure": _number(0, 1000, lo_open=True),
        "set_pressure": _number(0, 1000, lo_open=True),
        "max_working_pressure": _number(0, 1000, lo_open=True),
        "design_temperature": _number(-273.15, 1500),
        "medium": _text(64),
    }
