"""The collector: MQTT (QoS 1, persistent session, manual acks) → rules → durable stores.

Three threads, one job each:

* the MQTT network thread (:mod:`semon.ingest.mqttwire`) hands whole reads of messages to
  the inbox; the broker never has more than its in-flight window of them unacknowledged
  with us, which bounds the inbox — the broker holds the backlog (back-pressure, never loss);
* the pipeline thread validates, evaluates rules in device-time order, stores and publishes
  alarm transitions at once (alarms never wait on InfluxDB), dead-letters rejects and cuts
  telemetry into batches (≤ ``batch_max_lines`` or ≤ ``batch_max_age_s``);
* the writer thread writes each batch to the telemetry store — or, when it is slow or down,
  to the durable spool — and only then acknowledges the batch's messages to the broker (one
  write of PUBACKs per batch).

Several collectors can split one stream. ``partition`` (``I/N``, or ``SEMON_COLLECTOR_PARTITION``)
makes this one own the devices whose CRC-32 of the id is I modulo N: each collector then keeps
its own non-shared session, acknowledges other devices' messages unprocessed, and a device's
messages are ordered and evaluated by exactly one collector (docs/scaling.md).
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import text

from semon import metrics as m
from semon.config import Settings
from semon.contract.topics import SUBSCRIPTIONS, alarm_topic
from semon.ingest.decode import Decoder, Rejected, to_points
from semon.ingest.mqttwire import Delivery, PublishInfo, WireClient
from semon.ingest.spool import Spool, SpoolFull
from semon.rules.alarms import AlarmStore, event_message
from semon.rules.base import AlarmTransition
from semon.rules.catalog import Catalog
from semon.rules.engine import RuleEngine
from semon.store.db import Database
from semon.store.models import DeadLetter
from semon.store.registry import load_registry
from semon.store.telemetry import ALARM_MEASUREMENT, Point, TelemetryStore, TelemetryUnavailable, point_time_ns

log = logging.getLogger(__name__)

# Dead letters keep the raw payload up to this size (the size itself is always recorded):
# a flood of oversized junk must not fill the database.
DEAD_LETTER_KEEP_BYTES = 256 * 1024
# How far behind the devices' clocks the messages being processed may run before timers hold
# back (transit and batching stay well below this).
STREAM_LAG_TOLERANCE_MS = 1_000
# Concurrent writes to InfluxDB. The broker lets at most its in-flight window (1,000 by default)
# wait for acknowledgement, so throughput is bounded by window / write latency; with two writes
# in flight InfluxDB parses one batch while the other is fsynced. Acks still leave in order.
INFLUX_WRITERS = 2
# Event ids already announced (their board point written, hooks run): a re-publish after a lost
# PUBACK must not repeat those side effects. Bounded: only recent ones can be re-published.
ANNOUNCED_KEEP = 100_000


@dataclass(slots=True)
class Inbound:
    """One read's worth of received messages."""

    deliveries: list[Delivery]
    gen: int  # connection generation: a packet id means nothing on another connection
    arrived_ms: int  # wall clock at arrival: liveness is judged on arrival, not processing


@dataclass(slots=True)
class Batch:
    """Telemetry of consecutive messages, acknowledged together once durable."""

    points: list[Point] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)  # (gen, packet id)
    started: float = field(default_factory=time.monotonic)
    seq: int = 0  # order of hand-over to the writers: acknowledgements follow it


def parse_partition(value: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"I/N"`` (or ``(I, N)``) → ``(I, N)`` with 0 ≤ I < N; None or ``"0/1"`` → None (everything)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        i, sep, n = value.partition("/")
        if not sep or not i.strip().isdigit() or not n.strip().isdigit():
            raise ValueError(f"collector partition {value!r} is not I/N")
        value = (int(i), int(n))
    i, n = value
    if not 0 <= i < n:
        raise ValueError(f"collector partition {i}/{n}: need 0 <= I < N")
    return None if n == 1 else (i, n)


def partition_of(device_id: str, n: int) -> int:
    """The partition a device belongs to: stable across processes and machines (CRC-32)."""
    return zlib.crc32(device_id.encode()) % n


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Collector:
    """One collector process's worth of ingest; ``start()`` then ``stop()`` (or ``run()``)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        telemetry: TelemetryStore,
        *,
        engine: RuleEngine | None = None,
        client_id: str | None = None,
        partition: str | tuple[int, int] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.telemetry = telemetry
        self.alarms = AlarmStore(db)
        self.engine = engine or RuleEngine(Catalog(settings.rules_file))
        self.partition = parse_partition(
            partition
            if partition is not None
            else getattr(settings, "collector_partition", None) or os.environ.get("SEMON_COLLECTOR_PARTITION")
        )
        self._mine: dict[str, bool] = {}  # device id → in our partition (cached CRC)
        self._registry_fp: tuple[Any, ...] | None = self._registry_fingerprint()
        self.decoder = Decoder(load_registry(db), settings.max_payload_bytes, int(settings.max_future_skew_s * 1000))
        self._registry_loaded = time.monotonic()
        self.spool = Spool(settings.spool_path, settings.spool_max_bytes)
        # Whole reads, not messages: the broker's in-flight window bounds what is in here.
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=10_000)
        self.outbox: queue.Queue[Batch | None] = queue.Queue(maxsize=64)
        # Several writers only where the store takes concurrent writes (InfluxDB over HTTP).
        self._n_writers = INFLUX_WRITERS if type(telemetry).__name__ == "InfluxStore" else 1
        self._batch_seq = 0
        self._ack_next = 0
        self._done: dict[int, Batch] = {}
        self._ack_lock = threading.Lock()  # in-order acks and the stats writers share
        self._drain_lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self.dead_by_reason: Counter[str] = Counter()
        self._gen = 0
        self._closing = threading.Event()
        self._stopped = threading.Event()
        self.connected = threading.Event()
        self.ready = threading.Event()  # the pipeline is taking messages (start-up work done)
        # Called with each stored alarm transition message (e.g. maintenance reversion);
        # run on the pipeline thread, so they must be quick.
        self.transition_hooks: list[Callable[[dict[str, Any]], None]] = []
        self._announced: OrderedDict[int, None] = OrderedDict()
        self._threads: list[threading.Thread] = []
        self._last_write_ok: float | None = None
        self._spool_retry_at = 0.0
        self._spool_backoff = 0.5
        self._offline_paused = True
        self._batch = Batch()
        # Event-time lag of the stream being processed (wall clock minus the newest device time
        # of the last read): > 0 while a backlog drains. See _timer_now.
        self._stream_lag_ms = 0
        self._last_read_ms = 0
        self.client = self._make_client(client_id or settings.mqtt_client_id)

    # -- MQTT --------------------------------------------------------------------------
    def _make_client(self, client_id: str) -> WireClient:
        c = WireClient(
            client_id,
            clean_session=False,  # persistent session: the broker queues while we are away
            keepalive_s=30,
            username=self.settings.mqtt_username or None,
            password=self.settings.mqtt_password if self.settings.mqtt_username else None,
        )
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_messages = self._on_messages
        return c

    def _on_connect(self, session_present: bool) -> None:
        self._gen = self.client.gen
        group = self.settings.mqtt_share_group
        subs = [(f"$share/{group}/{t}" if group else t, 1) for t in SUBSCRIPTIONS]
        self.client.subscribe(subs)
        self.connected.set()
        log.info("MQTT connected (session present: %s), subscribed %d topics", session_present, len(subs))

    def _on_disconnect(self, reason: str) -> None:
        self.connected.clear()
        if not self._stopped.is_set():
            log.warning("MQTT disconnected (%s); reconnecting — unacked messages will be redelivered", reason)

    def _on_messages(self, deliveries: list[Delivery], gen: int) -> None:
        if self._closing.is_set():
            return  # not acked: the broker redelivers them to our next session
        self.inbox.put(Inbound(deliveries, gen, _now_ms()))

    # -- pipeline thread ---------------------------------------------------------------
    def _pipeline(self) -> None:
        self._batch = Batch()
        dead: list[DeadLetter] = []
        last_tick = last_relay = 0.0
        half_window = max(1, self.settings.mqtt_max_inflight // 2)
        if not self.settings.mqtt_share_group:
            # Alone on the stream (or on our partition of it): every registered device we own
            # is expected to speak. In a share group each collector only watches the devices
            # it hears from (docs/rules.md).
            devices = self.decoder.registry.values()
            self.engine.watch((d for d in devices if self._owns(d.id)) if self.partition else devices, _now_ms())
        if len(self.decoder.registry) >= 10_000:
            # What exists now (registry, per-device rule state) lives as long as the process:
            # keep it out of the cyclic GC's full scans, which at fleet scale walk millions of
            # objects and stall the pipeline for tens of milliseconds each time.
            gc.collect()
            gc.freeze()
        self.ready.set()
        while True:
            try:
                item: Inbound | None = self.inbox.get(timeout=0.1)
            except queue.Empty:
                item = None
            if item is not None:
                self._handle_many(item, dead, half_window)
            now = time.monotonic()
            if now - last_tick >= 0.2:
                last_tick = now
                self._sync_connection_state()
                self._publish(self.engine.tick(self._timer_now()))
                self._maybe_refresh_registry(now)
                m.QUEUE_DEPTH.set(self.inbox.qsize())
            if now - last_relay >= 1.0:
                last_relay = now
                self._relay()
            batch = self._batch
            n = len(batch.acks)
            if (n or batch.points) and (
                len(batch.points) >= self.settings.batch_max_lines
                or n >= half_window  # the broker sends no more than its inflight window unacked
                or now - batch.started >= self.settings.batch_max_age_s
                or (item is None and self._closing.is_set())
            ):
                self._flush(batch, dead)
                self._batch, dead = Batch(), []
            if item is None and self._closing.is_set() and self.inbox.empty():
                break
        if self._batch.points:
            self._flush(self._batch, dead)  # alarm points without messages to ack
        for _ in range(self._n_writers):
            self.outbox.put(None)

    def _sync_connection_state(self) -> None:
        """Offline timers pause while we, not the devices, are cut off from the broker."""
        if self.connected.is_set() and self._offline_paused:
            self.engine.resume_offline(_now_ms())
            self._offline_paused = False
        elif not self.connected.is_set() and not self._offline_paused:
            self.engine.pause_offline()
            self._offline_paused = True

    def _timer_now(self) -> int:
        """The wall time the rule timers (durations, offline) may assume has been seen.

        A timer fires when its device said nothing to cancel it in time. While a backlog drains
        (after a restart, a burst, an outage) the cancelling message may still be queued — at
        the broker, behind thousands of others — so wall-clock timers would raise alarms that
        the queued data disproves (a car "running for 60 s" whose stop report is 5 s down the
        queue). The stream's own event time is the safe clock: everything the broker delivered
        before the newest device time processed has been seen. When caught up (or idle) this
        is the wall clock.
        """
        now = _now_ms()
        if self._stream_lag_ms and (self.inbox.empty() and now - self._last_read_ms > 1_000):
            self._stream_lag_ms = 0  # nothing arrived for a second: no backlog left
        return now - self._stream_lag_ms

    def _owns(self, device_id: str) -> bool:
        """Is the device in this collector's partition (always, without partitions)?"""
        mine = self._mine.get(device_id)
        if mine is None:
            assert self.partition is not None
            mine = partition_of(device_id, self.partition[1]) == self.partition[0]
            if len(self._mine) < 4_000_000:
                self._mine[device_id] = mine
        return mine

    def _handle_many(self, item: Inbound, dead: list[DeadLetter], half_window: int) -> None:
        """Process one read's messages, flushing whenever half the in-flight window is unacked."""
        now_ms = _now_ms()
        now_ns = time.time_ns()
        gen, arrived_ms = item.gen, item.arrived_ms
        # Counted here and added to the metrics once per read: a labelled counter costs a lock
        # and a dict lookup, too much to pay per message at tens of thousands a second.
        received: Counter[str] = Counter()
        accepted: Counter[tuple[str, str]] = Counter()
        foreign = 0
        newest_ts = 0
        for d in item.deliveries:
            batch = self._batch
            if self.partition is not None:
                try:
                    dev_id = self.decoder.topic_info(d.topic).device_id
                except ValueError:
                    dev_id = None  # a bad topic is dead-lettered by partition 0 only
                if not (self._owns(dev_id) if dev_id is not None else self.partition[0] == 0):
                    foreign += 1  # another collector's device: its own session got it too
                    if d.qos:
                        batch.acks.append((gen, d.pid))
                    continue
            res = self.decoder.decode(d.topic, d.payload, now_ms)
            if (
                isinstance(res, Rejected)
                and res.reason == "unknown_device"
                and self._maybe_refresh_registry(time.monotonic(), min_age=1.0)
            ):
                res = self.decoder.decode(d.topic, d.payload, now_ms)  # registered meanwhile
            if isinstance(res, Rejected):
                received[d.topic.rsplit("/", 1)[-1]] += 1
                dead.append(self._dead_letter(d.topic, d.payload, res))
            else:
                channel = res.topic.channel
                received[channel] += 1
                accepted[res.device.kind, channel] += 1
                batch.points += to_points(res, now_ns)
                if channel == "status":
                    if res.body.ts > newest_ts:
                        newest_ts = res.body.ts
                    out = self.engine.evaluate(res.device, res.body, arrived_ms)
                elif channel == "event":
                    out = self.engine.evaluate_event(res.device, res.body, arrived_ms)
                else:
                    out = self.engine.online(res.device, res.body, arrived_ms)
                if out:
                    self._publish(out)
            if d.qos:
                batch.acks.append((gen, d.pid))
                if len(batch.acks) >= half_window:
                    # The broker sends no more than its in-flight window unacknowledged: hand
                    # this half over to the writer now, or the stream would stall.
                    self._flush(batch, dead)
                    self._batch, dead[:] = Batch(), []
        if newest_ts:
            lag = now_ms - newest_ts
            self._stream_lag_ms = lag if lag > STREAM_LAG_TOLERANCE_MS else 0
        self._last_read_ms = now_ms
        n_acc = sum(accepted.values())
        self.stats["received"] += sum(received.values()) + foreign
        self.stats["accepted"] += n_acc
        if foreign:
            self.stats["foreign"] += foreign
        for ch, k in received.items():
            m.MESSAGES_RECEIVED.labels(ch).inc(k)
        for (kind, ch), k in accepted.items():
            m.MESSAGES_ACCEPTED.labels(kind, ch).inc(k)

    def _dead_letter(self, topic: str, payload: bytes, r: Rejected) -> DeadLetter:
        self.stats["dead_letters"] += 1
        self.dead_by_reason[r.reason] += 1
        m.DEAD_LETTERS.labels(r.reason).inc()
        log.warning("dead letter", extra={"reason": r.reason, "topic": topic[:200], "detail": r.detail[:300]})
        return DeadLetter(
            received_at=datetime.now(UTC),
            topic=topic,
            reason=r.reason,
            detail=r.detail,
            payload=payload[:DEAD_LETTER_KEEP_BYTES],
            payload_size=len(payload),
            device_id=r.device_id,
        )

    def _publish(self, transitions: list[AlarmTransition]) -> None:
        """Store each transition, announce it, and mark it published once the broker has it."""
        sent: list[tuple[int, PublishInfo]] = []
        for t in transitions:
            stored = self.alarms.apply(t)
            if stored is None:
                continue
            self.stats[f"alarm_{t.event}"] += 1
            m.ALARM_TRANSITIONS.labels(t.rule.alarm_type, t.event).inc()
            log.info(
                "alarm %s",
                t.event,
                extra={
                    "alarm_id": stored.message["alarm_id"],
                    "device_id": t.device.id,
                    "alarm_type": t.rule.alarm_type,
                    "severity": t.severity.value,
                    "device_ts": t.ts,
                },
            )
            sent.append((stored.event_id, self._announce(stored.event_id, stored.message)))
        if sent:
            # Unacknowledged ones stay unmarked: the relay sends them again after RELAY_GRACE.
            self.alarms.mark_published(self._acknowledged(sent))

    def _acknowledged(self, sent: list[tuple[int, PublishInfo]]) -> list[int]:
        """Ids of the publishes the broker acknowledged, waiting at most ``alarm_puback_timeout_s``.

        Without a connection nothing can be acknowledged, so there is no wait at all (paho keeps
        the messages queued and may still deliver them: consumers dedupe by ``event_id``).
        """
        timeout = self.settings.alarm_puback_timeout_s if self.connected.is_set() else 0.0
        deadline = time.monotonic() + timeout
        done: list[int] = []
        for event_id, info in sent:
            try:
                left = deadline - time.monotonic()
                if not info.is_published() and left > 0:
                    info.wait_for_publish(left)
                if info.is_published():
                    done.append(event_id)
            except (RuntimeError, ValueError) as e:  # not queued / connection lost: relayed later
                log.debug("alarm transition %d not acknowledged: %s", event_id, e)
        if len(done) < len(sent):
            self.stats["alarm_puback_missing"] += len(sent) - len(done)
        return done

    def _announce(self, event_id: int, msg: dict[str, Any]) -> PublishInfo:
        """Publish on the alarm topic (QoS 1); the first time, also write the board annotation
        point and run the hooks. Returns the publish handle to wait for the PUBACK on."""
        info = self.client.publish(alarm_topic(msg["firm_id"], msg["device_id"]), orjson.dumps(msg), qos=1)
        if event_id in self._announced:
            return info  # a re-publish after a lost PUBACK: the side effects already happened
        self._announced[event_id] = None
        if len(self._announced) > ANNOUNCED_KEEP:
            self._announced.popitem(last=False)
        dev = self.decoder.registry.get(msg["device_id"])
        tags = {
            "kind": msg["kind"],
            "device_id": msg["device_id"],
            "district": dev.district if dev else "",
            "firm": msg["firm_id"] or "",
            "type": msg["type"],
            "severity": msg["severity"],
        }
        fields = {
            "event": msg["event"],
            "alarm_id": int(msg["alarm_id"]),
            "message": msg["message"] or "",
            "actor": msg["actor"],
        }
        self._batch.points.append(
            Point(ALARM_MEASUREMENT, tags, fields, point_time_ns(msg["ts"], event_id), msg["device_id"])
        )
        for hook in self.transition_hooks:
            try:
                hook(msg)
            except Exception:  # a broken hook must not stop ingest; it is logged loudly
                log.exception("alarm transition hook %r failed", hook)
        if msg["event"] == "cleared" and msg["actor"] != "rules":
            # A manual clear: if the condition still holds, the engine raises a new alarm.
            self.engine.manual_clear(msg["device_id"], msg["type"])
        return info

    def _relay(self) -> None:
        """Announce operator actions made through the API (acknowledgements, escalations, rescue
        steps…) and transitions a crash or outage left unacknowledged: publish, then mark after
        the PUBACK."""
        if not self.connected.is_set():
            return  # nothing could be acknowledged; the rows stay unmarked for the next round

        def send(rows: list[tuple[Any, Any]]) -> list[int]:
            sent = []
            for ev, a in rows:
                sent.append((ev.id, self._announce(ev.id, event_message(ev, a))))
                self.stats[f"relayed_{ev.event}"] += 1
            return self._acknowledged(sent)

        try:
            self.alarms.relay(send)
        except Exception:  # the database may be briefly away; the next round retries
            log.exception("alarm relay failed")

    def _registry_fingerprint(self) -> tuple[Any, ...] | None:
        """A cheap "has the registry changed?" probe; None where there is none (always reload).

        Reloading 100 k devices takes seconds of CPU on the pipeline thread; on PostgreSQL the
        row count plus the newest row version (``xmin``, set by every insert and update) says
        whether anything changed in one index-free scan on the server.
        """
        if self.db.engine.dialect.name != "postgresql":
            return None
        try:
            with self.db.engine.connect() as c:
                row = c.execute(text("SELECT count(*), max(xmin::text::bigint) FROM devices")).one()
            return tuple(row)
        except Exception:  # the database may be briefly away: reload as before
            log.debug("registry fingerprint failed", exc_info=True)
            return None

    def _maybe_refresh_registry(self, now: float, min_age: float | None = None) -> bool:
        age = now - self._registry_loaded
        if age < (min_age if min_age is not None else self.settings.registry_refresh_s):
            return False
        self._registry_loaded = now
        fp = self._registry_fingerprint()
        if fp is not None and fp == self._registry_fp:
            return False  # unchanged: the cached registry (and everything keyed on it) stays valid
        self.decoder.registry = load_registry(self.db)
        self._registry_fp = fp
        return True

    def restore_alarms(self) -> None:
        """Let the engine know which alarms are active, so it can clear them."""
        for a in self.alarms.active():
            dev = self.decoder.registry.get(a.device_id)
            if dev is not None:
                self.engine.restore_active(dev, a.rule_id, a.onset_ts, a.start_ts, a.severity)

    def _flush(self, batch: Batch, dead: list[DeadLetter]) -> None:
        if dead:
            with self.db.session() as s:
                s.add_all(dead)
        m.UNACKED.inc(len(batch.acks))
        batch.seq = self._batch_seq
        self._batch_seq += 1
        self.outbox.put(batch)

    # -- writer threads ----------------------------------------------------------------
    def _writer(self) -> None:
        while True:
            try:
                batch = self.outbox.get(timeout=0.5)
            except queue.Empty:
                self._drain_spool()
                continue
            if batch is None:
                self._drain_spool()
                return
            self._drain_spool()
            if not self._store(batch):
                return  # stopping with a full spool: leave those messages unacked
            self._durable(batch)

    def _durable(self, batch: Batch) -> None:
        """A batch is stored: acknowledge it — and any later ones already stored — in hand-over order."""
        with self._ack_lock:
            self._done[batch.seq] = batch
            while self._ack_next in self._done:
                b = self._done.pop(self._ack_next)
                self._ack_next += 1
                self._ack(b.acks)
                self.stats["acked"] += len(b.acks)
                m.UNACKED.dec(len(b.acks))

    def _ack(self, acks: list[tuple[int, int]]) -> None:
        """PUBACK a batch, one write per connection generation it spans.

        A packet id from an earlier connection would acknowledge some other message now: those
        are dropped by the client (the broker redelivers them to the new connection anyway).
        """
        if not acks:
            return
        start = 0
        for i in range(1, len(acks) + 1):
            if i == len(acks) or acks[i][0] != acks[start][0]:
                self.client.ack_many(acks[start][0], [pid for _, pid in acks[start:i]])
                start = i

    def _store(self, batch: Batch) -> bool:
        """Put a batch somewhere durable; False only if stopping while the spool is full."""
        if not batch.points:
            return True
        body = self.telemetry.encode(batch.points)
        if not len(self.spool):
            t0 = time.monotonic()
            try:
                self._rejected(self.telemetry.write_encoded(body))
                m.WRITE_SECONDS.observe(time.monotonic() - t0)
                self._written(len(batch.points))
                return True
            except TelemetryUnavailable as e:
                log.warning("telemetry store unavailable, spooling: %s", e)
                self._spool_retry_at = time.monotonic() + self._spool_backoff
        while True:
            try:
                self.spool.append(body)
                with self._ack_lock:
                    self.stats["spooled_batches"] += 1
                m.BATCHES_SPOOLED.inc()
                self._spool_gauges()
                return True
            except SpoolFull:
                # Documented bound: stop acknowledging; the broker keeps the backlog.
                if self._closing.is_set():
                    return False
                time.sleep(0.5)
                self._drain_spool()

    def _drain_spool(self) -> None:
        if not len(self.spool) or not self._drain_lock.acquire(blocking=False):
            return  # nothing spooled, or the other writer is replaying it
        try:
            self._drain_spool_locked()
        finally:
            self._drain_lock.release()

    def _drain_spool_locked(self) -> None:
        while len(self.spool) and time.monotonic() >= self._spool_retry_at:
            item = self.spool.peek()
            if item is None:
                return
            batch_id, body = item
            try:
                self._rejected(self.telemetry.write_encoded(body))
            except TelemetryUnavailable:
                self._spool_backoff = min(self._spool_backoff * 2, 30.0)
                self._spool_retry_at = time.monotonic() + self._spool_backoff
                return
            self.spool.remove(batch_id)
            with self._ack_lock:
                self.stats["replayed_batches"] += 1
            self._written(body.count(b"\n") + 1)
            self._spool_backoff = 0.5
            self._spool_gauges()

    def _written(self, n: int) -> None:
        with self._ack_lock:
            self.stats["points_written"] += n
        m.POINTS_WRITTEN.labels(type(self.telemetry).__name__).inc(n)
        self._last_write_ok = time.monotonic()

    def _rejected(self, rows: list[tuple[bytes, str]]) -> None:
        if not rows:
            return
        rejected = Rejected("rejected_by_store", "")
        letters = []
        for body, why in rows:
            rejected.detail = why[:1000]
            letters.append(self._dead_letter("(telemetry store)", body, rejected))
        with self.db.session() as s:
            s.add_all(letters)

    def _spool_gauges(self) -> None:
        m.SPOOL_BATCHES.set(len(self.spool))
        m.SPOOL_BYTES.set(self.spool.bytes)

    # -- lifecycle ---------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Status for ``/health``: ok while connected to the broker."""
        return {
            "status": "ok" if self.connected.is_set() else "degraded",
            "mqtt_connected": self.connected.is_set(),
            "ready": self.ready.is_set(),
            "spool_batches": len(self.spool),
            "spool_bytes": self.spool.bytes,
            "inbox": self.inbox.qsize(),
            **{k: v for k, v in self.stats.items()},
        }

    def start(self) -> None:
        """Connect to the broker and start the pipeline and writer threads."""
        if hasattr(self.telemetry, "ensure_database"):
            self.telemetry.ensure_database()
        self.restore_alarms()
        targets = [(self._pipeline, "pipeline")] + [(self._writer, f"writer{i}") for i in range(self._n_writers)]
        for target, name in targets:
            t = threading.Thread(target=target, name=f"collector-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        host, port = self.settings.mqtt_endpoint()
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, write and acknowledge what was taken, disconnect."""
        self._closing.set()
        for t in self._threads:
            t.join(timeout)
        self._stopped.set()
        self.client.disconnect()
        self.client.loop_stop()
        self.spool.close()
        log.info("collector stopped", extra={"stats": dict(self.stats)})
