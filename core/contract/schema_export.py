"""JSON Schema (draft 2020-12) files for message contract v1, generated from the payload models.

The pydantic models in :mod:`semon.contract.messages` are the one source of truth for what a
payload may contain: every type, range and required field in the generated files comes from
them. This module only adds the envelope (``$id``, title, topic, QoS, examples) and fills in
descriptions a model field lacks. Two payloads have no model because semon does not parse
them as JSON: the ``online`` flag (raw text) and the alarm transition semon publishes; their
small schemas are written here by hand.

Run ``python -m semon.contract.schema_export [DIR]`` (default: the ``schemas/`` folder beside
this file) after changing a model; ``--check`` only compares and exits 1 when a file is stale.
``tests/platform/test_contract_schemas.py`` fails when the committed files differ from fresh output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from semon.contract.messages import DeviceEvent, ElevatorStatus, Kind, VesselStatus
from semon.contract.topics import DEVICE_ID_RE, PREFIX

JsonSchema = dict[str, Any]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://semon.dev/schemas/v1/"
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "schemas"

# Alarm vocabulary published on semon/v1/alarms/... (docs/protocol.md). Severities follow the
# usual four-level scale (ThingsBoard's) minus "indeterminate", which no
# semon rule produces. Adding an event name is an additive contract change: extend this
# tuple, regenerate, and note it in docs/protocol.md.
SEVERITIES: tuple[str, ...] = ("critical", "major", "minor", "warning")
# escalated (actor "escalation"): unacknowledged too long, or a rescue arrival overdue
# (docs/alerts.md); dispatched / arrived / released: rescue steps of a trapped-passenger alarm.
ALARM_EVENTS: tuple[str, ...] = (
    "raised", "cleared", "severity_changed", "acknowledged", "comment", "assigned",
    "escalated", "dispatched", "arrived", "released",
)  # fmt: skip

# Device-time bounds of the alarm's *_ts fields: taken from the models' ``ts`` (messages.TsMs)
# rather than repeated here, so there is one place that says what a device time may be.
_TS_BOUNDS: JsonSchema = {
    k: v
    for k, v in ElevatorStatus.model_json_schema()["properties"]["ts"].items()
    if k in ("type", "minimum", "exclusiveMaximum")
}

# An instant used by every example (2026-11-26T08:30:00Z), so examples read as one story.
_T0 = 1_795_681_800_000

EXAMPLES: dict[str, JsonSchema] = {
    "elevator-status": {
        "ts": _T0,
        "seq": 48213,
        "mode": "normal",
        "running": True,
        "dir": "up",
        "floor": 7,
        "door_zone": False,
        "door": "closed",
        "occupied": True,
        "speed": 1.62,
        "load": 480.0,
        "run_count": 183204,
        "run_hours": 9132.5,
        "alarm_button": False,
        "faults": [],
    },
    "vessel-status": {
        "ts": _T0,
        "seq": 9921,
        "pressure": 1.48,
        "temperature": 21.5,
        "level": 62.0,
        "valve_discharge": False,
        "gas_lel": 0.0,
    },
    "device-event": {
        "ts": _T0 + 2_350,
        "seq": 48214,
        "code": 2,
        "scheme": "gbt24476",
        "active": True,
        "text": "door close fault",
    },
    "alarm": {
        "event_id": 90817,
        "alarm_id": 1842,
        "event": "raised",
        "device_id": "gz-el-00042",
        "kind": "elevator",
        "firm_id": "F-GZ-017",
        "type": "trapped_passenger",
        "rule_id": "elevator.trapped_passenger",
        "severity": "critical",
        "active": True,
        "acknowledged": False,
        "assignee": None,
        "onset_ts": _T0 + 10_000,
        "start_ts": _T0 + 30_000,
        "end_ts": None,
        "ts": _T0 + 30_000,
        "actor": "rules",
        "message": (
            "Passenger trapped: car stopped between floors 7 and 8 (outside the door zone), "
            "doors closed, passenger present for 20 s"
        ),
        "details": {"floor": 7, "door_zone": False, "door": "closed", "held_s": 20},
    },
}

# Descriptions for model fields that carry none yet (units and sources from docs/domain.md).
# A description set on the model itself always wins; move these into the models over time.
_FIELD_NOTES: dict[str, dict[str, str]] = {
    "ElevatorStatus": {
        "mode": "service mode (domain.md §4.1, GB/T 24476-2017 §9)",
        "running": "car is running (true) or stopped (false)",
        "dir": "direction of travel; `stop` when not moving",
        "floor": "current floor as numbered in the building, negative below ground",
        "door": "car door state; `closed` means closed and locked",
        "run_count": "cumulative number of runs since installation (monotonic)",
        "run_hours": "cumulative running time since installation, hours (monotonic)",
        "alarm_button": "car alarm button pressed (also reported as event code 90)",
    },
    "VesselStatus": {
        "valve_discharge": "safety valve discharging (domain.md §5)",
    },
    "DeviceEvent": {
        "code": ("event or fault code; with scheme `gbt24476`: faults 1-8, events 40-47, alarm 90 (domain.md §4.2)"),
        "scheme": (
            "numbering scheme of `code`; other platforms' codes go through a per-source "
            "code-mapping layer (domain.md §4.2)"
        ),
        "text": "free text from the terminal, for display only",
    },
}


def _ts(description: str) -> JsonSchema:
    return {**_TS_BOUNDS, "description": description}


def _envelope(name: str, title: str, description: str) -> JsonSchema:
    """Root keywords every file starts with, in a fixed order."""
    return {
        "$schema": DIALECT,
        "$id": f"{BASE_ID}{name}.json",
        "title": title,
        "description": description,
    }


def model_schema(model: type[BaseModel], *, name: str, title: str, topic: str, description: str) -> JsonSchema:
    """The validation-mode JSON Schema of ``model`` wrapped with ``$id``, title and examples."""
    body = model.model_json_schema(mode="validation")
    notes = _FIELD_NOTES.get(model.__name__, {})
    for field_name, prop in body.get("properties", {}).items():
        if field_name in notes:
            # A $ref with sibling keywords is valid from draft 2019-09 on.
            prop.setdefault("description", notes[field_name])
    body.pop("title", None)
    body.pop("description", None)
    schema = _envelope(name, title, f"{(model.__doc__ or '').strip()} {description}".strip())
    schema["$comment"] = (
        f"Generated from semon.contract.messages.{model.__name__} by semon.contract.schema_export; do not edit by hand."
    )
    schema["x-semon-topic"] = topic
    schema["x-semon-qos"] = 1
    schema.update(body)
    schema["examples"] = [EXAMPLES[name]]
    return schema


def online_schema() -> JsonSchema:
    """Schema of the retained ``online`` flag: the raw text ``1`` or ``0``, not JSON."""
    schema = _envelope(
        "online",
        "semon v1 device online flag",
        "Payload of semon/v1/{kind}/{device_id}/online. NOT JSON: the payload is the single "
        "ASCII character 1 (online) or 0 (offline), no quotes, no whitespace, no newline. "
        "This schema describes that payload read as a UTF-8 string. The terminal publishes "
        "1 retained with QoS 1 after connecting and registers a last will of 0 (retained, "
        "QoS 1) on the same topic, so the broker announces an unclean disconnect. A zero-length "
        "retained message only deletes the retained flag (MQTT semantics).",
    )
    schema["$comment"] = "Hand-written in semon.contract.schema_export (no pydantic model)."
    schema["x-semon-topic"] = f"{PREFIX}/{{kind}}/{{device_id}}/online"
    schema["x-semon-qos"] = 1
    schema["x-semon-retained"] = True
    schema.update(
        {
            "type": "string",
            "contentMediaType": "text/plain",
            "enum": ["1", "0"],
            "examples": ["1", "0"],
        }
    )
    return schema


def alarm_schema() -> JsonSchema:
    """Schema of the alarm transition semon publishes on ``semon/v1/alarms/{firm}/{device}``."""
    schema = _envelope(
        "alarm",
        "semon v1 alarm transition",
        "One alarm transition (raised, cleared, severity change, acknowledgement, comment, "
        "escalation, rescue step), published by semon with QoS 1, not retained, on "
        "semon/v1/alarms/{firm_id}/{device_id} (firm_id is _ when the device has no maintenance "
        "firm); the same document is the body of webhook deliveries and the data of "
        "/alarms/stream events. Delivery is at-least-once: a transition may arrive twice, with "
        "the same event_id, which consumers use to drop the duplicate. Consumers must ignore "
        "fields they do not know.",
    )
    schema["$comment"] = "Hand-written in semon.contract.schema_export (no pydantic model)."
    schema["x-semon-topic"] = f"{PREFIX}/alarms/{{firm_id}}/{{device_id}}"
    schema["x-semon-qos"] = 1
    props: JsonSchema = {
        "event_id": {
            "type": "integer",
            "minimum": 1,
            "description": "id of this transition (unique, the same on every channel and redelivery): the dedupe key",
        },
        "alarm_id": {
            "type": "integer",
            "minimum": 1,
            "description": "semon alarm id (API /alarms/{id})",
        },
        "event": {
            "type": "string",
            "enum": list(ALARM_EVENTS),
            "description": "what happened to the alarm in this transition",
        },
        "device_id": {
            "type": "string",
            "pattern": DEVICE_ID_RE.pattern,
            "description": "device the alarm is about",
        },
        "kind": {
            "type": "string",
            "enum": [k.value for k in Kind],
            "description": "equipment kind",
        },
        "firm_id": {
            "type": ["string", "null"],
            "maxLength": 64,
            "description": "maintenance firm responsible for the device; null when none",
        },
        "type": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "alarm type; at most one active alarm per device and type",
        },
        "rule_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "rule that raised the alarm",
        },
        "severity": {
            "type": "string",
            "enum": list(SEVERITIES),
            "description": "current severity (after this transition)",
        },
        "active": {"type": "boolean", "description": "condition still holds (false once cleared)"},
        "acknowledged": {"type": "boolean", "description": "an operator acknowledged the alarm"},
        "assignee": {
            "type": ["string", "null"],
            "maxLength": 64,
            "description": "who is working on the alarm; null when unassigned",
        },
        "onset_ts": _ts("device time (ms UTC) the condition started"),
        "start_ts": _ts("device time (ms UTC) the alarm was raised (onset + hold time)"),
        "end_ts": {
            "anyOf": [_ts("device time (ms UTC) the alarm cleared"), {"type": "null"}],
            "description": "device time (ms UTC) the alarm cleared; null while active",
        },
        "ts": _ts("device time (ms UTC) of this transition (wall time for operator actions)"),
        "actor": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "'rules' for transitions the engine made, else the operator",
        },
        "message": {
            "type": "string",
            "description": "human explanation of the alarm and its evidence",
        },
        "details": {
            "type": "object",
            "description": "rule-specific evidence (values that triggered it, thresholds)",
        },
    }
    schema.update(
        {
            "type": "object",
            "properties": props,
            "required": list(props),
            "examples": [EXAMPLES["alarm"]],
        }
    )
    return schema


_DEVICE_NOTE = (
    "Unknown extra fields are ignored. Numbers must be finite (NaN and Infinity are not JSON); "
    "integer fields must be written without a fraction (7, not 7.0)."
)


def build_schemas() -> dict[str, JsonSchema]:
    """Every contract v1 schema, keyed by file name."""
    return {
        "elevator-status.json": model_schema(
            ElevatorStatus,
            name="elevator-status",
            title="semon v1 elevator status",
            topic=f"{PREFIX}/elevator/{{device_id}}/status",
            description=(
                "Payload of semon/v1/elevator/{device_id}/status (QoS 1); fields from "
                "domain.md §4.1 / GB/T 24476-2017 §9. " + _DEVICE_NOTE
            ),
        ),
        "vessel-status.json": model_schema(
            VesselStatus,
            name="vessel-status",
            title="semon v1 pressure-vessel status",
            topic=f"{PREFIX}/vessel/{{device_id}}/status",
            description=(
                "Payload of semon/v1/vessel/{device_id}/status (QoS 1); fields from domain.md §5. " + _DEVICE_NOTE
            ),
        ),
        "device-event.json": model_schema(
            DeviceEvent,
            name="device-event",
            title="semon v1 device event",
            topic=f"{PREFIX}/{{kind}}/{{device_id}}/event",
            description=(
                "Payload of semon/v1/{kind}/{device_id}/event (QoS 1); codes numbered as in "
                "GB/T 24476-2017 (domain.md §4.2). " + _DEVICE_NOTE
            ),
        ),
        "online.json": online_schema(),
        "alarm.json": alarm_schema(),
    }


def render(schema: JsonSchema) -> str:
    """Stable text of a schema file (2-space indent, UTF-8 kept readable, final newline)."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def render_schemas() -> dict[str, str]:
    """File name -> file text of every schema, exactly as :func:`export_schemas` writes it."""
    return {name: render(schema) for name, schema in build_schemas().items()}


def export_schemas(out_dir: Path) -> list[Path]:
    """Write every schema file into ``out_dir`` (created if missing); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, text in render_schemas().items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def stale_files(out_dir: Path) -> list[str]:
    """Names of schema files in ``out_dir`` that are missing or differ from fresh output."""
    stale = []
    for name, text in render_schemas().items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write (or with ``--check`` verify) the schema files."""
    parser = argparse.ArgumentParser(
        prog="python -m semon.contract.schema_export", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_OUT_DIR, help="output folder")
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.dir)
        for name in stale:
            print(f"stale: {args.dir / name}", file=sys.stderr)
        return 1 if stale else 0
    for path in export_schemas(args.dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
