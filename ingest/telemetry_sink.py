"""Telemetry sink: batches → the telemetry store (InfluxDB or SQLite), or the durable spool.

Writer threads (two for a store that takes concurrent writes) each take a batch, write it —
or, while the store is slow or down, append it to the spool in the store-neutral encoding —
and report it durable to the acknowledgement gate. The spool is replayed oldest first, by one
writer at a time, with backoff while the store stays away. At the spool's bound a writer waits
(back-pressure: acknowledgements stop, the broker holds the backlog) while the pipeline and
the alarm sink go on: the batch queue between them is large enough for the broker's in-flight
window, so rules keep evaluating what the broker still sends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from semon import metrics as m
from semon.config import Settings
from semon.ingest.handover import Batch
from semon.ingest.spool import Spool, SpoolFull
from semon.ingest.supervision import Backoff, Supervisor
from semon.store.telemetry import POINTS_JSON, TelemetryStore, TelemetryUnavailable, decode_points, encode_points

log = logging.getLogger(__name__)

# Concurrent writes to a store that takes them (InfluxDB over HTTP). A write's latency, not CPU,
# bounds one writer: with 100 k devices' series a 5,000-line write takes a few hundred ms, and
# InfluxDB stalls now and then (WAL snapshots, compactions). Two writers overlap those waits;
# PUBACKs still leave in the order the messages arrived (MQTT 3.1.1 §4.6).
CONCURRENT_WRITERS = 2
# Batches waiting for a writer. A batch is cut at half the broker's in-flight window, so this
# holds far more than the broker lets be unacknowledged: the pipeline never waits on a stalled
# store (only QoS 0 floods could fill it, and then the pipeline waits — back-pressure).
QUEUE_BATCHES = 4096

TELEMETRY_DOWN = "telemetry_store"
SPOOL_FULL = "spool_full"


class TelemetrySink:
    """The writer stage; ``put`` batches, ``close`` to finish, ``on_durable`` gets each batch."""

    def __init__(
        self,
        settings: Settings,
        telemetry: TelemetryStore,
        spool: Spool,
        sup: Supervisor,
        count: Callable[[str, int], None],
        on_durable: Callable[[Batch], None],
        on_rejected: Callable[[list[tuple[bytes, str]]], int],
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.spool = spool
        self.sup = sup
        self._count = count
        self._on_durable = on_durable
        self._on_rejected = on_rejected
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self.writers = CONCURRENT_WRITERS if getattr(telemetry, "concurrent_writes", False) else 1
        self._drain_lock = threading.Lock()
        self._retry = Backoff(0.5, 30.0)
        self._closing = threading.Event()
        self.last_write_ok: float | None = None  # monotonic

    def start(self) -> None:
        """Start the writer threads."""
        for i in range(self.writers):
            self.sup.spawn(f"writer{i}", lambda i=i: self._writer(f"writer{i}"))

    def put(self, batch: Batch) -> None:
        """Hand a batch over (blocks only when :data:`QUEUE_BATCHES` wait)."""
        self.queue.put(batch)

    def close(self) -> None:
        """Ask every writer to finish once the batches queued so far are durable."""
        self._closing.set()
        for _ in range(self.writers):
            self.queue.put(None)

    # -- writer threads --------------------------------------------------------------------
    def _writer(self, stage: str) -> None:
        while True:
            self.sup.beat(stage)
            try:
                batch = self.queue.get(timeout=0.5)
            except queue.Empty:
                self._drain_spool()
                continue
            if batch is None:
                self._drain_spool()
                return
            self._drain_spool()
            if not self._store(batch, stage):
                return  # stopping with a full spool: leave those messages unacked
            self._on_durable(batch)

    def _store(self, batch: Batch, stage: str) -> bool:
        """Put a batch somewhere durable; False only if stopping while the spool is full."""
        if not batch.points:
            return True
        body: bytes | None = None
        while True:
            if not len(self.spool) and self._retry.ready(time.monotonic()) and self._write(batch):
                return True
            body = body or encode_points(batch.points)
            try:
                self.spool.append(body, POINTS_JSON)
                self.sup.recovered(SPOOL_FULL)
                self._count("spooled_batches", 1)
                m.BATCHES_SPOOLED.inc()
                self._spool_gauges()
                return True
            except SpoolFull as e:
                # Documented bound: stop acknowledging; the broker keeps the backlog.
                self.sup.degraded(SPOOL_FULL, f"{e}: acknowledgements wait, the broker holds the backlog")
                if self._closing.is_set():
                    return False
                self.sup.beat(stage)
                time.sleep(0.5)
                self._drain_spool()

    def _write(self, batch: Batch) -> bool:
        """Write straight to the store; False (and the outage noted) when it is unavailable."""
        t0 = time.monotonic()
        try:
            refused = self._rejected(self.telemetry.write_encoded(self.telemetry.encode(batch.points)))
        except TelemetryUnavailable as e:
            self.sup.degraded(TELEMETRY_DOWN, f"telemetry store unavailable, spooling: {e}"[:300])
            self._retry.failed(time.monotonic())
            return False
        batch.records = max(batch.records, refused)  # their dead letters: durable before the ack
        m.WRITE_SECONDS.observe(time.monotonic() - t0)
        self._written(len(batch.points))
        return True

    def _drain_spool(self) -> None:
        if not len(self.spool) or not self._drain_lock.acquire(blocking=False):
            return  # nothing spooled, or another writer is replaying it
        try:
            self._replay()
        finally:
            self._drain_lock.release()

    def _replay(self) -> None:
        while len(self.spool) and self._retry.ready(time.monotonic()):
            item = self.spool.peek()
            if item is None:
                return
            batch_id, body, encoding = item
            n = body.count(b"\n") + 1
            try:
                if encoding == getattr(self.telemetry, "encoding", None) and encoding != POINTS_JSON:
                    self._rejected(self.telemetry.write_encoded(body))
                elif encoding == POINTS_JSON:
                    points = decode_points(body)
                    n = len(points)
                    self._rejected(self.telemetry.write_encoded(self.telemetry.encode(points)))
                else:  # an old spool in another store's encoding: kept as a dead letter, not lost
                    store = type(self.telemetry).__name__
                    self._rejected([(body, f"spooled as {encoding}, which {store} cannot read")])
            except TelemetryUnavailable as e:
                self._retry.failed(time.monotonic())
                self.sup.degraded(TELEMETRY_DOWN, f"telemetry store unavailable, spooling: {e}"[:300])
                return
            self.spool.remove(batch_id)
            self._count("replayed_batches", 1)
            self._written(n)
            self._spool_gauges()
        if not len(self.spool):
            self.sup.recovered(SPOOL_FULL)

    def _written(self, n: int) -> None:
        self._count("points_written", n)
        m.POINTS_WRITTEN.labels(type(self.telemetry).__name__).inc(n)
        self.last_write_ok = time.monotonic()
        self._retry.reset()
        if not len(self.spool):
            self.sup.recovered(TELEMETRY_DOWN)
            self.sup.recovered(SPOOL_FULL)

    def _rejected(self, rows: list[tuple[bytes, str]]) -> int:
        """Hand refused lines over as dead letters; their alarm-sink record number (0: none)."""
        return self._on_rejected(rows) if rows else 0

    def _spool_gauges(self) -> None:
        m.SPOOL_BATCHES.set(len(self.spool))
        m.SPOOL_BYTES.set(self.spool.bytes)
