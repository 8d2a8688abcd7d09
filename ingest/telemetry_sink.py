"""Telemetry sink: batches → the telemetry store (InfluxDB or SQLite), through the journal when
the store is behind.

Alarms first: the acknowledgement of a message — and so the broker's next delivery, and so the
next alarm — never waits for a slow store. A **journal** thread takes the pipeline's batches in
order: a batch goes straight to an idle writer while the store keeps up and nothing waits in the
spool; otherwise it is appended to the durable spool (several batches per transaction, one
fsync) and reported durable at once. Writer threads (two for a store that takes concurrent
writes) write the batches handed to them and, whenever they are not given one, replay the
spool oldest first, merging batches into writes of up to twice ``batch_max_lines`` points. The
spool is the same one that holds batches while the store is down, so "slow" and "down" take
one path; its bound is the back-pressure point (the journal waits, acknowledgements stop, the
broker holds the backlog) while the pipeline and the alarm sink go on. How far the store is
behind is the age of the oldest spooled batch (``/health``, ``semon_telemetry_lag_seconds``).

The journal does not make a CPU-bound pipeline faster: when the machine cannot decode and
evaluate what arrives, messages wait in the broker and the inbox, alarms with them
(docs/benchmarks.md, "Alarms first"). Pausing the writers while the pipeline had a backlog was
measured and dropped: it moved CPU from telemetry to rules only while the spool grew, and cost
more than it gained near the sustained rate.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from semon import metrics as m
from semon.config import Settings
from semon.ingest.handover import Batch
from semon.ingest.spool import Spool, SpoolFull
from semon.ingest.supervision import Backoff, Supervisor
from semon.store.influx import INFLUX_LINES, decode_lines
from semon.store.telemetry import (
    POINTS_JSON,
    Point,
    TelemetryStore,
    TelemetryUnavailable,
    decode_points,
    encode_points,
)

log = logging.getLogger(__name__)

# Concurrent writes to a store that takes them (InfluxDB over HTTP). A write's latency, not CPU,
# bounds one writer: with 100 k devices' series a 5,000-line write takes a few hundred ms, and
# InfluxDB stalls now and then (WAL snapshots, compactions). Two writers overlap those waits;
# PUBACKs still leave in the order the messages arrived (MQTT 3.1.1 §4.6).
CONCURRENT_WRITERS = 2
# Batches waiting for the journal. A batch is cut at half the broker's in-flight window, so this
# holds far more than the broker lets be unacknowledged: the pipeline never waits on the journal
# (only QoS 0 floods could fill it, and then the pipeline waits — back-pressure).
QUEUE_BATCHES = 4096
# Batches the journal appends in one transaction (one fsync) when several wait.
JOURNAL_GROUP = 64
# Spooled batches one replay write may merge, up to this many times ``batch_max_lines`` points:
# a store that is behind catches up faster with fewer, larger writes, while a write stays small
# enough to finish within ``SEMON_INFLUX_TIMEOUT_S`` on a store that takes ordinary batches.
REPLAY_MERGE = 16
REPLAY_LINES_FACTOR = 2

# How to read a spooled batch back into points, per encoding: a journal written for one store
# replays into another after a restart (InfluxDB → the embedded SQLite store, say).
DECODERS: dict[str, Callable[[bytes], list[Point]]] = {POINTS_JSON: decode_points, INFLUX_LINES: decode_lines}

TELEMETRY_DOWN = "telemetry_store"
SPOOL_FULL = "spool_full"


class TelemetrySink:
    """The journal and writer stage; ``put`` batches, ``close`` to finish, ``on_durable`` gets
    each batch once its points are in the store or the spool."""

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
        # Journal → writers: each writer's own inbox. A batch goes to a writer only that offered
        # itself (``_offers``, it waits idle): a batch never queues behind a busy writer, it is
        # journaled instead.
        self._inboxes: dict[str, queue.Queue[Batch | None]] = {f"writer{i}": queue.Queue() for i in range(self.writers)}
        self._offers: dict[str, queue.Queue[Batch | None]] = {}
        self._offers_lock = threading.Lock()
        self._encoding: str = getattr(telemetry, "encoding", POINTS_JSON)
        self._retry = Backoff(0.5, 30.0)
        self._closing = threading.Event()
        self.last_write_ok: float | None = None  # monotonic

    def start(self) -> None:
        """Start the journal and the writer threads."""
        self.sup.spawn("journal", self._journal)
        for i in range(self.writers):
            self.sup.spawn(f"writer{i}", functools.partial(self._writer, f"writer{i}"))

    def put(self, batch: Batch) -> None:
        """Hand a batch over (blocks only when :data:`QUEUE_BATCHES` wait)."""
        self.queue.put(batch)

    def close(self) -> None:
        """Ask the journal and the writers to finish once the batches queued so far are durable."""
        self._closing.set()
        self.queue.put(None)

    def lag_s(self) -> float:
        """Seconds the oldest journaled batch has waited for the store (0: it keeps up)."""
        return self.spool.lag_s()

    # -- journal thread ----------------------------------------------------------------------
    def _journal(self) -> None:
        while True:
            self.sup.beat("journal")
            try:
                first = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            group: list[Batch | None] = [first]
            while group[-1] is not None and len(group) < JOURNAL_GROUP:
                try:
                    group.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            spool: list[Batch] = []
            for batch in group:
                if batch is None:
                    continue
                if not batch.points:
                    spool.append(batch)  # acknowledgements only: nothing to write, durable as it is
                elif not self._to_idle_writer(batch):
                    spool.append(batch)
            # False: stopping with a full spool — those messages stay unacknowledged.
            if (spool and not self._journaled(spool)) or group[-1] is None:
                for inbox in self._inboxes.values():
                    inbox.put(None)
                return

    def _to_idle_writer(self, batch: Batch) -> bool:
        """Hand a batch to a writer waiting idle — only while nothing waits in the spool, which
        the writers replay first: False, journal it."""
        with self._offers_lock:
            if not self._offers or len(self.spool):
                return False
            _, inbox = self._offers.popitem()
            inbox.put(batch)
            return True

    def _journaled(self, batches: list[Batch]) -> bool:
        """Append batches to the spool in one transaction, waiting at its bound; then report them
        durable. False only if stopping while the spool is full."""
        # In the store's own encoding: encoded once, here, as a direct write would be — the
        # replay then only sends bytes (line protocol for InfluxDB), so journaling costs the CPU
        # no more than writing at once.
        encoding = self._encoding
        bodies = [self._encode(b.points) for b in batches if b.points]
        try:
            self.spool.append_many(bodies, encoding)
        except SpoolFull:
            # Near the bound: one at a time, each as soon as it fits (the writers make room).
            for body in bodies:
                while True:
                    try:
                        self.spool.append(body, encoding)
                        break
                    except SpoolFull as e:
                        # Documented bound: stop acknowledging; the broker keeps the backlog.
                        self.sup.degraded(SPOOL_FULL, f"{e}: acknowledgements wait, the broker holds the backlog")
                        if self._closing.is_set():
                            return False  # unacked: the broker redelivers (what is spooled is an overwrite)
                        self.sup.beat("journal")
                        time.sleep(0.5)
        if bodies:
            self.sup.recovered(SPOOL_FULL)
            self._count("spooled_batches", len(bodies))
            m.BATCHES_SPOOLED.inc(len(bodies))
            self._spool_gauges()
        for batch in batches:
            self._on_durable(batch)
        return True

    # -- writer threads ----------------------------------------------------------------------
    def _writer(self, stage: str) -> None:
        inbox = self._inboxes[stage]
        while True:
            self.sup.beat(stage)
            with self._offers_lock:
                self._offers[stage] = inbox  # idle: the journal may hand this writer a batch
            try:
                batch = inbox.get(timeout=0.1 if len(self.spool) else 0.5)
            except queue.Empty:
                with self._offers_lock:
                    withdrawn = self._offers.pop(stage, None) is not None
                if withdrawn:  # nothing came: replay the spool instead
                    self._drain_spool(stage)
                    continue
                batch = inbox.get()  # the journal took the offer: its batch is on the way
            if batch is None:
                self._drain_spool(stage)
                return
            if not self._store(batch, stage):
                return  # stopping with a full spool: leave those messages unacked
            self._on_durable(batch)

    def _store(self, batch: Batch, stage: str) -> bool:
        """Put a batch somewhere durable; False only if stopping while the spool is full."""
        body = self._encode(batch.points)
        while True:
            if not len(self.spool) and self._retry.ready(time.monotonic()) and self._write(batch, body):
                return True
            try:
                self.spool.append(body, self._encoding)
                self.sup.recovered(SPOOL_FULL)
                self._count("spooled_batches", 1)
                m.BATCHES_SPOOLED.inc()
                self._spool_gauges()
                return True
            except SpoolFull as e:
                self.sup.degraded(SPOOL_FULL, f"{e}: acknowledgements wait, the broker holds the backlog")
                if self._closing.is_set():
                    return False
                self.sup.beat(stage)
                time.sleep(0.5)
                self._drain_spool(stage)

    def _encode(self, points: Sequence[Point]) -> bytes:
        """A batch in the store's own encoding: what a write sends and what the journal keeps."""
        return encode_points(points) if self._encoding == POINTS_JSON else self.telemetry.encode(points)

    def _write(self, batch: Batch, body: bytes) -> bool:
        """Write straight to the store; False (and the outage noted) when it is unavailable."""
        t0 = time.monotonic()
        try:
            refused = self._rejected(self.telemetry.write_encoded(body))
        except TelemetryUnavailable as e:
            self._unavailable(e)
            return False
        batch.records = max(batch.records, refused)  # their dead letters: durable before the ack
        m.WRITE_SECONDS.observe(time.monotonic() - t0)
        self._written(len(batch.points))
        return True

    def _drain_spool(self, stage: str) -> None:
        """Replay the spool while the store takes it; another writer may replay beside this one
        (each claims its own batches)."""
        while len(self.spool) and self._retry.ready(time.monotonic()):
            self.sup.beat(stage)
            rows = self._claim()
            if not rows:
                return  # the other writer holds what is left
            t0 = time.monotonic()
            try:
                n = self._replay(rows)
            except TelemetryUnavailable as e:
                self.spool.release([r[0] for r in rows])
                self._unavailable(e)
                return
            except BaseException:
                self.spool.release([r[0] for r in rows])
                raise
            self.spool.remove([r[0] for r in rows])
            m.WRITE_SECONDS.observe(time.monotonic() - t0)
            self._count("replayed_batches", len(rows))
            self._written(n)
            self._spool_gauges()
        if not len(self.spool):
            self.sup.recovered(SPOOL_FULL)

    def _claim(self) -> list[tuple[int, bytes, str]]:
        """The oldest unclaimed batches, as many as make one write of about
        :data:`REPLAY_LINES_FACTOR` × ``batch_max_lines`` points (journaled batches are often
        small: cut by age while the store lagged). JSON rows are counted by their item separators
        — an estimate, good enough for a size limit."""
        rows: list[tuple[int, bytes, str]] = []
        lines = 0
        while len(rows) < REPLAY_MERGE and lines < REPLAY_LINES_FACTOR * self.settings.batch_max_lines:
            got = self.spool.claim(1)
            if not got:
                break
            rows += got
            lines += got[0][1].count(b"\n") + 1 if got[0][2] != POINTS_JSON else got[0][1].count(b'],["') + 1
        return rows

    def _replay(self, rows: Sequence[tuple[int, bytes, str]]) -> int:
        """Write claimed spool rows: those in the store's own encoding as they are (merged into
        one write where the encoding concatenates), another store's decoded and re-encoded, an
        unknown encoding as dead letters. The points written."""
        ours = self._encoding
        points: list[Point] = []
        native: list[bytes] = []
        foreign: list[tuple[bytes, str]] = []
        for _, body, encoding in rows:
            if encoding == ours:
                native.append(body)
            elif (decode := DECODERS.get(encoding)) is not None:  # spooled for another store (a
                points += decode(body)  # restart on another store): re-encoded for this one
            else:  # an encoding nothing here reads: a dead letter, not lost
                foreign.append((body, f"spooled as {encoding}, which {type(self.telemetry).__name__} cannot read"))
        n = len(points)
        if points:
            self._rejected(self.telemetry.write_encoded(self.telemetry.encode(points)))
        if ours == POINTS_JSON:  # JSON arrays do not concatenate: one write each (a local store)
            for body in native:
                n += len(decode_points(body))
                self._rejected(self.telemetry.write_encoded(body))
        elif native:
            body = b"\n".join(native)
            n += body.count(b"\n") + 1
            self._rejected(self.telemetry.write_encoded(body))
        if foreign:
            self._rejected(foreign)
        return n

    def _unavailable(self, e: TelemetryUnavailable) -> None:
        self.sup.degraded(TELEMETRY_DOWN, f"telemetry store unavailable, spooling: {e}"[:300])
        self._retry.failed(time.monotonic())

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
        m.TELEMETRY_LAG.set(self.spool.lag_s())
