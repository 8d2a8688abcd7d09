"""Decoding and validation of inbound messages: an accepted message or a precise rejection.

This runs for every message, so the steady state is kept cheap (profile in
docs/benchmarks.md, "Fleet-scale pipeline"): parsed topics are cached, the per-device tag set
is built once per registry entry, and points take the validated model's fields directly
instead of re-serialising the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel, ValidationError

from semon.contract.messages import STATUS_MODELS, DeviceEvent
from semon.contract.topics import TopicError, TopicInfo, parse_topic
from semon.domain import DeviceInfo
from semon.store.telemetry import (
    EVENT_MEASUREMENT,
    ONLINE_MEASUREMENT,
    STATUS_MEASUREMENT,
    FieldValue,
    Point,
    point_time_ns,
)

# Reason codes of dead letters (docs/protocol.md); also the label of semon_dead_letters_total.
REASONS = (
    "bad_topic", "too_large", "bad_json", "schema", "non_finite", "unknown_device", "kind_mismatch",
    "future_ts", "rejected_by_store",
)  # fmt: skip


@dataclass(slots=True)
class Rejected:
    """Why a message cannot be accepted."""

    reason: str
    detail: str
    device_id: str | None = None


@dataclass(slots=True)
class Accepted:
    """A valid message from a registered device."""

    topic: TopicInfo
    device: DeviceInfo
    body: Any  # ElevatorStatus | VesselStatus | DeviceEvent | bool (online)


def _describe(e: ValidationError) -> Rejected:
    errs = e.errors(include_url=False, include_input=False)
    if any(x["type"] == "json_invalid" for x in errs):
        return Rejected("bad_json", "; ".join(x["msg"] for x in errs)[:500])
    parts = [f"{'.'.join(str(p) for p in x['loc']) or '<root>'}: {x['msg']}" for x in errs[:10]]
    reason = "non_finite" if any(x["type"] == "finite_number" for x in errs) else "schema"
    return Rejected(reason, "; ".join(parts))


# A city's fleet has ~400 k devices × 3 channels of topics; beyond this the cache starts over
# rather than grow without bound (junk topics are never cached).
TOPIC_CACHE_MAX = 2_000_000


class Decoder:
    """Turns (topic, payload) into :class:`Accepted` or :class:`Rejected`."""

    def __init__(self, registry: dict[str, DeviceInfo], max_payload_bytes: int, max_future_skew_ms: int) -> None:
        self.registry = registry
        self.max_payload_bytes = max_payload_bytes
        self.max_future_skew_ms = max_future_skew_ms
        self._topics: dict[str, TopicInfo] = {}

    def topic_info(self, topic: str) -> TopicInfo:
        """Parse a device topic (cached); raises :class:`TopicError`."""
        info = self._topics.get(topic)
        if info is None:
            info = parse_topic(topic)
            if len(self._topics) >= TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[topic] = info
        return info

    def decode(self, topic: str, payload: bytes, now_ms: int) -> Accepted | Rejected:
        """Validate one message against contract v1 and the registry."""
        try:
            info = self.topic_info(topic)
        except TopicError as e:
            return Rejected("bad_topic", str(e))
        if len(payload) > self.max_payload_bytes:
            return Rejected(
                "too_large", f"payload {len(payload)} bytes > limit {self.max_payload_bytes}", info.device_id
            )
        device = self.registry.get(info.device_id)
        if device is None:
            return Rejected("unknown_device", f"device {info.device_id!r} is not in the registry", info.device_id)
        if device.kind != info.kind:
            return Rejected("kind_mismatch", f"topic says {info.kind}, registry says {device.kind}", info.device_id)
        if info.channel == "online":
            if not payload:
                # An empty retained message is how MQTT deletes a retained flag: no state change.
                return Accepted(info, device, None)
            flag = payload.strip()
            if flag not in (b"0", b"1"):
                return Rejected("schema", f"online payload must be 1 or 0, got {flag[:20]!r}", info.device_id)
            return Accepted(info, device, flag == b"1")
        model = STATUS_MODELS[info.kind] if info.channel == "status" else DeviceEvent
        try:
            body = model.model_validate_json(payload)
        except ValidationError as e:
            r = _describe(e)
            r.device_id = info.device_id
            return r
        if body.ts > now_ms + self.max_future_skew_ms:
            return Rejected(
                "future_ts",
                f"ts {body.ts} is {(body.ts - now_ms) / 1000:.0f} s ahead of the collector clock",
                info.device_id,
            )
        return Accepted(info, device, body)


# Per device, the tag set of its points: one dict per registry entry, reused by every point (the
# line-protocol encoder caches the escaped tag string by this dict's identity). Keyed by id and
# checked against the DeviceInfo object, so a registry reload (new objects) rebuilds it.
_TAGS: dict[str, tuple[DeviceInfo, dict[str, str]]] = {}
TAGS_CACHE_MAX = 2_000_000
# Per status model: its enum-typed fields (stored as their string value, as
# model_dump(mode="json") did) and its optional fields (left out when None).
_SHAPES: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def device_tags(d: DeviceInfo) -> dict[str, str]:
    """The tags of a device's points (registry facts only, never payload values)."""
    c = _TAGS.get(d.id)
    if c is not None and c[0] is d:
        return c[1]
    tags = {"kind": d.kind, "device_id": d.id, "district": d.district, "firm": d.firm_id}
    if len(_TAGS) >= TAGS_CACHE_MAX:
        _TAGS.clear()
    _TAGS[d.id] = (d, tags)
    return tags


def _shape(model: type[BaseModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    shape = _SHAPES.get(model)
    if shape is None:
        fields = model.model_fields
        enums = tuple(k for k, f in fields.items() if isinstance(f.annotation, type) and issubclass(f.annotation, Enum))
        optional = tuple(k for k, f in fields.items() if not f.is_required() and f.default is None)
        shape = _SHAPES[model] = (enums, optional)
    return shape


def status_fields(b: BaseModel) -> dict[str, FieldValue]:
    """Fields of a status point: every field but ``ts``, without None, enums as values, faults as "1,2"."""
    fields: dict[str, Any] = b.__dict__.copy()
    del fields["ts"]
    enums, optional = _shape(type(b))
    for k in optional:
        if fields[k] is None:
            del fields[k]
    for k in enums:
        fields[k] = fields[k]._value_  # the plain attribute: Enum.value is a (slow) descriptor
    faults = fields.get("faults")
    if faults is not None:
        fields["faults"] = ",".join(map(str, faults)) if faults else ""
    return fields


def to_points(a: Accepted, now_ns: int) -> list[Point]:
    """The telemetry points an accepted message produces (schema in docs/storage.md)."""
    d = a.device
    tags = device_tags(d)
    ch = a.topic.channel
    if ch == "online":
        if a.body is None:
            return []
        return [Point(ONLINE_MEASUREMENT, tags, {"online": bool(a.body)}, now_ns, d.id)]
    b = a.body
    fields: dict[str, FieldValue]
    if ch == "event":
        fields = {"code": b.code, "scheme": b.scheme, "active": b.active, "seq": b.seq}
        if b.text:
            fields["text"] = b.text
        return [Point(EVENT_MEASUREMENT, tags, fields, point_time_ns(b.ts, b.seq), d.id)]
    return [Point(STATUS_MEASUREMENT[d.kind], tags, status_fields(b), point_time_ns(b.ts, b.seq), d.id)]
