"""The maintenance policy: a versioned TOML file, validated with pydantic into clear errors.

``load_policy()`` reads ``SEMON_MAINTENANCE_POLICY`` when set, else the packaged
``default_policy.toml`` (domain.md §4.5). Every decision stores the policy's ``version`` and
the SHA-256 of the file it came from, so an audit can tell which rules were in force.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_VAR = "SEMON_MAINTENANCE_POLICY"
SEVERITIES = ("critical", "major", "minor", "warning")
Severity = Literal["critical", "major", "minor", "warning"]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveDays = Annotated[int, Field(ge=1, le=3660)]


class PolicyError(ValueError):
    """The policy file is missing, not TOML, or breaks a rule; the message says where and why."""


class _Strict(BaseModel):
    # A misspelt key must fail loudly: silently ignoring it would run a different policy.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gates(_Strict):
    """Conditions every on-demand elevator must meet."""

    credit_grades: list[str] = Field(min_length=1, description="credit grades, best first")
    min_credit_grade: str
    min_online_ratio: Fraction
    online_window_days: PositiveDays
    require_valid_inspection: bool
    max_equipment_entrapments: int = Field(ge=0)
    entrapment_window_days: PositiveDays
    blocking_alarm_severities: list[Severity]
    require_liability_insurance: bool = False
    require_use_unit: bool = False
    firm_min_paperless_rate: Fraction = 0.0
    firm_min_on_time_rate: Fraction = 0.0
    firm_min_elevators: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _grade_known(self) -> Gates:
        if len(set(self.credit_grades)) != len(self.credit_grades):
            raise ValueError("credit_grades has duplicates")
        if self.min_credit_grade not in self.credit_grades:
            raise ValueError(f"min_credit_grade {self.min_credit_grade!r} is not one of credit_grades")
        return self


class AgeScore(_Strict):
    """Service-age component: full points when new, 0 at ``zero_at_years``."""

    points: float = Field(ge=0)
    zero_at_years: float = Field(gt=0)


class LevelScore(_Strict):
    """A level (1..5) mapped linearly: ``min_level`` → 0 points, ``max_level`` → full points."""

    points: float = Field(ge=0)
    min_level: int
    max_level: int

    @model_validator(mode="after")
    def _order(self) -> LevelScore:
        if self.max_level <= self.min_level:
            raise ValueError("max_level must be greater than min_level")
        return self


class CreditScore(_Strict):
    """Firm credit component: points × grade factor × credit score / 100."""

    points: float = Field(ge=0)
    grade_factor: dict[str, Fraction]


class HealthScore(_Strict):
    """Monitoring component: points × health index / 100."""

    points: float = Field(ge=0)


class Score(_Strict):
    """The five "3+2" components; their points add up to 100."""

    age: AgeScore
    firm_tech_level: LevelScore
    use_unit_mgmt_level: LevelScore
    firm_credit: CreditScore
    health: HealthScore

    @model_validator(mode="after")
    def _hundred(self) -> Score:
        total = sum(c.points for c in (self.age, self.firm_tech_level, self.use_unit_mgmt_level, self.firm_credit,
                                       self.health))  # fmt: skip
        if abs(total - 100.0) > 1e-6:
            raise ValueError(f"component points must add up to 100 (they add up to {total:g})")
        return self


HEALTH_COMPONENTS = ("fault_rate", "online", "door_drift", "run_anomaly")


class Health(_Strict):
    """How the monitoring health index (0–100) is made from live data."""

    window_days: PositiveDays
    online_bucket_minutes: int = Field(ge=1, le=1440)
    weights: dict[Literal["fault_rate", "online", "door_drift", "run_anomaly"], Annotated[float, Field(ge=0)]]
    faults_for_zero: float = Field(gt=0)
    online_floor: Annotated[float, Field(ge=0.0, lt=1.0)]
    door_recent_days: PositiveDays
    door_baseline_days: PositiveDays
    door_drift_for_zero: float = Field(gt=0)
    run_recent_days: PositiveDays
    run_baseline_days: PositiveDays
    run_deviation_for_zero: float = Field(gt=0)

    @model_validator(mode="after")
    def _some_weight(self) -> Health:
        if sum(self.weights.values()) <= 0:
            raise ValueError("weights must not all be 0")
        return self


class Tier(_Strict):
    """An on-demand interval, granted when the score (and optionally the credit grade) qualifies."""

    mode: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    interval_days: PositiveDays
    min_score: float = Field(ge=0, le=100)
    credit_grades: list[str] | None = None


class Standard(_Strict):
    """The statutory cycle every elevator falls back to."""

    mode: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    interval_days: PositiveDays


class Reversion(_Strict):
    """Triggers that put an elevator back on the standard cycle at once."""

    entrapment: bool
    major_faults: int = Field(ge=1)
    major_fault_window_days: PositiveDays
    major_fault_severities: list[Severity]
    offline_hours: float = Field(gt=0)
    entrapment_alarm_types: list[str]
    offline_alarm_types: list[str]
    not_fault_alarm_types: list[str]
    external_causes: list[str]


class Calendar(_Strict):
    """Quarterly / half-year / yearly items: once per calendar period."""

    due_soon_days: int = Field(ge=0, le=90)


class Inspection(_Strict):
    """Periodic inspection intervals (domain.md §5)."""

    due_soon_days: int = Field(ge=0, le=365)
    elevator_interval_years: int = Field(ge=1, le=10)
    vessel_first_within_years: int = Field(ge=1, le=10)
    vessel_interval_years_by_grade: dict[str, Annotated[int, Field(ge=1, le=10)]]

    @model_validator(mode="after")
    def _grades(self) -> Inspection:
        bad = [g for g in self.vessel_interval_years_by_grade if not g.isdigit()]
        if bad or not self.vessel_interval_years_by_grade:
            raise ValueError('vessel_interval_years_by_grade needs safety grades as keys, e.g. { "1" = 6 }')
        return self


class Compliance(_Strict):
    """Severities of the compliance alarms the maintenance feature raises."""

    maintenance_overdue_severity: Severity
    inspection_overdue_severity: Severity
    inspection_due_soon_severity: Severity
    reversion_severity: Severity


class Policy(_Strict):
    """A whole maintenance policy (see default_policy.toml for every field's meaning)."""

    schema_: int = Field(alias="schema")
    version: str = Field(min_length=1, max_length=64)
    description: str = ""
    gates: Gates
    score: Score
    health: Health
    tiers: list[Tier] = Field(min_length=1)
    standard: Standard
    reversion: Reversion
    calendar: Calendar
    inspection: Inspection
    compliance: Compliance
    # Filled in by the loader, not by the file.
    sha256: str = Field("", exclude=True)
    source: str = Field("", exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.schema_ != 1:
            raise ValueError(f"schema {self.schema_} is not supported (this semon reads schema 1)")
        modes = [t.mode for t in self.tiers] + [self.standard.mode]
        if len(set(modes)) != len(modes):
            raise ValueError("tier modes and the standard mode must be distinct")
        scores = [t.min_score for t in self.tiers]
        if scores != sorted(scores, reverse=True):
            raise ValueError("tiers must be listed from the highest min_score down")
        for t in self.tiers:
            if t.interval_days < self.standard.interval_days:
                raise ValueError(f"tier {t.mode}: interval_days is shorter than the standard cycle")
            unknown = set(t.credit_grades or ()) - set(self.gates.credit_grades)
            if unknown:
                raise ValueError(f"tier {t.mode}: unknown credit grade(s) {sorted(unknown)}")
        missing = set(self.gates.credit_grades) - set(self.score.firm_credit.grade_factor)
        if missing:
            raise ValueError(f"score.firm_credit.grade_factor lacks grade(s) {sorted(missing)}")
        return self

    # -- convenience -------------------------------------------------------------------
    def grade_rank(self, grade: str | None) -> int | None:
        """0 for the best grade, larger is worse; None for an unknown or missing grade."""
        try:
            return self.gates.credit_grades.index(grade) if grade is not None else None
        except ValueError:
            return None

    def vessel_interval_years(self, grade: int | None) -> int | None:
        """Re-inspection interval of a vessel of this safety grade (None: grade unknown / not listed)."""
        if grade is None:
            return None
        return self.inspection.vessel_interval_years_by_grade.get(str(grade))

    @property
    def modes(self) -> list[str]:
        """Every mode, longest interval first, the standard last."""
        return [t.mode for t in self.tiers] + [self.standard.mode]

    def interval_of(self, mode: str) -> int:
        """Interval (days) of half-month items in ``mode``."""
        for t in self.tiers:
            if t.mode == mode:
                return t.interval_days
        return self.standard.interval_days


def default_policy_path() -> Path:
    """The packaged default policy file."""
    return Path(str(resources.files("semon.rules.maintenance").joinpath("default_policy.toml")))


def _format_errors(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_policy(text: str, source: str = "<string>") -> Policy:
    """Validate TOML text as a policy; :class:`PolicyError` lists every problem with its key path."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{source}: not valid TOML: {e}") from e
    try:
        policy = Policy.model_validate(data)
    except ValidationError as e:
        raise PolicyError(f"{source}: invalid maintenance policy:\n{_format_errors(e)}") from e
    sha = hashlib.sha256(text.encode()).hexdigest()
    return policy.model_copy(update={"sha256": sha, "source": source})


def load_policy(path: Path | str | None = None) -> Policy:
    """The policy at ``path``, else at ``$SEMON_MAINTENANCE_POLICY``, else the packaged default."""
    chosen = path if path is not None else (os.environ.get(ENV_VAR) or None)
    p = Path(chosen) if chosen is not None else default_policy_path()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise PolicyError(f"{p}: cannot read the maintenance policy: {e.strerror or e}") from e
    return parse_policy(text, str(p))
