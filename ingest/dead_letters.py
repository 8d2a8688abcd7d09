"""Dead letters: what the collector could not accept, with the reason, counted and kept."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from semon import metrics as m
from semon.ingest.decode import Rejected
from semon.timeutil import utc_now

log = logging.getLogger(__name__)

# Dead letters keep the raw payload up to this size (the size itself is always recorded):
# a flood of oversized junk must not fill the database.
DEAD_LETTER_KEEP_BYTES = 256 * 1024


class DeadLetters:
    """Builds dead-letter rows and counts them by reason (the pipeline and the writers use it)."""

    def __init__(self, count: Any) -> None:
        self._count = count
        self._lock = threading.Lock()
        self.by_reason: Counter[str] = Counter()

    def letter(self, topic: str, payload: bytes, r: Rejected) -> dict[str, Any]:
        """A dead-letter row (the columns of :class:`semon.store.models.DeadLetter`), counted."""
        with self._lock:
            self.by_reason[r.reason] += 1
        self._count("dead_letters", 1)
        m.DEAD_LETTERS.labels(r.reason).inc()
        log.warning("dead letter", extra={"reason": r.reason, "topic": topic[:200], "detail": r.detail[:300]})
        return {
            "received_at": utc_now(),
            "topic": topic,
            "reason": r.reason,
            "detail": r.detail,
            "payload": payload[:DEAD_LETTER_KEEP_BYTES],
            "payload_size": len(payload),
            "device_id": r.device_id,
        }

    def refused_by_store(self, rows: list[tuple[bytes, str]]) -> list[dict[str, Any]]:
        """Rows for lines the telemetry store refused as invalid (never retried)."""
        return [self.letter("(telemetry store)", body, Rejected("rejected_by_store", why[:1000])) for body, why in rows]
