"""Simulated fleet registry: firms, use units and devices around Guangzhou, from a seed.

Everything here is static description (what the registry holds); the moving parts live in
``elevator.py`` / ``vessel.py`` and are driven by ``engine.py``. The same seed always gives
the same fleet. ``Fleet.write_registry_csv`` writes the registry-import format (columns in
``REGISTRY_COLUMNS``).

Conventions the importer and rules can rely on:
- ``floors`` is the number of landings served; labels run up from ``bottom_floor`` and skip 0
  (``-1`` is followed by ``1``), see :func:`semon.simulators.elevator.floor_labels`.
- ``set_pressure`` / ``design_pressure`` in MPa (gauge), ``design_temperature`` in °C.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from semon.simulators.elevator import floor_labels

REGISTRY_COLUMNS = (
    "id", "equipment_code", "kind", "district", "address", "lat", "lon", "firm_id", "firm_name",
    "firm_tech_level", "firm_credit_grade", "firm_credit_score", "use_unit_id", "use_unit_name",
    "use_unit_mgmt_level", "install_date", "rated_speed", "floors", "bottom_floor",
    "design_pressure", "set_pressure", "design_temperature", "medium", "max_working_pressure",
)  # fmt: skip

# District -> (centre lat, centre lon, share of devices). Central districts are denser.
DISTRICTS: dict[str, tuple[float, float, float]] = {
    "Tianhe": (23.125, 113.361, 0.17),
    "Yuexiu": (23.129, 113.267, 0.12),
    "Haizhu": (23.084, 113.317, 0.12),
    "Liwan": (23.125, 113.244, 0.08),
    "Baiyun": (23.205, 113.273, 0.13),
    "Huangpu": (23.181, 113.459, 0.08),
    "Panyu": (22.938, 113.384, 0.12),
    "Huadu": (23.404, 113.220, 0.06),
    "Nansha": (22.801, 113.525, 0.04),
    "Conghua": (23.548, 113.587, 0.03),
    "Zengcheng": (23.291, 113.811, 0.05),
}

_WORDS = (
    "Jinsui", "Huacheng", "Yuehai", "Zhujiang", "Tianyu", "Lingnan", "Yangcheng", "Haiyin",
    "Xinghe", "Hongfu", "Ruifeng", "Kangle", "Fuli", "Jiahe", "Wanxiang", "Hengtai", "Dongfang",
    "Mingzhu", "Huanan", "Xinyue", "Guangda", "Anxin", "Longteng", "Baoli",
)  # fmt: skip
_STREETS = (
    "Tianhe", "Huangpu Avenue", "Zhongshan", "Dongfeng", "Jiefang", "Huanshi", "Guangzhou Avenue",
    "Jiangnan", "Xingang", "Baiyun Avenue", "Kexue", "Yingbin", "Fenghuang", "Jinshazhou",
)  # fmt: skip
_UNIT_TYPES = (
    "Property Management Co", "Residential Estate", "Hospital", "Shopping Mall", "Office Tower",
    "Hotel", "Industrial Park", "Gas Supply Station", "Food Factory", "Chemical Works",
)  # fmt: skip
_ELEVATOR_MAKERS = ("GZOTS", "SHMIT", "HTCGZ", "KNECN", "SCHDL", "TKCNG", "GZGRL")
_VESSEL_MAKERS = ("GZBLR", "CSSCV", "LNHGV", "HCPVT", "SYPVM")
_SPEEDS_BY_HEIGHT = ((11, (1.0, 1.5)), (20, (1.5, 1.75)), (33, (1.75, 2.5)), (40, (2.5,)))
_FIRST_INSTALL = date(2000, 1, 1)
_LAST_INSTALL = date(2024, 12, 31)


@dataclass(frozen=True, slots=True)
class Medium:
    """What a vessel holds, and what that implies for its sensors and ratings."""

    name: str
    liquefied: bool  # a liquid level is reported
    flammable: bool  # a combustible-gas detector is fitted
    design_pressures: tuple[float, ...]  # MPa, typical for the service
    design_temperature: float  # °C
    operating_temperature: tuple[float, float]  # °C, normal range
    share: float


MEDIA: dict[str, Medium] = {
    m.name: m
    for m in (
        Medium("LPG", True, True, (1.77, 1.8), 50.0, (24.0, 32.0), 0.25),
        Medium("ammonia", True, True, (2.16, 2.5), 50.0, (22.0, 30.0), 0.07),
        Medium("natural gas", False, True, (1.6, 2.5, 4.0), 60.0, (22.0, 32.0), 0.08),
        Medium("nitrogen", False, False, (1.6, 2.5), 50.0, (22.0, 30.0), 0.15),
        Medium("compressed air", False, False, (0.8, 1.0, 1.6), 150.0, (35.0, 45.0), 0.30),
        Medium("steam", False, False, (1.0, 1.6), 250.0, (150.0, 175.0), 0.15),
    )
}


@dataclass(frozen=True, slots=True)
class Firm:
    """Maintenance firm (维保单位)."""

    firm_id: str
    name: str
    tech_level: int  # 1 (weak) .. 5 (strong)
    credit_grade: str  # A / B / C
    credit_score: float  # 0..100


@dataclass(frozen=True, slots=True)
class UseUnit:
    """Use unit / owner (使用单位)."""

    unit_id: str
    name: str
    mgmt_level: int  # 1 .. 5
    district: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class ElevatorSpec:
    """Ratings of a traction passenger lift."""

    rated_speed: float  # m/s
    floors: int  # landings served
    bottom_floor: int

    @property
    def labels(self) -> list[int]:
        """Floor labels of the landings, bottom first."""
        return floor_labels(self.bottom_floor, self.floors)


@dataclass(frozen=True, slots=True)
class VesselSpec:
    """Ratings of a pressure vessel (MPa gauge, °C)."""

    design_pressure: float
    set_pressure: float  # safety-valve set pressure
    working_pressure: float  # nominal maximum working pressure (set / 1.05..1.10)
    design_temperature: float
    medium: str


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One registered device: identity, place, owners and ratings."""

    device_id: str
    kind: str  # "elevator" | "vessel"
    equipment_code: str
    address: str
    lat: float
    lon: float
    firm: Firm
    use_unit: UseUnit
    install_date: date
    elevator: ElevatorSpec | None = None
    vessel: VesselSpec | None = None

    @property
    def district(self) -> str:
        """District of the use unit's site."""
        return self.use_unit.district

    def registry_row(self) -> dict[str, str]:
        """The device as a row of the registry CSV (empty strings where not applicable)."""
        e, v = self.elevator, self.vessel
        return {
            "id": self.device_id,
            "equipment_code": self.equipment_code,
            "kind": self.kind,
            "district": self.district,
            "address": self.address,
            "lat": f"{self.lat:.6f}",
            "lon": f"{self.lon:.6f}",
            "firm_id": self.firm.firm_id,
            "firm_name": self.firm.name,
            "firm_tech_level": str(self.firm.tech_level),
            "firm_credit_grade": self.firm.credit_grade,
            "firm_credit_score": str(self.firm.credit_score),
            "use_unit_id": self.use_unit.unit_id,
            "use_unit_name": self.use_unit.name,
            "use_unit_mgmt_level": str(self.use_unit.mgmt_level),
            "install_date": self.install_date.isoformat(),
            "rated_speed": str(e.rated_speed) if e else "",
            "floors": str(e.floors) if e else "",
            "bottom_floor": str(e.bottom_floor) if e else "",
            "design_pressure": str(v.design_pressure) if v else "",
            "set_pressure": str(v.set_pressure) if v else "",
            "design_temperature": str(v.design_temperature) if v else "",
            "medium": v.medium if v else "",
            "max_working_pressure": str(v.working_pressure) if v else "",
        }


@dataclass(slots=True)
class Fleet:
    """A reproducible fleet: firms, use units and devices (elevators first, then vessels)."""

    seed: int
    firms: list[Firm]
    use_units: list[UseUnit]
    devices: list[DeviceSpec]
    by_id: dict[str, DeviceSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {d.device_id: d for d in self.devices}

    def __len__(self) -> int:
        return len(self.devices)

    def __iter__(self) -> Iterator[DeviceSpec]:
        return iter(self.devices)

    def ids_of(self, kind: str) -> list[str]:
        """Device ids of one kind, in fleet order."""
        return [d.device_id for d in self.devices if d.kind == kind]

    def write_registry_csv(self, path: str | Path) -> Path:
        """Write the registry CSV (header ``REGISTRY_COLUMNS``, UTF-8, one row per device)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=REGISTRY_COLUMNS)
            w.writeheader()
            for d in self.devices:
                w.writerow(d.registry_row())
        return p


def _weighted(rng: random.Random, options: dict[str, float]) -> str:
    return rng.choices(list(options), weights=list(options.values()))[0]


def _make_firms(rng: random.Random, n_devices: int) -> list[Firm]:
    firms = []
    for i in range(max(2, round(n_devices / 20))):
        grade = rng.choices("ABC", weights=(0.5, 0.4, 0.1))[0]
        lo, hi = {"A": (85.0, 99.0), "B": (70.0, 85.0), "C": (50.0, 70.0)}[grade]
        name = f"Guangzhou {rng.choice(_WORDS)} Elevator Engineering Co Ltd"
        firms.append(Firm(f"F{i + 1:03d}", name, rng.randint(1, 5), grade, round(rng.uniform(lo, hi), 1)))
    return firms


def _make_units(rng: random.Random, n_devices: int) -> list[UseUnit]:
    weights = {k: v[2] for k, v in DISTRICTS.items()}
    units = []
    for i in range(max(2, round(n_devices / 6))):
        district = _weighted(rng, weights)
        lat0, lon0, _ = DISTRICTS[district]
        name = f"{district} {rng.choice(_WORDS)} {rng.choice(_UNIT_TYPES)}"
        lat = lat0 + rng.uniform(-0.03, 0.03)
        lon = lon0 + rng.uniform(-0.03, 0.03)
        units.append(UseUnit(f"U{i + 1:04d}", name, rng.randint(1, 5), district, lat, lon))
    return units


def _install_date(rng: random.Random) -> date:
    return _FIRST_INSTALL + timedelta(days=rng.randrange((_LAST_INSTALL - _FIRST_INSTALL).days + 1))


def _equipment_code(rng: random.Random, variety: str, makers: tuple[str, ...], year: int, used: set[str]) -> str:
    # TSG 08-2017 设备代码: variety (4) + maker (5) + year (4) + serial (5) = 18 characters.
    while True:
        code = f"{variety}{rng.choice(makers)}{year:04d}{rng.randrange(100_000):05d}"
        if code not in used:
            used.add(code)
            return code


def _elevator_spec(rng: random.Random) -> ElevatorSpec:
    lo, hi = rng.choices(((6, 11), (12, 20), (21, 33), (34, 40)), weights=(0.30, 0.35, 0.25, 0.10))[0]
    floors = rng.randint(lo, hi)
    speeds = next(s for top, s in _SPEEDS_BY_HEIGHT if floors <= top)
    bottom = rng.choices((1, -1, -2), weights=(0.75, 0.15, 0.10))[0]
    return ElevatorSpec(rng.choice(speeds), floors, bottom)


def _vessel_spec(rng: random.Random) -> VesselSpec:
    medium = MEDIA[_weighted(rng, {m.name: m.share for m in MEDIA.values()})]
    design = rng.choice(medium.design_pressures)
    set_p = round(design * rng.uniform(0.95, 1.0), 2)
    working = round(set_p / rng.uniform(1.05, 1.10), 3)
    return VesselSpec(design, set_p, working, medium.design_temperature, medium.name)


def build_fleet(elevators: int, vessels: int, seed: int = 1) -> Fleet:
    """Build ``elevators`` lifts (``E000001``…) and ``vessels`` vessels (``V000001``…) from ``seed``."""
    if elevators < 0 or vessels < 0:
        raise ValueError("device counts must be >= 0")
    rng = random.Random(seed)
    n = elevators + vessels
    firms = _make_firms(rng, n)
    units = _make_units(rng, n)
    used: set[str] = set()
    devices: list[DeviceSpec] = []
    for kind, count in (("elevator", elevators), ("vessel", vessels)):
        for i in range(count):
            unit = rng.choice(units)
            installed = _install_date(rng)
            made = installed.year - rng.choice((0, 0, 1))
            street = f"{rng.randint(1, 999)} {rng.choice(_STREETS)} Road"
            address = f"{street} {unit.district} District Guangzhou"
            lat = round(unit.lat + rng.uniform(-0.002, 0.002), 6)
            lon = round(unit.lon + rng.uniform(-0.002, 0.002), 6)
            firm = rng.choice(firms)
            if kind == "elevator":
                code = _equipment_code(rng, "3110", _ELEVATOR_MAKERS, made, used)
                device = DeviceSpec(
                    f"E{i + 1:06d}", kind, code, address, lat, lon, firm, unit, installed,
                    elevator=_elevator_spec(rng),
                )  # fmt: skip
            else:
                variety = rng.choice(("2100", "2150"))
                code = _equipment_code(rng, variety, _VESSEL_MAKERS, made, used)
                device = DeviceSpec(
                    f"V{i + 1:06d}", kind, code, address, lat, lon, firm, unit, installed,
                    vessel=_vessel_spec(rng),
                )  # fmt: skip
            devices.append(device)
    return Fleet(seed, firms, units, devices)
