"""The risk grade of a device: documented factors → points → a score in [0, 100] → A–D.

Pure: the inputs are a :class:`RiskInputs` per device (the service fills them from the stores).
Every grade carries its breakdown, one line per factor with the value behind it and the reason
in both languages, like the "3+2" maintenance decisions.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

POLICY_FILE = Path(__file__).resolve().parent / "data" / "risk_policy.toml"
ENV_VAR = "SEMON_RISK_POLICY"
Grade = Literal["A", "B", "C", "D"]
GRADES: tuple[Grade, ...] = ("A", "B", "C", "D")


class RiskPolicyError(ValueError):
    """The risk policy file is invalid; the message names the file and the key."""


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Age(_S):
    points_per_year: float = Field(ge=0)
    max_points: float = Field(ge=0)
    unknown_points: float = Field(ge=0)


class _Open(_S):
    major_points: float = Field(ge=0)
    general_points: float = Field(ge=0)
    max_points: float = Field(ge=0)


class _Counted(_S):
    window_days: int = Field(ge=1)
    points_each: float = Field(ge=0)
    max_points: float = Field(ge=0)


class _Inspection(_S):
    overdue_points: float = Field(ge=0)
    unknown_points: float = Field(ge=0)
    valid_points: float = Field(ge=0)


class _Maintenance(_S):
    window_days: int = Field(ge=1)
    max_points: float = Field(ge=0)


class _Credit(_S):
    points: dict[str, float]
    unknown_points: float = Field(ge=0)


class _Grades(_S):
    A: float
    B: float
    C: float
    D: float
    open_major_floor: Grade
    names: dict[Grade, tuple[str, str]]
    draw_weights: dict[Grade, float]

    def weights(self) -> dict[str, float]:
        """The inspection draw's weight of each grade, keyed by grade letter."""
        return {str(g): w for g, w in self.draw_weights.items()}

    @model_validator(mode="after")
    def _ordered(self) -> _Grades:
        if not (self.A == 0 <= self.B < self.C < self.D <= 100) or self.B <= self.A:
            raise ValueError("grade bounds must be 0 = A < B < C < D ≤ 100")
        if set(self.names) != set(GRADES) or set(self.draw_weights) != set(GRADES):
            raise ValueError("names and draw_weights need every grade A–D")
        if any(w <= 0 for w in self.draw_weights.values()):
            raise ValueError("draw_weights must be > 0")
        return self


class RiskPolicy(_S):
    """The validated risk policy."""

    version: str
    age: _Age
    open_hazards: _Open
    recent_hazards: _Counted
    faults: _Counted
    entrapments: _Counted
    inspection: _Inspection
    maintenance: _Maintenance
    credit: _Credit
    grades: _Grades


def load_risk_policy(path: Path | None = None) -> RiskPolicy:
    """Read and validate ``SEMON_RISK_POLICY`` or the packaged policy."""
    p = path or Path(os.environ.get(ENV_VAR) or POLICY_FILE)
    try:
        return RiskPolicy.model_validate(tomllib.loads(p.read_text(encoding="utf-8")))
    except OSError as e:
        raise RiskPolicyError(f"{ENV_VAR}: cannot read {p}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise RiskPolicyError(f"{p}: not TOML: {e}") from None
    except ValidationError as e:
        err = e.errors()[0]
        raise RiskPolicyError(f"{p}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None


@lru_cache(maxsize=1)
def default_risk_policy() -> RiskPolicy:
    """The policy in force for this process (read once)."""
    return load_risk_policy()


InspectionState = Literal["valid", "overdue", "unknown"]


@dataclass(frozen=True, slots=True)
class RiskInputs:
    """What the grade of one device is computed from (counts over the policy's windows)."""

    device_id: str
    kind: str
    commissioned: date | None
    open_major: int = 0
    open_general: int = 0
    recent_hazards: int = 0
    faults: int = 0
    entrapments: int = 0
    inspection: InspectionState = "unknown"
    visits: int = 0
    visits_on_time: int = 0
    credit_grade: str | None = None
    district: str | None = None
    firm_id: str | None = None


@dataclass(frozen=True, slots=True)
class Factor:
    """One line of a grade's breakdown."""

    factor: str
    value: Any
    points: float
    reason_zh: str
    reason_en: str


@dataclass(frozen=True, slots=True)
class RiskGrade:
    """A device's grade, its score and why."""

    device_id: str
    grade: Grade
    score: float
    breakdown: list[Factor] = field(default_factory=list)
    floor: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (API, CLI)."""
        return {
            "device_id": self.device_id,
            "grade": self.grade,
            "score": self.score,
            "floor": self.floor,
            "breakdown": [
                {
                    "factor": f.factor,
                    "value": f.value,
                    "points": f.points,
                    "reason_zh": f.reason_zh,
                    "reason_en": f.reason_en,
                }
                for f in self.breakdown
            ],
        }


def _capped(n: int, each: float, cap: float) -> float:
    return float(min(cap, n * each))


def grade_of_score(score: float, policy: RiskPolicy) -> Grade:
    """The grade whose lower bound is the highest one ≤ ``score`` (bounds are inclusive)."""
    g = policy.grades
    out: Grade = "A"
    for name, low in (("B", g.B), ("C", g.C), ("D", g.D)):
        if score >= low:
            out = name  # type: ignore[assignment]
    return out


def years_between(start: date, end: date) -> float:
    """Whole and fractional years of service (365.25-day years)."""
    return max(0.0, (end - start).days / 365.25)


def grade(x: RiskInputs, as_of: date, policy: RiskPolicy | None = None) -> RiskGrade:
    """Grade one device as of a local calendar day."""
    p = policy or default_risk_policy()
    out: list[Factor] = []
    if x.commissioned is None:
        out.append(Factor("age", None, p.age.unknown_points, "投用日期未知", "commission date unknown"))
    else:
        yrs = years_between(x.commissioned, as_of)
        pts = min(p.age.max_points, round(yrs * p.age.points_per_year, 2))
        out.append(Factor("age", round(yrs, 2), pts, f"已使用 {yrs:.1f} 年", f"{yrs:.1f} years in service"))
    oh = p.open_hazards
    pts = min(oh.max_points, x.open_major * oh.major_points + x.open_general * oh.general_points)
    out.append(
        Factor(
            "open_hazards",
            {"major": x.open_major, "general": x.open_general},
            float(pts),
            f"未闭环重大隐患 {x.open_major} 项、一般隐患 {x.open_general} 项",
            f"{x.open_major} major and {x.open_general} general hazards open",
        )
    )
    for name, n, cfg, zh, en in (
        (
            "recent_hazards",
            x.recent_hazards,
            p.recent_hazards,
            "近 {d} 天发现隐患 {n} 项",
            "{n} hazards found in {d} days",
        ),
        ("faults", x.faults, p.faults, "近 {d} 天重要故障 {n} 次", "{n} critical/major faults in {d} days"),
        ("entrapments", x.entrapments, p.entrapments, "近 {d} 天困人 {n} 次", "{n} entrapments in {d} days"),
    ):
        out.append(
            Factor(
                name,
                n,
                _capped(n, cfg.points_each, cfg.max_points),
                zh.format(n=n, d=cfg.window_days),
                en.format(n=n, d=cfg.window_days),
            )
        )
    ins = p.inspection
    ipts = {"valid": ins.valid_points, "overdue": ins.overdue_points, "unknown": ins.unknown_points}[x.inspection]
    izh = {"valid": "定期检验有效", "overdue": "定期检验超期或不合格", "unknown": "无检验记录"}[x.inspection]
    ien = {
        "valid": "periodic inspection valid",
        "overdue": "periodic inspection overdue or failed",
        "unknown": "no inspection on record",
    }[x.inspection]
    out.append(Factor("inspection", x.inspection, ipts, izh, ien))
    if x.kind == "elevator":
        m = p.maintenance
        if x.visits == 0:
            out.append(
                Factor(
                    "maintenance",
                    None,
                    m.max_points,
                    f"近 {m.window_days} 天无维保记录",
                    f"no maintenance recorded in {m.window_days} days",
                )
            )
        else:
            share = x.visits_on_time / x.visits
            out.append(
                Factor(
                    "maintenance",
                    round(share, 4),
                    round(m.max_points * (1 - share), 2),
                    f"维保按时率 {share:.0%}",
                    f"maintenance on time {share:.0%}",
                )
            )
    c = p.credit
    if x.credit_grade is None or x.credit_grade not in c.points:
        why = "无维保单位记录" if x.firm_id is None else "维保单位信用等级未知"
        why_en = "no firm on record" if x.firm_id is None else "firm's credit grade unknown"
        out.append(Factor("credit", x.credit_grade, c.unknown_points, why, why_en))
    else:
        out.append(
            Factor(
                "credit",
                x.credit_grade,
                c.points[x.credit_grade],
                f"维保单位信用等级 {x.credit_grade}",
                f"firm credit grade {x.credit_grade}",
            )
        )
    score = round(min(100.0, sum(f.points for f in out)), 2)
    g = grade_of_score(score, p)
    floor = None
    if x.open_major > 0 and GRADES.index(g) < GRADES.index(p.grades.open_major_floor):
        g, floor = p.grades.open_major_floor, "open_major_hazard"
    return RiskGrade(x.device_id, g, score, out, floor)
