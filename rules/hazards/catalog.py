"""The hazard catalog (``data/hazards.toml``): codes, classes, names in both languages, the
alarm types that propose a hazard, and the rectification deadline of each class."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CATALOG_FILE = Path(__file__).resolve().parent / "data" / "hazards.toml"
ENV_VAR = "SEMON_HAZARD_RULES_FILE"
HazardClass = Literal["major", "general"]
CLASSES: tuple[HazardClass, ...] = ("major", "general")
CLASS_NAMES = {"major": ("重大隐患", "Major hazard"), "general": ("一般隐患", "General hazard")}


class HazardCatalogError(ValueError):
    """The hazard catalog is invalid; the message names the file and the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HazardType(_Strict):
    """One kind of hidden hazard."""

    code: str = Field(pattern=r"^[A-Z0-9-]{3,40}$")
    kind: Literal["elevator", "vessel"]
    class_: HazardClass = Field(alias="class")
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    basis: str = Field(min_length=1)
    proposed_by: list[str] = []


class _File(_Strict):
    deadline_days: dict[HazardClass, int]
    hazard: list[HazardType] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> _File:
        codes = [h.code for h in self.hazard]
        if len(set(codes)) != len(codes):
            raise ValueError("duplicate hazard codes")
        missing = set(CLASSES) - set(self.deadline_days)
        if missing:
            raise ValueError(f"deadline_days lacks {sorted(missing)}")
        if any(d < 1 for d in self.deadline_days.values()):
            raise ValueError("deadline_days must be ≥ 1")
        # One alarm type proposes at most one hazard per kind, so a proposal is unambiguous.
        seen: dict[tuple[str, str], str] = {}
        for h in self.hazard:
            for t in h.proposed_by:
                other = seen.setdefault((h.kind, t), h.code)
                if other != h.code:
                    raise ValueError(f"alarm type {t!r} proposes both {other} and {h.code} for {h.kind}")
        return self


@dataclass(frozen=True, slots=True)
class HazardCatalog:
    """The validated catalog."""

    types: dict[str, HazardType]
    deadline_days: dict[str, int]
    path: Path

    def get(self, code: str) -> HazardType:
        """The hazard type of ``code`` or KeyError."""
        return self.types[code]

    def proposal(self, kind: str, alarm_type: str) -> HazardType | None:
        """The hazard an alarm of ``alarm_type`` on a ``kind`` device suggests, if any."""
        for h in self.types.values():
            if h.kind == kind and alarm_type in h.proposed_by:
                return h
        return None

    def proposing_types(self) -> set[str]:
        """Every alarm type that proposes some hazard."""
        return {t for h in self.types.values() for t in h.proposed_by}


def load_catalog(path: Path | None = None) -> HazardCatalog:
    """Read and validate the catalog (``SEMON_HAZARD_RULES_FILE`` or the packaged one)."""
    p = path or Path(os.environ.get(ENV_VAR) or CATALOG_FILE)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
        f = _File.model_validate(raw)
    except OSError as e:
        raise HazardCatalogError(f"{ENV_VAR}: cannot read {p}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise HazardCatalogError(f"{p}: not TOML: {e}") from None
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise HazardCatalogError(f"{p}: {where}: {err['msg']}") from None
    return HazardCatalog({h.code: h for h in f.hazard}, {str(k): v for k, v in f.deadline_days.items()}, p)


@lru_cache(maxsize=1)
def default_catalog() -> HazardCatalog:
    """The catalog in force for this process (read once)."""
    return load_catalog()
