"""Source stage on a NATS JetStream cluster: device messages from partitioned durable consumers.

Terminals keep speaking MQTT (to any node's MQTT listener). The cluster's subject mapping puts
every message of a device in one of N partitions by its device-id token, and a replicated
stream keeps them (``config/nats/``, docs/scaling.md)::

    MQTT semon/v1/elevator/E1/status → NATS semon.v1.elevator.E1.status
                                      → semon.p.<partition(N, id)>.elevator.E1.status  (stream SEMON)

This collector consumes the partitions it owns through one durable pull consumer per partition
(``semon-p<k>``, shared by whichever collector owns the partition, so a successor continues
where the last owner stopped) and acknowledges each message only once what it produced is
durable, exactly as :class:`~semon.ingest.source.AckGate` does for MQTT. Each message reaches
one collector: no fan-out.

The MQTT session the base class keeps (to a node's MQTT listener) publishes alarm transitions
back to the cluster, where firms subscribe on any node, and answers canary pings; it subscribes
to nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import NotFoundError

from semon.config import Settings
from semon.contract.topics import CANARY_PINGS
from semon.ingest.handover import Delivery, Inbound
from semon.ingest.source import JETSTREAM_DOWN, MqttSource, now_ms
from semon.ingest.supervision import Supervisor

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "semon.p"
FETCH = 500  # messages per pull: one burst for the pipeline
# Unacknowledged messages a partition's consumer may have out; must exceed what the pipeline
# holds before a batch is durable (the MQTT analogue is the broker's in-flight window).
MAX_ACK_PENDING = 20_000


def partition_subject(k: int) -> str:
    """The stream subjects of partition ``k``."""
    return f"{SUBJECT_PREFIX}.{k}.>"


def topic_of(subject: str) -> str | None:
    """The MQTT topic a partitioned subject came from, or None if it is not one.

    ``semon.p.3.elevator.E1.status`` → ``semon/v1/elevator/E1/status``.
    """
    parts = subject.split(".")
    if len(parts) != 6 or parts[0] != "semon" or parts[1] != "p":
        return None
    return f"semon/v1/{parts[3]}/{parts[4]}/{parts[5]}"


def nats_partition(token: str, n: int) -> int:
    """The partition NATS's ``{{partition(n, …)}}`` puts a device-id token in (FNV-1a 32 mod n)."""
    h = 0x811C9DC5
    for b in token.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h % n


def _partition_list(value: str | None, setting: str, n: int) -> list[int]:
    try:
        out = sorted({int(x) for x in (value or "").split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"{setting}: {value!r} is not a list of partitions") from None
    bad = [k for k in out if not 0 <= k < n]
    if bad:
        raise ValueError(f"{setting}: partitions {bad} outside 0..{n - 1} (SEMON_JETSTREAM_PARTITIONS)")
    return out


def owned_partitions(settings: Settings) -> list[int]:
    """Partitions this collector consumes (``SEMON_JETSTREAM_OWNED``, default all)."""
    n = settings.jetstream_partitions
    if not settings.jetstream_owned:
        return list(range(n))
    return _partition_list(settings.jetstream_owned, "SEMON_JETSTREAM_OWNED", n)


def standby_partitions(settings: Settings) -> list[int]:
    """Partitions this collector takes over when free (``SEMON_JETSTREAM_STANDBY``), owned ones excluded."""
    got = _partition_list(settings.jetstream_standby, "SEMON_JETSTREAM_STANDBY", settings.jetstream_partitions)
    return [k for k in got if k not in owned_partitions(settings)]


STUCK_AFTER_S = 5.0  # no delivery for this long, with messages pending: resubscribe


@dataclass(slots=True)
class _Partition:
    """One owned partition and its pull subscription."""

    k: int
    sub: Any = None
    last_delivery: float = 0.0
    last_check: float = 0.0

    def stuck(self, now: float) -> bool:
        """Quiet long enough to ask the consumer whether it is behind (at most every 5 s)."""
        return now - self.last_delivery > STUCK_AFTER_S and now - self.last_check > STUCK_AFTER_S


class JetStreamSource(MqttSource):
    """Device messages from JetStream; alarms and canary echoes out over the MQTT session."""

    def __init__(self, settings: Settings, client_id: str, sup: Supervisor) -> None:
        super().__init__(settings, client_id, sup)
        self.partitions = owned_partitions(settings)
        # With leases (PostgreSQL) partitions are added and removed by their lease keepers.
        self.leased = False
        self._parts: dict[int, _Partition] = {}
        self._js: Any = None
        self._js_up = threading.Event()
        self.js_gen = 0
        self.js_ready = threading.Event()
        self._pending: dict[int, Msg] = {}
        self._next_mid = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.received = 0  # messages taken from the stream (tests count fan-out with it)
        # The MQTT side fails over too: SEMON_MQTT_URL, then SEMON_MQTT_FALLBACK_URLS in turn.
        self._brokers = [settings.mqtt_endpoint()] + [
            Settings(mqtt_url=u.strip()).mqtt_endpoint()
            for u in (settings.mqtt_fallback_urls or "").split(",")
            if u.strip()
        ]
        self._broker_i = 0

    # -- MQTT side: publishing only, canary pings at QoS 0 (nothing to acknowledge) --------------
    def topics(self) -> list[tuple[str, int]]:
        """Only the canary pings: device messages come from JetStream."""
        return [(CANARY_PINGS, 0)]

    def _on_disconnect(self, c: Any, u: Any, f: Any, rc: Any, p: Any = None) -> None:
        super()._on_disconnect(c, u, f, rc, p)
        if self._stopped.is_set() or len(self._brokers) < 2:
            return
        # The node is gone: go on through the next one (sessions are cluster-wide in NATS).
        self._broker_i = (self._broker_i + 1) % len(self._brokers)
        host, port = self._brokers[self._broker_i]
        log.warning("MQTT: trying the next node %s:%d", host, port)
        c.connect_async(host, port, keepalive=30)

    # -- acknowledgements ------------------------------------------------------------------
    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        """Acknowledge JetStream deliveries of this consumer generation (older ones are
        redelivered by the stream after its ack wait, to whoever owns the partition then)."""
        gen_now = self.js_gen
        with self._lock:
            msgs = [self._pending.pop(mid) for gen, mid in acks if gen == gen_now and mid in self._pending]
        if msgs and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._ack(msgs), self._loop)

    @staticmethod
    async def _ack(msgs: list[Msg]) -> None:
        for msg in msgs:
            await msg.ack()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the MQTT session (publishing) and the JetStream consumer thread."""
        super().start()
        # Supervised: an exception that escapes the consumer fails health and ends the process.
        self._thread = self.sup.spawn("jetstream", self._run)

    def stop(self) -> None:
        """Stop consuming, then the MQTT session."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        super().stop()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        s = self.settings
        servers = [u.strip() for u in s.nats_urls.split(",") if u.strip()]
        self.sup.degraded(JETSTREAM_DOWN, f"connecting to {', '.join(servers)}")

        async def disconnected() -> None:
            self.js_ready.clear()
            self.sup.degraded(JETSTREAM_DOWN, "NATS connection lost; reconnecting to another node")

        async def reconnected() -> None:
            self.sup.recovered(JETSTREAM_DOWN)
            self.js_ready.set()

        async def error(e: Exception) -> None:
            log.warning("NATS: %s", e)

        nc = await nats.connect(
            servers=servers,
            name=self.client_id,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            connect_timeout=5,
        )
        js = nc.jetstream(timeout=10)
        await self._ensure_stream(js)
        self._js = js
        for k in [] if self.leased else self.partitions:
            await self._add(k)
        self._js_up.set()
        self.js_gen += 1
        self.js_ready.set()
        self.sup.recovered(JETSTREAM_DOWN)
        log.info("JetStream consuming", extra={"partitions": self.partitions, "stream": s.jetstream_stream})
        try:
            while not self._closing.is_set():
                got = 0
                if not self._parts:
                    await asyncio.sleep(0.2)  # every partition's lease is another's for now
                for p in list(self._parts.values()):
                    got += await self._pull(p)
                    if p.stuck(time.monotonic()) and await self._behind(js, p):
                        # A pull subscription that stopped delivering (seen after its node or
                        # the consumer's leader was lost): subscribe the durable consumer anew.
                        log.warning(
                            "partition %d: no delivery for %.0f s with messages pending; resubscribing",
                            p.k,
                            STUCK_AFTER_S,
                        )
                        await self._subscribe(js, p)
                if not got:
                    await asyncio.sleep(0)  # fetch already waited; yield to acks
        finally:
            await nc.drain()

    # -- partitions taken and given up by their leases (called from the lease threads) ------------
    def consume(self, k: int, timeout: float = 60.0) -> None:
        """Start partition ``k``'s durable consumer (its lease is ours); returns once subscribed."""
        if not self._js_up.wait(timeout):
            raise RuntimeError(f"partition {k}: JetStream not ready after {timeout:.0f} s")
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._add(k), self._loop).result(timeout)
        log.warning("partition %d: consuming (lease held)", k)

    def stop_consuming(self, k: int, timeout: float = 10.0) -> None:
        """Fence partition ``k``: unsubscribe and forget its unacknowledged deliveries (the
        stream redelivers them to the new owner). Falls back to fencing the whole source."""
        try:
            assert self._loop is not None
            asyncio.run_coroutine_threadsafe(self._remove(k), self._loop).result(timeout)
        except Exception as e:  # the loop is stuck or gone: stop everything rather than share
            log.critical("partition %d: cannot stop its consumer (%s); fencing the whole source", k, e)
            self.fence()
            self._closing.set()

    async def _add(self, k: int) -> None:
        if k in self._parts:
            return
        p = _Partition(k)
        await self._subscribe(self._js, p)
        self._parts[k] = p

    async def _remove(self, k: int) -> None:
        p = self._parts.pop(k, None)
        if p is not None and p.sub is not None:
            try:
                await p.sub.unsubscribe()
            except Exception as e:  # gone with its connection: so is the subscription
                log.debug("unsubscribe partition %d: %s", k, e)
        with self._lock:
            for mid in [m for m, msg in self._pending.items() if msg.subject.split(".")[2] == str(k)]:
                del self._pending[mid]

    async def _subscribe(self, js: Any, p: _Partition) -> None:
        s = self.settings
        if p.sub is not None:
            try:
                await p.sub.unsubscribe()
            except Exception as e:  # the old one may be gone with its connection
                log.debug("unsubscribe partition %d: %s", p.k, e)
        cfg = ConsumerConfig(
            durable_name=f"semon-p{p.k}",
            filter_subject=partition_subject(p.k),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=MAX_ACK_PENDING,
            ack_wait=s.jetstream_ack_wait_s,
        )
        while True:
            try:
                p.sub = await js.pull_subscribe(
                    partition_subject(p.k), durable=cfg.durable_name, stream=s.jetstream_stream, config=cfg
                )
                p.last_delivery = time.monotonic()
                return
            except Exception as e:  # no consumer leader yet
                self.sup.degraded(JETSTREAM_DOWN, f"partition {p.k}: consumer not available: {type(e).__name__} {e}")
                await asyncio.sleep(0.5)

    async def _behind(self, js: Any, p: _Partition) -> bool:
        """Whether the partition's consumer has messages it is not delivering."""
        p.last_check = time.monotonic()
        try:
            info = await js.consumer_info(self.settings.jetstream_stream, f"semon-p{p.k}")
        except Exception:
            return True  # cannot even ask: subscribing again is the way back
        return bool(info.num_pending)

    async def _ensure_stream(self, js: Any) -> None:
        s = self.settings
        want = StreamConfig(
            name=s.jetstream_stream, subjects=[f"{SUBJECT_PREFIX}.>"], num_replicas=s.jetstream_replicas
        )
        while True:
            try:
                await js.stream_info(s.jetstream_stream)
                return
            except NotFoundError:
                try:
                    await js.add_stream(want)
                    log.info("JetStream stream created", extra={"stream": s.jetstream_stream})
                    return
                except Exception as e:  # another collector created it first, or no quorum yet
                    log.warning("creating stream %s: %s", s.jetstream_stream, e)
            except Exception as e:  # no JetStream leader yet (cluster forming)
                self.sup.degraded(JETSTREAM_DOWN, f"stream {s.jetstream_stream} not available: {e}")
            await asyncio.sleep(0.5)

    async def _pull(self, p: _Partition) -> int:
        assert p.sub is not None
        try:
            msgs = await p.sub.fetch(FETCH, timeout=0.2)
        except (TimeoutError, NatsTimeout):
            return 0
        except Exception as e:  # node lost mid-fetch: the client reconnects, the stream redelivers
            self.sup.degraded(JETSTREAM_DOWN, f"partition {p.k}: fetch failed: {type(e).__name__} {e}")
            await asyncio.sleep(0.2)
            return 0
        p.last_delivery = time.monotonic()
        self.sup.recovered(JETSTREAM_DOWN)
        burst: list[Delivery] = []
        bad: list[Msg] = []
        with self._lock:
            for msg in msgs:
                topic = topic_of(msg.subject)
                if topic is None:  # not one of ours (a misconfigured mapping): visible, not looping
                    bad.append(msg)
                    continue
                self._next_mid += 1
                self._pending[self._next_mid] = msg
                burst.append((topic, msg.data, self._next_mid, 1))
        for msg in bad:
            log.error("JetStream subject %s is not a partitioned device subject; terminated", msg.subject)
            await msg.term()
        if burst:
            self.received += len(burst)
            self.last_arrival = time.monotonic()
            inbound = Inbound(burst, self.js_gen, now_ms())
            # A full inbox blocks here (back-pressure): the stream keeps the rest.
            assert self._loop is not None
            await self._loop.run_in_executor(None, self.inbox.put, inbound)
        return len(msgs)
