"""Terminal code tables: GB/T 24476-2017 numbering and alternatives, as data (rules/data/codes.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from semon.rules.base import RuleSpec, Severity

CODES_FILE = Path(__file__).resolve().parent / "data" / "codes.toml"


class CodeDef(BaseModel):
    """What one code means."""

    model_config = ConfigDict(extra="forbid")
    alarm_type: str
    severity: Severity
    text: str = ""


class SchemeDef(BaseModel):
    """One platform's numbering."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    clear_all: list[int] = []
    codes: dict[int, CodeDef] = {}


@dataclass(frozen=True, slots=True)
class CodeRule:
    """A mapped code: the alarm it raises, as a rule spec so it shares the alarm lifecycle."""

    spec: RuleSpec
    code: int
    scheme: str
    text: str


class CodeTable:
    """Lookup of (scheme, code) → alarm; ``clear_all`` codes end every code-raised alarm."""

    def __init__(self, path: Path = CODES_FILE) -> None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            schemes = {k: SchemeDef.model_validate(v) for k, v in raw.get("schemes", {}).items()}
        except (OSError, tomllib.TOMLDecodeError, ValidationError) as e:
            raise ValueError(f"{path}: {e}") from e
        self.schemes = schemes
        self._rules: dict[tuple[str, int], CodeRule] = {}
        for name, sch in schemes.items():
            for code, d in sch.codes.items():
                spec = RuleSpec(
                    id=f"code.{name}.{code}",
                    kind="elevator",
                    alarm_type=d.alarm_type,
                    severity=d.severity,
                    explain=d.text,
                )
                self._rules[(name, code)] = CodeRule(spec, code, name, d.text)

    def lookup(self, scheme: str, code: int) -> CodeRule | None:
        """The alarm a code raises, if any."""
        return self._rules.get((scheme, code))

    def clears_all(self, scheme: str, code: int) -> bool:
        """True for "back to normal" codes."""
        sch = self.schemes.get(scheme)
        return sch is not None and code in sch.clear_all

    def knows(self, scheme: str) -> bool:
        """Whether the scheme has a table."""
        return scheme in self.schemes
