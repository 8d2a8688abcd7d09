"""What the collector's stages hand each other (see ingest/README.md)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from semon.store.telemetry import Point

# One received message: (topic, payload, mid, qos).
Delivery = tuple[str, bytes, int, int]


@dataclass(slots=True)
class Inbound:
    """Source → pipeline: one network read's worth of messages and what acknowledges them."""

    deliveries: list[Delivery]
    gen: int  # connection generation: a mid means nothing on another connection
    arrived_ms: int  # wall clock at arrival: liveness is judged on arrival, not processing


@dataclass(slots=True)
class Batch:
    """Pipeline → telemetry sink: telemetry of consecutive messages, acknowledged together.

    Its messages are acknowledged once the points are durable (store or spool) *and* every
    alarm record the pipeline handed the alarm sink before the batch was cut is durable
    (``records`` ≤ the alarm sink's durable watermark), in ``seq`` order. A batch with ``seq``
    None carries no acknowledgements (the alarm sink's board annotations).
    """

    points: list[Point] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)  # (gen, mid) of QoS 1 messages
    started: float = field(default_factory=time.monotonic)
    seq: int | None = 0  # hand-over order: acknowledgements leave in this order
    records: int = 0  # alarm sink records these messages produced: durable before the ack
