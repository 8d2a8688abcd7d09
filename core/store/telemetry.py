"""Telemetry points and the store interface both back-ends (InfluxDB, embedded SQLite) implement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson

FieldValue = float | int | bool | str

# Measurements written by the collector (schema explained in docs/storage.md).
STATUS_MEASUREMENT = {"elevator": "elevator_status", "vessel": "vessel_status"}
EVENT_MEASUREMENT = "device_event"
ONLINE_MEASUREMENT = "device_online"
ALARM_MEASUREMENT = "alarm_event"  # every alarm transition, for board annotations
MEASUREMENTS = (*STATUS_MEASUREMENT.values(), EVENT_MEASUREMENT, ONLINE_MEASUREMENT, ALARM_MEASUREMENT)


def point_time_ns(ts_ms: int, seq: int) -> int:
    """Point time: device ms plus ``seq`` folded into the sub-millisecond nanoseconds.

    A QoS 1 redelivery (same ts, same seq) lands on the same point and overwrites it, while two
    distinct messages a device sent within one millisecond still get distinct points.
    """
    return ts_ms * 1_000_000 + seq % 1_000_000


@dataclass(slots=True)
class Point:
    """One row of telemetry: measurement, low-cardinality tags, fields, time in ns."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int
    device_id: str = field(default="")


# The store-neutral encoding of a batch: a JSON array of [measurement, device, time_ns, tags,
# fields]. The spool keeps batches in it, so a spool written for one store replays into another.
POINTS_JSON = "points-json"


def encode_points(points: Sequence[Point]) -> bytes:
    """A batch in the store-neutral encoding (:data:`POINTS_JSON`)."""
    return orjson.dumps(
        [(p.measurement, p.device_id or p.tags.get("device_id", ""), p.time_ns, p.tags, p.fields) for p in points]
    )


def decode_points(body: bytes) -> list[Point]:
    """The points of a batch in the store-neutral encoding."""
    return [Point(m, tags, fields, t, d) for m, d, t, tags, fields in orjson.loads(body)]


class TelemetryUnavailable(RuntimeError):
    """The store could not durably take the write (down, slow, refused); retry later."""


class TelemetryStore(Protocol):
    """What the collector writes to and the API reads from."""

    #: Whether writes may come from several threads at once (the collector then overlaps them).
    concurrent_writes: bool
    #: The encoding :meth:`encode` produces (a spooled batch records the one it is in).
    encoding: str

    def write(self, points: Sequence[Point]) -> None:
        """Store ``points`` durably or raise :class:`TelemetryUnavailable`."""

    def encode(self, points: Sequence[Point]) -> bytes:
        """Serialise a batch (what the spool keeps while the store is away)."""

    def write_encoded(self, body: bytes) -> list[tuple[bytes, str]]:
        """Store an encoded batch durably; return rows the store refused as invalid, with why.

        Raises :class:`TelemetryUnavailable` when the store is down or slow (retry later).
        """

    def latest(self, measurement: str, device_id: str) -> dict[str, FieldValue] | None:
        """The newest row (by device time) of a device, with ``time`` in ms."""

    def query(
        self, measurement: str, device_id: str, start_ms: int, end_ms: int, limit: int = 10_000
    ) -> list[dict[str, FieldValue]]:
        """Rows of a device in ``[start_ms, end_ms)`` in time order, ``time`` in ms."""

    def ping(self) -> bool:
        """True when the store answers."""

    def close(self) -> None:
        """Release connections."""
