"""The rule catalog: definitions as data (rules/data/catalog.toml), operator overrides, and the
per-device resolution of thresholds into compiled evaluators.

Resolution order, most general first: built-in catalog → operator rules file (``[rules.<id>]``
sections, then ``[[overrides]]`` matching the device's kind, its firm, the device itself) →
``attributes.rule_params`` in the device's registry record. Device attributes such as rated
speed or set pressure are read directly by the expressions.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from semon.contract.messages import ServiceMode
from semon.domain import DeviceInfo, effective_max_working_pressure
from semon.rules import expr
from semon.rules.base import RuleSpec, Severity

DATA = Path(__file__).resolve().parent / "data"
CATALOG_FILE = DATA / "catalog.toml"

# Names expressions may use, per kind: status fields, device attributes, derived values.
STATUS_FIELDS = {
    "elevator": ("mode", "running", "dir", "floor", "door_zone", "door", "occupied", "speed", "load",
                 "run_count", "run_hours", "alarm_button", "faults"),
    "vessel": ("pressure", "temperature", "level", "valve_discharge", "gas_lel"),
}  # fmt: skip
DEVICE_ATTRS = {
    "elevator": ("rated_speed", "landings", "bottom_floor", "top_floor"),
    "vessel": ("set_pressure", "max_working_pressure", "design_pressure", "design_temperature"),
}
DERIVED = {
    "elevator": (),
    "vessel": ("pressure_rate", "pressure_still_s", "temperature_still_s", "pressure_valid"),
}
# Elevator service modes (contract v1); rules of kinds without a mode apply whatever happens.
MODES: tuple[str, ...] = tuple(m.value for m in ServiceMode)

Param = float | int | bool | str


class RulesConfigError(ValueError):
    """The catalog or an operator rules file is invalid; the message says where and why."""


class Level(BaseModel):
    """One rung of a severity ladder."""

    model_config = ConfigDict(extra="forbid")
    severity: Severity
    when: str


class Repeat(BaseModel):
    """Repetition: ``count`` rising edges of the level condition within ``within_s``."""

    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=2)
    within_s: float = Field(gt=0)
    reset: str | None = None


class RuleDef(BaseModel):
    """A rule as written in the catalog."""

    model_config = ConfigDict(extra="forbid")
    id: str
    kind: Literal["elevator", "vessel"]
    alarm_type: str
    # The alarm type's name for people (the console; tests/platform/test_i18n.py wants both).
    name_zh: str = ""
    name_en: str = ""
    levels: list[Level] = Field(min_length=1)
    clear: str | None = None
    trigger_for_s: float | str = 0
    clear_for_s: float = Field(0, ge=0)
    backdate_s: str | None = None
    repeat: Repeat | None = None
    requires: list[str] = []
    params: dict[str, Param] = {}
    details: dict[str, str] = {}
    explain: str = ""
    source: str = ""
    enabled: bool = True
    modes: dict[str, str] = {}
    not_modes: dict[str, str] = {}

    @model_validator(mode="after")
    def _modes_complete(self) -> RuleDef:
        if self.kind != "elevator":
            if self.modes or self.not_modes:
                raise ValueError(f"{self.id}: only elevator rules have service modes")
            return self
        for table in (self.modes, self.not_modes):
            unknown = set(table) - {*MODES, "*"}
            if unknown:
                raise ValueError(f"{self.id}: unknown service mode(s) {sorted(unknown)} (known: {', '.join(MODES)})")
        both = (set(self.modes) & set(self.not_modes)) - {"*"}
        if both or ("*" in self.modes and "*" in self.not_modes):
            raise ValueError(f"{self.id}: mode(s) {sorted(both) or ['*']} both in modes and not_modes")
        missing = [m for m in MODES if m not in self.modes and m not in self.not_modes]
        if missing and "*" not in self.modes and "*" not in self.not_modes:
            raise ValueError(f"{self.id}: say whether the rule applies in mode(s) {', '.join(missing)}, and why")
        return self

    def mode_matrix(self) -> dict[str, tuple[bool, str]]:
        """Every service mode → (the rule applies, why); empty for kinds without modes."""
        if self.kind != "elevator":
            return {}
        out = {}
        for m in MODES:
            if m in self.modes:
                out[m] = (True, self.modes[m])
            elif m in self.not_modes:
                out[m] = (False, self.not_modes[m])
            elif "*" in self.modes:
                out[m] = (True, self.modes["*"])
            else:
                out[m] = (False, self.not_modes["*"])
        return out

    def applies_in(self) -> tuple[str, ...] | None:
        """The modes the rule applies in, or None when it applies whatever the mode."""
        m = self.mode_matrix()
        if not m or all(a for a, _ in m.values()):
            return None
        return tuple(k for k, (a, _) in m.items() if a)


class RulePatch(BaseModel):
    """What an operator may change about a rule without code."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    params: dict[str, Param] = {}
    trigger_for_s: float | str | None = None
    clear_for_s: float | None = Field(None, ge=0)


class Override(RulePatch):
    """A patch for one rule, limited to a device kind, a firm or one device."""

    rule: str
    kind: str | None = None
    firm: str | None = None
    device: str | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> Override:
        if sum(x is not None for x in (self.kind, self.firm, self.device)) != 1:
            raise ValueError("an override names exactly one of kind, firm or device")
        return self


class OfflineDef(BaseModel):
    """Terminal-offline detection (timer based)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    keepalive_s: float = Field(60, gt=0)
    factor: float = Field(3, ge=1)
    severity: Severity = Severity.minor
    severity_if_faulted: Severity = Severity.major
    source: str = ""


class SensorRange(BaseModel):
    """Physical range of a vessel's pressure sensor: readings outside it are invalid."""

    model_config = ConfigDict(extra="forbid")
    pressure_min_mpa: float = 0.0
    pressure_max_design_ratio: float = Field(1.5, gt=0)

    def pressure_valid(self, p: float, design_pressure: float | None) -> bool:
        """The reading is inside the range (no design pressure on record: no upper bound)."""
        if p < self.pressure_min_mpa:
            return False
        return design_pressure is None or not expr.exceeds(p, self.pressure_max_design_ratio * design_pressure)


class CatalogFile(BaseModel):
    """The built-in catalog file."""

    model_config = ConfigDict(extra="forbid")
    version: int
    offline: OfflineDef = OfflineDef()
    sensor_range: SensorRange = SensorRange()
    rule: list[RuleDef]


class RulesFile(BaseModel):
    """An operator's rules file (``SEMON_RULES_FILE``)."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    offline: dict[str, Any] = {}
    rules: dict[str, RulePatch] = {}
    overrides: list[Override] = []


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise RulesConfigError(f"{path}: {e}") from e


def _errors(path: Path, e: ValidationError) -> RulesConfigError:
    lines = [f"  {'.'.join(str(p) for p in x['loc'])}: {x['msg']}" for x in e.errors(include_url=False)]
    return RulesConfigError(f"{path}:\n" + "\n".join(lines))


@dataclass(frozen=True)
class CompiledRule:
    """A rule of one parameter variant: spec, parsed expressions, levels."""

    spec: RuleSpec
    defn: RuleDef
    params: dict[str, Param]
    severities: tuple[Severity, ...]
    details: dict[str, CodeType]
    trigger_for: CodeType | float
    repeat: Repeat | None
    reset: ast.expr | None
    backdate: CodeType | None = None

    def message(self, device_id: str, details: dict[str, Any]) -> str:
        """The alarm's human explanation."""
        try:
            return self.defn.explain.format(device=device_id, **details)
        except (KeyError, ValueError, TypeError):
            return f"{self.spec.alarm_type} on {device_id}"


@dataclass
class DeviceRules:
    """Everything the engine needs to run a device's rules: one compiled call per message.

    Shared by every device with the same effective rules and attributes: read-only once built.
    """

    rules: list[CompiledRule]
    evaluate: Callable[[dict[str, Any], dict[str, Any], Mapping[str, Any]], tuple[int, ...]]
    attrs: dict[str, Any]
    trigger_ms: list[int]
    clear_ms: list[int]
    reset: Callable[[dict[str, Any], dict[str, Any], Mapping[str, Any]], tuple[bool, ...]] | None = None
    derived: tuple[str, ...] = field(default=())
    all_clear: tuple[int, ...] = field(default=())  # every rule says CLEAR: the common case
    rep: tuple[int, ...] = field(default=())  # indices of the repetition (edge/window) rules


def device_attrs(d: DeviceInfo) -> dict[str, Any]:
    """Attributes of a device as expression variables."""
    landings = d.floors
    top = None
    if d.floors and d.bottom_floor is not None:
        # Landing labels count up from the bottom floor and skip 0 (1 follows -1).
        top = d.bottom_floor + d.floors - 1
        if d.bottom_floor < 0 <= top:
            top += 1
    return {
        "rated_speed": d.rated_speed,
        "landings": landings,
        "bottom_floor": d.bottom_floor,
        "top_floor": top,
        "set_pressure": d.set_pressure,
        "max_working_pressure": effective_max_working_pressure(d.max_working_pressure, d.set_pressure),
        "design_pressure": d.design_pressure,
        "design_temperature": d.design_temperature,
    }


class Catalog:
    """The loaded catalog plus operator overrides; resolves and compiles rules per device."""

    def __init__(self, rules_file: Path | None = None, catalog_file: Path = CATALOG_FILE) -> None:
        raw = _load_toml(catalog_file)
        try:
            base = CatalogFile.model_validate(raw)
        except ValidationError as e:
            raise _errors(catalog_file, e) from e
        ops = RulesFile()
        if rules_file is not None:
            try:
                ops = RulesFile.model_validate(_load_toml(rules_file))
            except ValidationError as e:
                raise _errors(rules_file, e) from e
        self.defs: dict[str, RuleDef] = {}
        for r in base.rule:
            if r.id in self.defs:
                raise RulesConfigError(f"{catalog_file}: rule id {r.id!r} defined twice")
            self.defs[r.id] = r
        for rid, patch in ops.rules.items():
            if rid not in self.defs:
                raise RulesConfigError(f"{rules_file}: [rules.{rid}] names no rule (known: {', '.join(self.defs)})")
            self.defs[rid] = _apply(self.defs[rid], patch, f"{rules_file}: [rules.{rid}]")
        for o in ops.overrides:
            if o.rule not in self.defs:
                raise RulesConfigError(f"{rules_file}: override for unknown rule {o.rule!r}")
        self.overrides = ops.overrides
        self.sensor_range = base.sensor_range
        try:
            self.offline = OfflineDef.model_validate({**base.offline.model_dump(), **ops.offline})
        except ValidationError as e:
            raise _errors(rules_file or catalog_file, e) from e
        self._variants: dict[
            tuple[Any, ...], tuple[list[CompiledRule], Callable[..., Any], Callable[..., Any] | None]
        ] = {}
        # Devices with the same rules and the same attributes share one DeviceRules: a city's
        # fleet has few distinct (model, landings, speed) combinations, and a DeviceRules of its
        # own costs each device about 1 kB (issue 17: ≤ 2 kB of rule state per device).
        self._shared: dict[tuple[Any, ...], DeviceRules] = {}
        # Validate every rule (and every override) now, not when the first device arrives.
        for r in self.defs.values():
            self._compile_rule(r, r.params)
        for o in self.overrides:
            r = self.defs[o.rule]
            self._compile_rule(_apply(r, o, f"override for {o.rule}"), {**r.params, **o.params})

    # -- resolution ---------------------------------------------------------------------
    def _effective(self, d: DeviceInfo) -> list[RuleDef]:
        out = []
        rp = (d.attributes or {}).get("rule_params", {}) if isinstance(d.attributes, dict) else {}
        for r in self.defs.values():
            if r.kind != d.kind:
                continue
            eff = r
            for scope in ("kind", "firm", "device"):
                for o in self.overrides:
                    if (
                        o.rule == r.id
                        and getattr(o, scope) == {"kind": d.kind, "firm": d.firm_id, "device": d.id}[scope]
                    ):
                        eff = _apply(eff, o, f"override for {r.id}")
            if r.id in rp:
                eff = _apply(eff, RulePatch(params=rp[r.id]), f"device {d.id} rule_params[{r.id}]")
            out.append(eff)
        return out

    def for_device(self, d: DeviceInfo) -> DeviceRules:
        """Compile (or reuse) the evaluator for this device's effective rules."""
        attrs = device_attrs(d)
        active = [r for r in self._effective(d) if r.enabled and all(attrs.get(a) is not None for a in r.requires)]
        key = (d.kind, tuple((r.id, tuple(sorted(r.params.items())), r.trigger_for_s, r.clear_for_s) for r in active))
        if key not in self._variants:
            compiled = [self._compile_rule(r, r.params) for r in active]
            self._variants[key] = (compiled, *_build_functions(d.kind, compiled))
        compiled, fn, reset = self._variants[key]
        shared_key = (key, tuple(attrs.items()))
        shared = self._shared.get(shared_key)
        if shared is not None:
            return shared
        env = {**attrs}
        trig = []
        for c in compiled:
            if isinstance(c.trigger_for, float):
                trig.append(round(c.trigger_for * 1000))
            else:  # round, not int(): 0.57 s is 569.999… ms in binary
                trig.append(round(float(expr.evaluate(c.trigger_for, {**env, **c.params})) * 1000))
        self._shared[shared_key] = shared = DeviceRules(
            rules=compiled,
            evaluate=fn,
            attrs=attrs,
            trigger_ms=trig,
            clear_ms=[round(c.defn.clear_for_s * 1000) for c in compiled],
            reset=reset,
            derived=DERIVED[d.kind],
            all_clear=(-1,) * len(compiled),
            rep=tuple(i for i, c in enumerate(compiled) if c.repeat is not None),
        )
        return shared

    def _compile_rule(self, r: RuleDef, params: dict[str, Param]) -> CompiledRule:
        names = set(STATUS_FIELDS[r.kind]) | set(DEVICE_ATTRS[r.kind]) | set(DERIVED[r.kind])
        clash = names & set(params)
        if clash:
            raise RulesConfigError(f"rule {r.id}: params {sorted(clash)} shadow status fields or attributes")
        names |= set(params)
        where = f"rule {r.id}"
        for lv in r.levels:
            expr.parse(lv.when, names, what=f"{where} level {lv.severity}")
        if r.clear:
            expr.parse(r.clear, names, what=f"{where} clear")
        for a in r.requires:
            if a not in DEVICE_ATTRS[r.kind]:
                raise RulesConfigError(f"{where}: requires unknown attribute {a!r}")
        details = {
            k: expr.compile_expr(expr.parse(v, names, what=f"{where} details.{k}")) for k, v in r.details.items()
        }
        trig: CodeType | float
        if isinstance(r.trigger_for_s, str):
            tree = expr.parse(r.trigger_for_s, set(DEVICE_ATTRS[r.kind]) | set(params), what=f"{where} trigger_for_s")
            trig = expr.compile_expr(tree)
        else:
            trig = float(r.trigger_for_s)
        reset = expr.parse(r.repeat.reset, names, what=f"{where} repeat.reset") if r.repeat and r.repeat.reset else None
        backdate = (
            expr.compile_expr(expr.parse(r.backdate_s, names, what=f"{where} backdate_s")) if r.backdate_s else None
        )
        spec = RuleSpec(
            id=r.id,
            kind=r.kind,
            alarm_type=r.alarm_type,
            severity=r.levels[0].severity,
            trigger_for_ms=round(float(r.trigger_for_s) * 1000) if not isinstance(r.trigger_for_s, str) else -1,
            clear_for_ms=round(r.clear_for_s * 1000),
            explain=r.explain,
        )
        return CompiledRule(
            spec, r, dict(params), tuple(lv.severity for lv in r.levels), details, trig, r.repeat, reset, backdate
        )


def _apply(r: RuleDef, patch: RulePatch, where: str) -> RuleDef:
    unknown = set(patch.params) - set(r.params)
    if unknown:
        raise RulesConfigError(f"{where}: unknown param(s) {sorted(unknown)} (rule has {sorted(r.params)})")
    upd: dict[str, Any] = {"params": {**r.params, **patch.params}}
    for f in ("enabled", "trigger_for_s", "clear_for_s"):
        v = getattr(patch, f)
        if v is not None:
            upd[f] = v
    return r.model_copy(update=upd)


def _const_params(tree: ast.expr, params: dict[str, Param]) -> ast.expr:
    """Fold a variant's params into the expression as constants."""

    class Fold(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id in params:
                return ast.copy_location(ast.Constant(params[node.id]), node)
            return node

    return Fold().visit(ast.parse(ast.unparse(tree), mode="eval").body)


def _build_functions(kind: str, rules: list[CompiledRule]) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    """One function returning every rule's verdict code, one for repeat-reset conditions.

    Verdict codes: ``i ≥ 0`` the first level that holds, ``-1`` clear, ``-2`` hold (hysteresis).
    A level holds only in the service modes the rule applies in; every ordering comparison is
    made at :data:`expr.RESOLUTION_DIGITS` decimals, so a boundary compares as written.
    """
    all_names = set(STATUS_FIELDS[kind]) | set(DEVICE_ATTRS[kind]) | set(DERIVED[kind])
    results: list[ast.expr] = []
    resets: list[ast.expr] = []
    used: set[str] = set()
    for c in rules:
        p = c.params
        names = all_names | set(p)
        levels = [expr.exact(_const_params(expr.parse(lv.when, names, what=c.spec.id), p)) for lv in c.defn.levels]
        modes = c.defn.applies_in()
        if modes is not None:
            gate = ast.Compare(
                ast.Name("mode", ast.Load()), [ast.In()], [ast.Tuple([ast.Constant(m) for m in modes], ast.Load())]
            )
            levels = [ast.BoolOp(ast.And(), [gate, lv]) for lv in levels]
        tail: ast.expr = ast.Constant(-1)
        if c.defn.clear:
            clear = expr.exact(_const_params(expr.parse(c.defn.clear, names, what=c.spec.id), p))
            tail = ast.IfExp(test=clear, body=ast.Constant(-1), orelse=ast.Constant(-2))
        node = tail
        for i in range(len(levels) - 1, -1, -1):
            node = ast.IfExp(test=levels[i], body=ast.Constant(i), orelse=node)
        results.append(node)
        used |= expr.names_in(node)
        if c.reset is not None:
            r = expr.exact(_const_params(c.reset, p))
            resets.append(r)
            used |= expr.names_in(r)
        else:
            resets.append(ast.Constant(False))
    body: list[tuple[str, ast.expr]] = []
    for n in sorted(used):
        src = "s" if n in STATUS_FIELDS[kind] else "d" if n in DEVICE_ATTRS[kind] else "x"
        body.append((n, ast.Subscript(ast.Name(src, ast.Load()), ast.Constant(n), ast.Load())))
    fn = expr.compile_function("evaluate", ["s", "d", "x"], body, ast.Tuple(results, ast.Load()))
    reset_fn = None
    if any(c.reset is not None for c in rules):
        reset_fn = expr.compile_function("reset", ["s", "d", "x"], body, ast.Tuple(resets, ast.Load()))
    return fn, reset_fn
