"""Pipeline stage: decode, validate and evaluate rules — no waiting on any store or the broker.

One thread takes the source's bursts in arrival order: each message is decoded (a reject
becomes a dead-letter row), its telemetry joins the current batch, and the rule engine's
transitions go to the alarm sink at once. A batch is cut at ``batch_max_lines``, at
``batch_max_age_s`` or when half the broker's in-flight window waits in it, and handed to the
telemetry sink with the alarm sink's sequence number at that moment, so its PUBACKs wait for
the alarm records its messages produced. Timers (durations, offline) run from here too.

The one database call on this thread is the bounded registry reload when a message names an
unknown device (at most once a second, skipped during a database outage).
"""

from __future__ import annotations

import queue
import time
import zlib
from collections import Counter
from collections.abc import Callable

from semon import metrics as m
from semon.config import Settings
from semon.contract.topics import PREFIX, TopicError, canary_checker
from semon.ingest.alarm_sink import AlarmSink
from semon.ingest.dead_letters import DeadLetters
from semon.ingest.decode import Decoder, Rejected, to_points
from semon.ingest.handover import Batch, Delivery, Inbound
from semon.ingest.registry_watch import RegistryWatch
from semon.ingest.seq_gaps import GapWatch
from semon.ingest.source import MqttSource, now_ms
from semon.ingest.supervision import Supervisor
from semon.ingest.telemetry_sink import TelemetrySink
from semon.rules.engine import RuleEngine
from semon.rules.ordering import JUMP_OFF

TICK_S = 0.2
CANARY_PREFIX = f"{PREFIX}/canary/"


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


class Pipeline:
    """The pipeline stage of one collector."""

    def __init__(
        self,
        settings: Settings,
        engine: RuleEngine,
        source: MqttSource,
        registry: RegistryWatch,
        alarms: AlarmSink,
        telemetry: TelemetrySink,
        dead: DeadLetters,
        sup: Supervisor,
        count: Callable[[str, int], None],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.source = source
        self.inbox = source.inbox
        self.registry = registry
        self.alarms = alarms
        self.telemetry = telemetry
        self.dead = dead
        self.sup = sup
        self._count = count
        self.partition = parse_partition(settings.collector_partition)
        if self.partition and settings.mqtt_share_group:
            raise ValueError("a partitioned collector needs its own session: unset SEMON_MQTT_SHARE_GROUP")
        self.decoder = Decoder(registry.registry, settings.max_payload_bytes, int(settings.max_future_skew_s * 1000))
        self._registry_version = registry.version
        self._mine: dict[str, bool] = {}  # device id → in our partition (CRC cached)
        # Manual clears the alarm sink relayed: the engine (this thread's) re-raises if still true.
        self.manual_clears: queue.Queue[tuple[str, str]] = queue.Queue()
        # Hot per-message counts, moved into stats and Prometheus every tick (_count_messages).
        self._received: Counter[str] = Counter()  # channel → messages
        self._accepted: Counter[tuple[str, str]] = Counter()  # (kind, channel) → messages
        self._foreign = 0  # other partitions' messages, acknowledged unprocessed
        self._offline_paused = True
        self._batch = Batch()
        self._dead: list[dict[str, object]] = []
        self._next_seq = 0
        # The broker sends no more than its in-flight window unacknowledged: cut a batch at half.
        self._half_window = max(1, settings.mqtt_max_inflight // 2)
        self.last_processed: float | None = None  # monotonic time of the last message evaluated
        engine.order.jump_ms = int(settings.clock_jump_s * 1000) or JUMP_OFF
        self.gaps = GapWatch(
            engine.order,
            settings.seq_gap_alarm_count,
            settings.seq_gap_alarm_window_s,
            enabled=not settings.mqtt_share_group,
        )

    # -- the stage's thread ------------------------------------------------------------------
    def run(self) -> None:
        """Loop until the source closes intake and the inbox is empty."""
        last_tick = 0.0
        self.last_processed = time.monotonic()  # "stalled" counts from the start
        last_arrival = 0  # arrival (wall ms) of the newest burst processed
        if not self.settings.mqtt_share_group:
            # Alone on the stream (or on a partition of it): every registered device we own is
            # expected to speak. In a share group each collector only watches the devices it
            # hears from (docs/rules.md).
            self.engine.watch([d for d in self.decoder.registry.values() if self._owns(d.id)], now_ms())
        while True:
            self.sup.beat("pipeline")
            try:
                item: Inbound | None = self.inbox.get(timeout=0.1)
            except queue.Empty:
                item = None
            if item is not None:
                last_arrival = item.arrived_ms
                self._take(item)
            now = time.monotonic()
            if now - last_tick >= TICK_S:
                last_tick = now
                self._sync_connection_state()
                self._count_messages()
                self._apply_registry()
                while not self.manual_clears.empty():
                    self.engine.manual_clear(*self.manual_clears.get_nowait())
                # Timers judge "nothing came in time" — but while received messages still wait in
                # the inbox, one of them may be the answer: the clock stops at the arrival of the
                # last burst processed until the inbox is empty (a backlog delays, never invents).
                self.alarms.put_transitions(self.engine.tick(now_ms() if self.inbox.empty() else last_arrival))
                self.alarms.put_transitions(self.gaps.check(now_ms()))
                m.QUEUE_DEPTH.set(self.inbox.qsize())
            batch = self._batch
            if (batch.acks or batch.points or self._dead) and (
                len(batch.points) >= self.settings.batch_max_lines
                or now - batch.started >= self.settings.batch_max_age_s
                or (item is None and self.source.closing)
            ):
                self._cut()
            if item is None and self.source.closing and self.inbox.empty():
                break
        if self._batch.points or self._batch.acks or self._dead:
            self._cut()
        self._count_messages()

    def _apply_registry(self) -> None:
        """Take a registry the alarm sink reloaded (its reload runs there, off this thread)."""
        if self.registry.version != self._registry_version:
            self._registry_version = self.registry.version
            self.decoder.registry = self.registry.registry

    def _sync_connection_state(self) -> None:
        """Offline timers pause while we, not the devices, are cut off from the broker."""
        connected = self.source.connected.is_set()
        if connected and self._offline_paused:
            self.engine.resume_offline(now_ms())
            self._offline_paused = False
        elif not connected and not self._offline_paused:
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
        self.last_processed = time.monotonic()

    def _handle(self, d: Delivery, gen: int, arrived_ms: int) -> None:
        topic, payload, mid, qos = d
        if qos:
            self._batch.acks.append((gen, mid))
        if topic.startswith(CANARY_PREFIX) and (checker := canary_checker(topic)) is not None:
            # Every collector answers, whatever its partition: the checker hears each of them.
            self.alarms.put_canary(checker, payload, arrived_ms)
            return
        if self.partition is not None:
            try:
                owner = self._owns(self.decoder.topic_info(topic).device_id)
            except TopicError:
                owner = self.partition[0] == 0  # a topic without a device: partition 0 dead-letters it
            if not owner:
                self._foreign += 1  # its own collector has its copy; just acknowledge
                return
        wall = now_ms()
        res = self.decoder.decode(topic, payload, wall)
        if isinstance(res, Rejected) and res.reason == "unknown_device" and self._reload_registry():
            res = self.decoder.decode(topic, payload, wall)  # registered meanwhile
        channel = topic.rsplit("/", 1)[-1]
        self._received[channel] += 1
        if isinstance(res, Rejected):
            self._dead.append(self.dead.letter(topic, payload, res))
            return
        self._accepted[(res.device.kind, channel)] += 1
        self._batch.points.extend(to_points(res, time.time_ns()))
        if channel == "status":
            transitions = self.engine.evaluate(res.device, res.body, arrived_ms)
        elif channel == "event":
            transitions = self.engine.evaluate_event(res.device, res.body, arrived_ms)
        else:
            transitions = self.engine.online(res.device, res.body, arrived_ms)
        if transitions:
            self.alarms.put_transitions(transitions)

    def _reload_registry(self) -> bool:
        """A device we do not know may have been registered a moment ago (bounded, guarded)."""
        if not self.registry.refresh(time.monotonic(), min_age=1.0):
            return False
        self._apply_registry()
        return True

    def _cut(self) -> None:
        """Hand the dead letters to the alarm sink and the batch to the writers; start the next."""
        batch, dead = self._batch, self._dead
        self._batch, self._dead = Batch(), []
        self.alarms.put_dead_letters(dead)
        # The counters of the devices this batch moved, durable before its PUBACKs: a restart
        # resumes at the acknowledged end of each stream (what the broker drops after it is a gap).
        self.alarms.put_seq_state(self.gaps.rows(now_ms()))
        batch.records = self.alarms.assigned  # its messages' alarm records: durable before the ack
        m.UNACKED.inc(len(batch.acks))
        batch.seq, self._next_seq = self._next_seq, self._next_seq + 1
        self.telemetry.put(batch)

    def _count_messages(self) -> None:
        """Move the per-message counts into stats and Prometheus (batched: they are hot)."""
        received, accepted, foreign = self._received, self._accepted, self._foreign
        self._received, self._accepted, self._foreign = Counter(), Counter(), 0
        for channel, n in received.items():
            m.MESSAGES_RECEIVED.labels(channel).inc(n)
        for (kind, channel), n in accepted.items():
            m.MESSAGES_ACCEPTED.labels(kind, channel).inc(n)
        self._count("received", received.total())
        self._count("accepted", accepted.total())
        if foreign:
            self._count("foreign", foreign)
        self._count_order()

    def _count_order(self) -> None:
        """Late, stale, duplicate, jumped and missing messages into Prometheus: never silent."""
        t = self.engine.order.drain()
        for order, n in (("late", t.late), ("stale", t.stale), ("duplicate", t.duplicate)):
            if n:
                m.OUT_OF_ORDER.labels(order).inc(n)
        for outcome, n in (("missing", t.missing), ("filled", t.filled)):
            if n and self.gaps.enabled:  # in a share group the peers hold the "missing" seqs
                m.SEQ_GAPS.labels(outcome).inc(n)
        if t.jumps:
            m.CLOCK_JUMPS.inc(t.jumps)
            self._count("clock_jumps", t.jumps)
        if t.resets:
            m.SEQ_RESETS.inc(t.resets)
        if t.missing - t.filled and self.gaps.enabled:
            self._count("seq_gaps", t.missing - t.filled)
