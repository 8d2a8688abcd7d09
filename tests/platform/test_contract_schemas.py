"""Contract v1 JSON Schemas: committed files match the models, and schema and models agree.

The pydantic models are the one source of truth. The JSON Schema files are what third parties
(terminal vendors, alarm consumers) validate against, so the two must say the same thing about
every sample payload here. Where JSON Schema cannot express what the models enforce, the
difference is pinned in a test of its own and documented in docs/protocol.md.

Needs the ``jsonschema`` package for the validation tests (skipped without it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from semon.contract import schema_export
from semon.contract.messages import DeviceEvent, ElevatorStatus, VesselStatus
from semon.contract.schema_export import (
    DEFAULT_OUT_DIR,
    EXAMPLES,
    build_schemas,
    export_schemas,
    render_schemas,
)

EXPECTED_FILES = {
    "elevator-status.json",
    "vessel-status.json",
    "device-event.json",
    "online.json",
    "alarm.json",
}


# --- one source of truth -----------------------------------------------------------------


def test_committed_schema_files_equal_fresh_output() -> None:
    fresh = render_schemas()
    assert set(fresh) == EXPECTED_FILES
    committed = {p.name for p in DEFAULT_OUT_DIR.glob("*.json")}
    assert committed == EXPECTED_FILES, "unexpected or missing files in semon/contract/schemas/"
    for name, text in fresh.items():
        on_disk = (DEFAULT_OUT_DIR / name).read_text(encoding="utf-8")
        assert on_disk == text, f"{name} is stale: run `python -m semon.contract.schema_export` and commit"


def test_export_writes_every_file(tmp_path: Path) -> None:
    paths = export_schemas(tmp_path / "out")
    assert {p.name for p in paths} == EXPECTED_FILES
    assert schema_export.stale_files(tmp_path / "out") == []
    (tmp_path / "out" / "alarm.json").write_text("{}", encoding="utf-8")
    assert schema_export.stale_files(tmp_path / "out") == ["alarm.json"]
    assert schema_export.main([str(tmp_path / "out"), "--check"]) == 1
    assert schema_export.main([str(tmp_path / "out")]) == 0
    assert schema_export.main([str(tmp_path / "out"), "--check"]) == 0


def test_envelope() -> None:
    for name, schema in build_schemas().items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://semon.dev/schemas/v1/{name}"
        assert schema["title"].startswith("semon v1 ")
        assert schema["description"]
        assert schema["x-semon-qos"] == 1
        assert schema["examples"]
    # Unknown fields are ignored by the models, so the schemas must not forbid them.
    for name in ("elevator-status.json", "vessel-status.json", "device-event.json", "alarm.json"):
        assert build_schemas()[name].get("additionalProperties", True) is True


# --- schema and models agree ----------------------------------------------------------------


@pytest.fixture(scope="module")
def validators() -> dict[str, Any]:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a dev dependency")
    out = {}
    for name, schema in build_schemas().items():
        jsonschema.Draft202012Validator.check_schema(schema)
        out[name] = jsonschema.Draft202012Validator(schema)
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf
        raise ValueError(f"{text} overflows a double")
    return value


def strict_json(raw: bytes) -> Any:
    """RFC 8259 JSON only: Python's json would otherwise accept NaN and Infinity."""
    return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)


def schema_accepts(validator: Any, raw: bytes) -> bool:
    try:
        instance = strict_json(raw)
    except ValueError:
        return False
    return bool(validator.is_valid(instance))


def model_accepts(model: type[BaseModel], raw: bytes) -> bool:
    # The collector validates the raw bytes (JSON mode): strict types, enums from strings.
    try:
        model.model_validate_json(raw)
    except ValidationError:
        return False
    return True


def _with(base: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**base, **changes}).encode()


def _without(base: dict[str, Any], *keys: str) -> bytes:
    return json.dumps({k: v for k, v in base.items() if k not in keys}).encode()


def _raw_replace(base: dict[str, Any], key: str, literal: str) -> bytes:
    """Payload with one value replaced by a literal json.dumps cannot produce (NaN, 1e400)."""
    marker = "__RAW__"
    return json.dumps({**base, key: marker}).replace(f'"{marker}"', literal).encode()


EL = EXAMPLES["elevator-status"]
VE = EXAMPLES["vessel-status"]
EV = EXAMPLES["device-event"]
EL_REQUIRED = {k: v for k, v in EL.items() if k not in ("alarm_button", "faults")}

# Payload samples per device schema: (id, raw payload, valid?).
ELEVATOR_CASES: list[tuple[str, bytes, bool]] = [
    ("example", json.dumps(EL).encode(), True),
    ("required-only", json.dumps(EL_REQUIRED).encode(), True),
    ("unknown-field", _with(EL, vendor_x={"a": 1}), True),
    ("int-for-float", _with(EL, speed=2, load=0), True),
    ("faults", _with(EL, faults=[1, 4, 7]), True),
    ("missing-floor", _without(EL, "floor"), False),
    ("missing-ts", _without(EL, "ts"), False),
    ("bool-as-string", _with(EL, running="true"), False),
    ("int-as-string", _with(EL, floor="7"), False),
    ("bool-for-int", _with(EL, floor=True), False),
    ("int-for-bool", _with(EL, occupied=1), False),
    ("null-required", _with(EL, door=None), False),
    ("null-defaulted", _with(EL, alarm_button=None), False),
    ("nan", _raw_replace(EL, "speed", "NaN"), False),
    ("infinity", _raw_replace(EL, "load", "Infinity"), False),
    ("overflow", _raw_replace(EL, "speed", "1e400"), False),
    ("bad-mode", _with(EL, mode="party"), False),
    ("floor-range", _with(EL, floor=301), False),
    ("speed-negative", _with(EL, speed=-0.1), False),
    ("ts-in-seconds", _with(EL, ts=EL["ts"] // 1000), False),
    ("ts-string", _with(EL, ts=str(EL["ts"])), False),
    ("seq-negative", _with(EL, seq=-1), False),
    ("seq-2^63", _with(EL, seq=2**63), False),
    ("fault-string", _with(EL, faults=["1"]), False),
    ("faults-too-many", _with(EL, faults=[1] * 65), False),
    ("array", json.dumps([EL]).encode(), False),
    ("not-json", b"floor=7", False),
]
VESSEL_CASES: list[tuple[str, bytes, bool]] = [
    ("example", json.dumps(VE).encode(), True),
    ("no-optional", _without(VE, "level", "gas_lel", "valve_discharge"), True),
    ("null-level", _with(VE, level=None), True),
    ("unknown-field", _with(VE, o2_vol=20.9), True),
    ("missing-pressure", _without(VE, "pressure"), False),
    ("nan", _raw_replace(VE, "pressure", "NaN"), False),
    ("minus-infinity", _raw_replace(VE, "temperature", "-Infinity"), False),
    ("lel-range", _with(VE, gas_lel=100.5), False),
    ("pressure-string", _with(VE, pressure="1.48"), False),
    ("valve-int", _with(VE, valve_discharge=1), False),
]
EVENT_CASES: list[tuple[str, bytes, bool]] = [
    ("example", json.dumps(EV).encode(), True),
    ("minimal", json.dumps({"ts": EV["ts"], "seq": 1, "code": 90}).encode(), True),
    ("text-null", _with(EV, text=None), True),
    ("unknown-field", _with(EV, source="vendor"), True),
    ("missing-code", _without(EV, "code"), False),
    ("code-negative", _with(EV, code=-1), False),
    ("code-string", _with(EV, code="2"), False),
    ("active-string", _with(EV, active="yes"), False),
    ("text-too-long", _with(EV, text="门" * 257), False),
    ("scheme-too-long", _with(EV, scheme="x" * 33), False),
]
CASES = [
    pytest.param(schema_file, model, raw, valid, id=f"{prefix}-{case_id}")
    for prefix, schema_file, model, cases in (
        ("elevator", "elevator-status.json", ElevatorStatus, ELEVATOR_CASES),
        ("vessel", "vessel-status.json", VesselStatus, VESSEL_CASES),
        ("event", "device-event.json", DeviceEvent, EVENT_CASES),
    )
    for case_id, raw, valid in cases
]


@pytest.mark.parametrize(("schema_file", "model", "raw", "valid"), CASES)
def test_schema_and_model_agree(
    validators: dict[str, Any], schema_file: str, model: type[BaseModel], raw: bytes, valid: bool
) -> None:
    assert model_accepts(model, raw) is valid, "pydantic model"
    assert schema_accepts(validators[schema_file], raw) is valid, "JSON Schema"


def test_known_difference_integral_float(validators: dict[str, Any]) -> None:
    """JSON Schema counts 7.0 as an integer; the strict models do not (docs/protocol.md)."""
    raw = _with(EL, floor=7.0)
    assert schema_accepts(validators["elevator-status.json"], raw)
    assert not model_accepts(ElevatorStatus, raw)


def test_every_schema_example_is_accepted_by_its_model(validators: dict[str, Any]) -> None:
    models = {
        "elevator-status.json": ElevatorStatus,
        "vessel-status.json": VesselStatus,
        "device-event.json": DeviceEvent,
    }
    for name, model in models.items():
        for example in build_schemas()[name]["examples"]:
            raw = json.dumps(example).encode()
            assert model_accepts(model, raw), name
            assert schema_accepts(validators[name], raw), name


# --- hand-written schemas ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "valid"),
    [
        (b"1", True),
        (b"0", True),
        (b"true", False),
        (b'"1"', False),
        (b"1\n", False),
        (b" 0", False),
        (b"01", False),
        (b"", False),
    ],
)
def test_online_payload(validators: dict[str, Any], raw: bytes, valid: bool) -> None:
    # Raw text, not JSON: validate the decoded string itself.
    assert validators["online.json"].is_valid(raw.decode()) is valid


ALARM = EXAMPLES["alarm"]
ALARM_CLEARED = {
    **ALARM,
    "event": "cleared",
    "active": False,
    "end_ts": ALARM["start_ts"] + 300_000,
    "ts": ALARM["start_ts"] + 300_000,
    "message": "Passenger released: doors opened at floor 8",
}


@pytest.mark.parametrize(
    ("raw", "valid"),
    [
        (json.dumps(ALARM).encode(), True),
        (json.dumps(ALARM_CLEARED).encode(), True),
        (_with(ALARM, firm_id=None), True),
        (_with(ALARM, event="acknowledged", acknowledged=True, actor="ops-1"), True),
        (_with(ALARM, details={}), True),
        (_with(ALARM, severity="indeterminate"), False),
        (_with(ALARM, event="exploded"), False),
        (_with(ALARM, kind="boiler"), False),
        (_with(ALARM, alarm_id="1842"), False),
        (_with(ALARM, end_ts=ALARM["start_ts"] // 1000), False),
        (_with(ALARM, details=[]), False),
        (_with(ALARM, device_id="a/b"), False),
        (_without(ALARM, "message"), False),
        (_without(ALARM, "end_ts"), False),
        (_raw_replace(ALARM, "ts", "NaN"), False),
    ],
)
def test_alarm_payload(validators: dict[str, Any], raw: bytes, valid: bool) -> None:
    assert schema_accepts(validators["alarm.json"], raw) is valid
