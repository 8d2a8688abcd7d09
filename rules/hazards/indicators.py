"""The plan's indicators over hazards and accidents, by district, firm or the whole city.

Pure: rows in, one dict per group out. Definitions (docs/hazards.md "Indicators"):

* a hazard *counts* once it is confirmed (candidates and rejected proposals do not);
* found in the period = confirmed hazards whose ``found_on`` is in ``[start, end)``;
* remediation rate of major hazards = those of them closed by the as-of day / found;
  on time = closed on or before their deadline; overdue = open with the deadline passed;
* per 10,000 units = count / units in the group × 10,000 (units = devices registered now);
* accidents and deaths: accidents with ``occurred_on`` in ``[start, end)``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

GroupBy = Literal["district", "firm", "city"]
COUNTED = ("open", "rectified", "closed")


@dataclass(frozen=True, slots=True)
class Unit:
    """A registered device and the groups it belongs to."""

    device_id: str
    district: str | None
    firm_id: str | None


@dataclass(frozen=True, slots=True)
class HazardRow:
    """What the indicators need of a hazard (days are local calendar days)."""

    device_id: str
    hazard_class: str
    status: str
    found_on: date
    deadline: date | None
    closed_on: date | None


@dataclass(frozen=True, slots=True)
class AccidentRow:
    """What the indicators need of an accident."""

    device_id: str
    occurred_on: date
    deaths: int


def _per10k(n: int, units: int) -> float | None:
    return round(n / units * 10_000, 4) if units else None


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 6) if d else None


def indicators(
    units: Iterable[Unit],
    hazards: Iterable[HazardRow],
    accidents: Iterable[AccidentRow],
    grades: Mapping[str, str],
    start: date,
    end: date,
    as_of: date,
    by: GroupBy = "district",
) -> list[dict[str, Any]]:
    """Indicators per group, sorted by group name (``None`` — no district / firm — last)."""
    group_of: dict[str, str | None] = {}
    size: Counter[str | None] = Counter()
    for u in units:
        g = u.district if by == "district" else u.firm_id if by == "firm" else "city"
        group_of[u.device_id] = g
        size[g] += 1
    acc: dict[str | None, Counter[str]] = defaultdict(Counter)
    for h in hazards:
        if h.device_id not in group_of or h.status not in COUNTED or not (start <= h.found_on < end):
            continue
        c = acc[group_of[h.device_id]]
        c["hazards_found"] += 1
        if h.hazard_class != "major":
            continue
        c["major_found"] += 1
        closed = h.closed_on is not None and h.closed_on <= as_of
        if closed:
            late = h.deadline is not None and h.closed_on > h.deadline  # type: ignore[operator]
            c["major_closed_late" if late else "major_closed_on_time"] += 1
        elif h.deadline is not None and h.deadline < as_of:
            c["major_open_overdue"] += 1
        else:
            c["major_open_in_time"] += 1
    for a in accidents:
        if a.device_id in group_of and start <= a.occurred_on < end:
            c = acc[group_of[a.device_id]]
            c["accidents"] += 1
            c["deaths"] += a.deaths
    graded: dict[str | None, Counter[str]] = defaultdict(Counter)
    for dev, g in grades.items():
        if dev in group_of:
            graded[group_of[dev]][g] += 1
    out = []
    for g in sorted(size, key=lambda k: (k is None, k or "")):
        c, n = acc[g], size[g]
        closed_n = c["major_closed_on_time"] + c["major_closed_late"]
        out.append(
            {
                "group": g,
                "units": n,
                "hazards_found": c["hazards_found"],
                "hazards_per_10k": _per10k(c["hazards_found"], n),
                "major_found": c["major_found"],
                "major_closed_on_time": c["major_closed_on_time"],
                "major_closed_late": c["major_closed_late"],
                "major_open_overdue": c["major_open_overdue"],
                "major_open_in_time": c["major_open_in_time"],
                "major_remediation_rate": _rate(closed_n, c["major_found"]),
                "major_on_time_rate": _rate(c["major_closed_on_time"], c["major_found"]),
                "accidents": c["accidents"],
                "deaths": c["deaths"],
                "accidents_per_10k": _per10k(c["accidents"], n),
                "deaths_per_10k": _per10k(c["deaths"], n),
                "grades": {k: graded[g].get(k, 0) for k in ("A", "B", "C", "D")},
            }
        )
    return out
