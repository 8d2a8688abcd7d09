"""The collector: MQTT (QoS 1, persistent session, manual acks) → rules → durable stores.

Three threads, one job each:

* paho's network thread (:mod:`semon.ingest.mqtt_client`) hands each burst of received
  messages to a bounded inbox (a full inbox blocks it, so the broker holds the backlog —
  back-pressure, never loss);
* the pipeline thread validates, evaluates rules in device-time order, stores and publishes
  alarm transitions at once (alarms never wait on InfluxDB), dead-letters rejects and cuts
  telemetry into batches (≤ ``batch_max_lines`` or ≤ ``batch_max_age_s``);
* the writer thread writes each batch to the telemetry store — or, when it is slow or down,
  to the durable spool — and only then acknowledges the batch's messages to the broker (one
  write of PUBACKs per batch).

Several collectors can split one stream by device: with ``SEMON_COLLECTOR_PARTITION=I/N``
this one owns the devices whose CRC-32 of the id is I modulo N. Each keeps its own non-shared
session, acknowledges other devices' messages unprocessed, and so a device's messages are
ordered and evaluated by exactly one collector (docs/scaling.md).
"""

from __future__ import annotations

import gc
import logging
import queue
import sys
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from semon import metrics as m
from semon.config import Settings
from semon.contract.topics import SUBSCRIPTIONS, TopicError, alarm_topic
from semon.ingest.decode import Decoder, Rejected, to_points
from semon.ingest.mqtt_client import FastClient
from semon.ingest.spool import Spool, SpoolFull
from semon.rules.alarms import AlarmStore, event_message
from semon.rules.base import AlarmTransition
from semon.rules.catalog import Catalog
from semon.rules.engine import RuleEngine
from semon.store.db import Database
from semon.store.models import DeadLetter
from semon.store.registry import load_registry, registry_fingerprint
from semon.store.telemetry import ALARM_MEASUREMENT, Point, TelemetryStore, TelemetryUnavailable, point_time_ns

log = logging.getLogger(__name__)

# Dead letters keep the raw payload up to this size (the size itself is always recorded):
# a flood of oversized junk must not fill the database.
DEAD_LETTER_KEEP_BYTES = 256 * 1024
# Event ids already announced (their board point written, hooks run): a re-publish after a lost
# PUBACK must not repeat those side effects. Bounded: only recent ones can be re-published.
ANNOUNCED_KEEP = 100_000
# GIL switch interval for a process that runs a collector. The pipeline thread is CPU-bound and
# paho's network thread mostly waits in select(): with Python's default 5 ms they trade the GIL
# so often that the process stalls in hand-offs (at 26 k msg/s: 24 k accepted at 0.5 ms, 26.5 k
# at 20 ms, same run conditions; docs/benchmarks.md). The cost is at most 20 ms more alarm latency.
SWITCH_INTERVAL_S = 0.02
# Garbage-collection thresholds for a process that runs a collector. Each message allocates a
# few dozen short-lived containers that reference counting frees at once; with CPython's
# default (a young-generation pass every 700 net allocations) the cyclic collector ran every few
# messages and took 40 % of the pipeline's CPU (bench/collector_cost.py: 27 → 23 µs a message).
GC_THRESHOLDS = (50_000, 10, 10)

# Concurrent writes to a store that takes them (InfluxDB over HTTP). A write's latency, not CPU,
# bounds one writer: with 100 k devices' series a 5,000-line write takes a few hundred ms, and
# InfluxDB stalls now and then (WAL snapshots, compactions). Two writers overlap those waits;
# PUBACKs still leave in the order the messages arrived (MQTT 3.1.1 §4.6).
CONCURRENT_WRITERS = 2


def tune_runtime() -> None:
    """Process-wide interpreter settings for a process dedicated to a collector (see above)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)


# One received message: (topic, payload, mid, qos).
Delivery = tuple[str, bytes, int, int]


@dataclass(slots=True)
class Inbound:
    """One network read's worth of received messages and what is needed to acknowledge them."""

    deliveries: list[Delivery]
    gen: int  # connection generation: a mid means nothing on another connection
    arrived_ms: int  # wall clock at arrival: liveness is judged on arrival, not processing


@dataclass(slots=True)
class Batch:
    """Telemetry of consecutive messages, acknowledged together once durable."""

    points: list[Point] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)  # (gen, mid) of QoS 1 messages
    started: float = field(default_factory=time.monotonic)
    seq: int = 0  # hand-over order to the writers: acknowledgements leave in this order


def parse_partition(value: str | None) -> tuple[int, int] | None:
    """``"I/N"`` → ``(I, N)`` with 0 ≤ I < N; empty, None or ``"0/1"`` → None (every device)."""
    if not value:
        return None
    i, sep, n = value.partition("/")
    if not sep or not i.strip().isdigit() or not n.strip().isdigit():
        raise ValueError(f"collector partition {value!r} is not I/N")
    pi, pn = int(i), int(n)
    if not 0 <= pi < pn:
        raise ValueError(f"collector partition {value!r}: need 0 <= I < N")
    return None if pn == 1 else (pi, pn)


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
    ) -> None:
        self.settings = settings
        self.db = db
        self.telemetry = telemetry
        self.alarms = AlarmStore(db)
        self.engine = engine or RuleEngine(Catalog(settings.rules_file))
        self.partition = parse_partition(settings.collector_partition)
        if self.partition and settings.mqtt_share_group:
            raise ValueError("a partitioned collector needs its own session: unset SEMON_MQTT_SHARE_GROUP")
        self._mine: dict[str, bool] = {}  # device id → in our partition (CRC cached)
        self._registry_fp = registry_fingerprint(db)
        self.decoder = Decoder(load_registry(db), settings.max_payload_bytes, int(settings.max_future_skew_s * 1000))
        self._registry_loaded = time.monotonic()
        self.spool = Spool(settings.spool_path, settings.spool_max_bytes)
        # Bursts, not messages; the broker's in-flight window bounds what is unacknowledged.
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=10_000)
        self._burst: list[Delivery] = []
        self.outbox: queue.Queue[Batch | None] = queue.Queue(maxsize=64)
        self._writers = CONCURRENT_WRITERS if getattr(telemetry, "concurrent_writes", False) else 1
        self._next_seq = 0  # next Batch.seq to hand over (pipeline thread)
        self._ack_next = 0  # next Batch.seq whose acknowledgements may leave
        self._written_batches: dict[int, Batch] = {}  # durable, waiting for earlier ones
        self._ack_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._stats_lock = threading.Lock()  # stats are updated from the pipeline and the writers
        self.stats: Counter[str] = Counter()
        # Hot per-message counts, moved into stats and Prometheus every tick (_count_messages).
        self._received: Counter[str] = Counter()  # channel → messages
        self._accepted: Counter[tuple[str, str]] = Counter()  # (kind, channel) → messages
        self._foreign = 0  # other partitions' messages, acknowledged unprocessed
        self.dead_by_reason: Counter[str] = Counter()
        self._gen = 0
        self._closing = threading.Event()
        self._stopped = threading.Event()
        self.connected = threading.Event()
        # Called with each stored alarm transition message (e.g. maintenance reversion);
        # run on the pipeline thread, so they must be quick.
        self.transition_hooks: list[Callable[[dict[str, Any]], None]] = []
        self._announced: OrderedDict[int, None] = OrderedDict()
        self._threads: list[threading.Thread] = []
        self._last_write_ok: float | None = None
        self._spool_retry_at = 0.0
        self._spool_backoff = 0.5
        self._offline_paused = True
        # What the pipeline thread is gathering: the next batch and the dead letters cut with it.
        self._batch = Batch()
        self._dead: list[DeadLetter] = []
        # The broker sends no more than its in-flight window unacknowledged: cut a batch at half.
        self._half_window = max(1, settings.mqtt_max_inflight // 2)
        if client_id is None:
            client_id = settings.mqtt_client_id
            if self.partition:
                client_id += f"-p{self.partition[0]}of{self.partition[1]}"
        self.client = self._make_client(client_id)

    # -- MQTT --------------------------------------------------------------------------
    def _make_client(self, client_id: str) -> FastClient:
        c = FastClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,  # persistent session: the broker queues while we are away
            protocol=mqtt.MQTTv311,
            manual_ack=True,  # ack only once what a message produced is durable
        )
        if self.settings.mqtt_username:
            c.username_pw_set(self.settings.mqtt_username, self.settings.mqtt_password)
        c.max_queued_messages_set(0)
        c.max_inflight_messages_set(1000)
        c.reconnect_delay_set(0.5, 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_burst_end = self._on_burst_end
        return c

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            log.error("MQTT connect refused: %s", rc)
            return
        self._gen += 1
        group = self.settings.mqtt_share_group
        subs = [(f"$share/{group}/{t}" if group else t, 1) for t in SUBSCRIPTIONS]
        c.subscribe(subs)
        self.connected.set()
        log.info("MQTT connected (session present: %s), subscribed %d topics", _f.session_present, len(subs))

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.connected.clear()
        if not self._stopped.is_set():
            log.warning("MQTT disconnected (%s); reconnecting — unacked messages will be redelivered", rc)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self._closing.is_set():
            return  # not acked: the broker redelivers it to our next session
        self._burst.append((msg.topic, msg.payload, msg.mid, msg.qos))

    def _on_burst_end(self) -> None:
        if self._burst:
            burst, self._burst = self._burst, []
            # Blocks paho's network thread when the pipeline is behind: TCP back-pressure.
            self.inbox.put(Inbound(burst, self._gen, _now_ms()))

    # -- pipeline thread ---------------------------------------------------------------
    def _pipeline(self) -> None:
        last_tick = last_relay = 0.0
        last_arrival = 0  # arrival (wall ms) of the newest burst processed
        if not self.settings.mqtt_share_group:
            # Alone on the stream (or on a partition of it): every registered device we own is
            # expected to speak. In a share group each collector only watches the devices it
            # hears from (docs/rules.md).
            self.engine.watch([d for d in self.decoder.registry.values() if self._owns(d.id)], _now_ms())
        while True:
            try:
                item: Inbound | None = self.inbox.get(timeout=0.1)
            except queue.Empty:
                item = None
            if item is not None:
                last_arrival = item.arrived_ms
                self._take(item)
            now = time.monotonic()
            if now - last_tick >= 0.2:
                last_tick = now
                self._sync_connection_state()
                self._count_messages()
                # Timers judge "nothing came in time" — but while received messages still wait in
                # the inbox, one of them may be the answer: the clock stops at the arrival of the
                # last burst processed until the inbox is empty (a backlog delays, never invents).
                self._publish(self.engine.tick(_now_ms() if self.inbox.empty() else last_arrival))
                self._maybe_refresh_registry(now)
                m.QUEUE_DEPTH.set(self.inbox.qsize())
            if now - last_relay >= 1.0:
                last_relay = now
                self._relay()
            batch = self._batch
            n = len(batch.acks)
            if (n or batch.points) and (
                len(batch.points) >= self.settings.batch_max_lines
                or now - batch.started >= self.settings.batch_max_age_s
                or (item is None and self._closing.is_set())
            ):
                self._cut()
            if item is None and self._closing.is_set() and self.inbox.empty():
                break
        if self._batch.points:
            self._cut()  # alarm points without messages to ack
        self._count_messages()
        for _ in range(self._writers):
            self.outbox.put(None)

    def _sync_connection_state(self) -> None:
        """Offline timers pause while we, not the devices, are cut off from the broker."""
        if self.connected.is_set() and self._offline_paused:
            self.engine.resume_offline(_now_ms())
            self._offline_paused = False
        elif not self.connected.is_set() and not self._offline_paused:
            self.engine.pause_offline()
            self._offline_paused = True

    def _owns(self, device_id: str) -> bool:
        """Whether this collector's partition holds the device (always, unpartitioned)."""
        if self.partition is None:
            return True
        mine = self._mine.get(device_id)
        if mine is None:
            mine = self._mine[device_id] = partition_of(device_id, self.partition[1]) == self.partition[0]
        return mine

    def _take(self, item: Inbound) -> None:
        """Handle one burst, cutting a batch whenever half the in-flight window waits in it."""
        for d in item.deliveries:
            self._handle(d, item.gen, item.arrived_ms)
            if len(self._batch.acks) >= self._half_window:
                self._cut()

    def _handle(self, d: Delivery, gen: int, arrived_ms: int) -> None:
        topic, payload, mid, qos = d
        if qos:
            self._batch.acks.append((gen, mid))
        if self.partition is not None:
            try:
                owner = self._owns(self.decoder.topic_info(topic).device_id)
            except TopicError:
                owner = self.partition[0] == 0  # a topic without a device: partition 0 dead-letters it
            if not owner:
                self._foreign += 1  # its own collector has its copy; just acknowledge
                return
        now_ms = _now_ms()
        res = self.decoder.decode(topic, payload, now_ms)
        if (
            isinstance(res, Rejected)
            and res.reason == "unknown_device"
            and self._maybe_refresh_registry(time.monotonic(), min_age=1.0)
        ):
            res = self.decoder.decode(topic, payload, now_ms)  # registered meanwhile
        channel = topic.rsplit("/", 1)[-1]
        self._received[channel] += 1
        if isinstance(res, Rejected):
            self._dead.append(self._dead_letter(topic, payload, res))
            return
        self._accepted[(res.device.kind, channel)] += 1
        self._batch.points.extend(to_points(res, time.time_ns()))
        if channel == "status":
            self._publish(self.engine.evaluate(res.device, res.body, arrived_ms))
        elif channel == "event":
            self._publish(self.engine.evaluate_event(res.device, res.body, arrived_ms))
        else:
            self._publish(self.engine.online(res.device, res.body, arrived_ms))

    def _count_messages(self) -> None:
        """Move the per-message counts into stats and Prometheus (batched: they are hot)."""
        received, accepted, foreign = self._received, self._accepted, self._foreign
        self._received, self._accepted, self._foreign = Counter(), Counter(), 0
        for channel, n in received.items():
            m.MESSAGES_RECEIVED.labels(channel).inc(n)
        for (kind, channel), n in accepted.items():
            m.MESSAGES_ACCEPTED.labels(kind, channel).inc(n)
        with self._stats_lock:
            self.stats["received"] += received.total()
            self.stats["accepted"] += accepted.total()
            if foreign:
                self.stats["foreign"] += foreign

    def _stat(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    def _dead_letter(self, topic: str, payload: bytes, r: Rejected) -> DeadLetter:
        with self._stats_lock:
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
        sent: list[tuple[int, mqtt.MQTTMessageInfo]] = []
        for t in transitions:
            stored = self.alarms.apply(t)
            if stored is None:
                continue
            self._stat(f"alarm_{t.event}")
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

    def _acknowledged(self, sent: list[tuple[int, mqtt.MQTTMessageInfo]]) -> list[int]:
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
            self._stat("alarm_puback_missing", len(sent) - len(done))
        return done

    def _announce(self, event_id: int, msg: dict[str, Any]) -> mqtt.MQTTMessageInfo:
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
                self._stat(f"relayed_{ev.event}")
            return self._acknowledged(sent)

        try:
            self.alarms.relay(send)
        except Exception:  # the database may be briefly away; the next round retries
            log.exception("alarm relay failed")

    def _maybe_refresh_registry(self, now: float, min_age: float | None = None) -> bool:
        age = now - self._registry_loaded
        if age < (min_age if min_age is not None else self.settings.registry_refresh_s):
            return False
        self._registry_loaded = now
        try:
            fp = registry_fingerprint(self.db)
        except Exception:  # the database may be briefly away: reload (which says so if it fails)
            log.debug("registry fingerprint failed", exc_info=True)
            fp = None
        if fp is not None and fp == self._registry_fp:
            return False  # unchanged: the loaded registry (and what is cached by it) stays valid
        self.decoder.registry = load_registry(self.db)
        self._registry_fp = fp
        return True

    def restore_alarms(self) -> None:
        """Let the engine know which alarms are active, so it can clear them."""
        for a in self.alarms.active():
            dev = self.decoder.registry.get(a.device_id)
            if dev is not None:
                self.engine.restore_active(dev, a.rule_id, a.onset_ts, a.start_ts, a.severity)

    def _cut(self) -> None:
        """Store the gathered dead letters, hand the batch to the writers, start the next."""
        batch, dead = self._batch, self._dead
        self._batch, self._dead = Batch(), []
        if dead:
            with self.db.session() as s:
                s.add_all(dead)
        m.UNACKED.inc(len(batch.acks))
        batch.seq, self._next_seq = self._next_seq, self._next_seq + 1
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
            self._acknowledge(batch)

    def _acknowledge(self, batch: Batch) -> None:
        """PUBACK a durable batch's messages once every earlier batch's have left (in order)."""
        with self._ack_lock:
            self._written_batches[batch.seq] = batch
            while self._ack_next in self._written_batches:
                b = self._written_batches.pop(self._ack_next)
                self._ack_next += 1
                # A mid from an earlier connection would ack some other message now: skip it,
                # the broker redelivers that message anyway.
                gen_now = self._gen
                self.client.ack_many([mid for gen, mid in b.acks if gen == gen_now])
                self._stat("acked", len(b.acks))
                m.UNACKED.dec(len(b.acks))

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
                self._stat("spooled_batches")
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
            return  # nothing spooled, or another writer is replaying it
        try:
            self._replay()
        finally:
            self._drain_lock.release()

    def _replay(self) -> None:
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
            self._stat("replayed_batches")
            self._written(body.count(b"\n") + 1)
            self._spool_backoff = 0.5
            self._spool_gauges()

    def _written(self, n: int) -> None:
        self._stat("points_written", n)
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
            "spool_batches": len(self.spool),
            "spool_bytes": self.spool.bytes,
            "inbox": self.inbox.qsize(),
            **self._stats_copy(),
        }

    def start(self) -> None:
        """Connect to the broker and start the pipeline and writer threads."""
        if hasattr(self.telemetry, "ensure_database"):
            self.telemetry.ensure_database()
        self.restore_alarms()
        workers = [(self._pipeline, "pipeline")] + [(self._writer, f"writer{i}") for i in range(self._writers)]
        for target, name in workers:
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
        time.sleep(0.2)  # let paho send the last PUBACKs
        self.client.disconnect()
        self.client.loop_stop()
        self.spool.close()
        log.info("collector stopped", extra={"stats": self._stats_copy()})

    def _stats_copy(self) -> dict[str, int]:
        with self._stats_lock:
            return dict(self.stats)
