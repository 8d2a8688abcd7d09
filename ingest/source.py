"""Source stage: the collector's MQTT session, the inbox it fills, and in-order acknowledgements.

paho's network thread runs the session (QoS 1, persistent, manual acks) and hands each burst of
received messages to the bounded inbox; a full inbox blocks it, so the broker holds the backlog
(back-pressure, never loss). :class:`AckGate` sends the PUBACKs of each batch once it is
durable — points in the store or spool, and the alarm records its messages produced in the
database or the local journal — in the order the messages arrived (MQTT 3.1.1 §4.6).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from semon import metrics as m
from semon.config import Settings
from semon.contract.topics import CANARY_PINGS, SUBSCRIPTIONS
from semon.ingest.handover import Batch, Delivery, Inbound
from semon.ingest.mqtt_client import FastClient
from semon.ingest.supervision import Supervisor
from semon.mqtt_connect import make_client
from semon.timeutil import now_ms

log = logging.getLogger(__name__)

BROKER_DOWN = "broker"
JETSTREAM_DOWN = "jetstream"
# Bursts, not messages; the broker's in-flight window bounds what is unacknowledged.
INBOX_BURSTS = 10_000


class MqttSource:
    """The MQTT session; ``inbox`` holds what arrived, ``publish`` sends alarm transitions."""

    def __init__(self, settings: Settings, client_id: str, sup: Supervisor) -> None:
        self.settings = settings
        self.sup = sup
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=INBOX_BURSTS)
        self.connected = threading.Event()
        self.gen = 0
        self.last_arrival: float | None = None  # monotonic time of the newest burst
        self._burst: list[Delivery] = []
        self._closing = threading.Event()
        self._stopped = threading.Event()
        self.client_id = client_id
        # Asked on a disconnect (the lease's session_lost): False means stay off the broker.
        self.may_reconnect: Callable[[str], bool] | None = None
        self.client = self._make_client(client_id)

    def _make_client(self, client_id: str) -> FastClient:
        c = make_client(
            self.settings.mqtt_target(),
            client_id,
            cls=FastClient,
            clean_session=False,  # persistent session: the broker queues while we are away
            manual_ack=True,  # ack only once what a message produced is durable
        )
        # The collector's user is its client id unless set otherwise: the compose broker binds the
        # two (dynamic-security plugin, core/mqtt_auth.py) and refuses any other pair.
        login = self.settings.mqtt_login(client_id)
        if login is not None:
            if login[0] != client_id:
                log.warning(
                    "SEMON_MQTT_USERNAME %r differs from the collector's client id %r: a broker that binds "
                    "client ids to users (the compose broker) refuses this login", login[0], client_id,
                )  # fmt: skip
            c.username_pw_set(*login)
        c.max_queued_messages_set(0)
        c.max_inflight_messages_set(1000)
        c.reconnect_delay_set(0.5, 10)  # type: ignore[arg-type]  # paho takes float seconds; its stub says int
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_burst_end = self._on_burst_end
        return c

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            self.sup.degraded(BROKER_DOWN, f"MQTT connect refused: {rc}")
            return
        self.gen += 1
        subs = self.topics()
        c.subscribe(subs)
        log.info("MQTT connected (session present: %s), subscribing %d topics", _f.session_present, len(subs))

    def topics(self) -> list[tuple[str, int]]:
        """What the session subscribes to, with QoS: every device topic and the canary pings."""
        group = self.settings.mqtt_share_group
        # Canary pings are never shared: each collector must answer each one.
        return [(f"$share/{group}/{t}" if group and t != CANARY_PINGS else t, 1) for t in SUBSCRIPTIONS]

    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        """Acknowledge ``(gen, mid)`` deliveries. A mid from an earlier connection would ack some
        other message now: skipped, the broker redelivers that message anyway."""
        gen_now = self.gen
        self.client.ack_many([mid for gen, mid in acks if gen == gen_now])

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any = None) -> None:
        # Connected means receiving: only once the broker confirmed the subscriptions (what is
        # published to a brand-new session before that reaches nobody).
        failed = [c for c in codes if getattr(c, "is_failure", False)]
        if failed:
            self.sup.degraded(BROKER_DOWN, f"MQTT subscription refused: {failed}")
            return
        self.connected.set()
        self.sup.recovered(BROKER_DOWN)
        log.info("MQTT subscribed", extra={"topics": len(codes)})

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.connected.clear()
        if not self._stopped.is_set() and self.may_reconnect is not None and not self.may_reconnect(str(rc)):
            # Possibly taken over by a new owner of the partition: do not fight it for the session.
            self.fence()
            return
        if not self._stopped.is_set():
            self.sup.degraded(BROKER_DOWN, f"MQTT disconnected ({rc}); reconnecting — unacked messages are redelivered")

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self._closing.is_set():
            return  # not acked: the broker redelivers it to our next session
        self._burst.append((msg.topic, bytes(msg.payload), msg.mid, msg.qos))  # paho may hand a bytearray

    def _on_burst_end(self) -> None:
        if self._burst:
            burst, self._burst = self._burst, []
            self.last_arrival = time.monotonic()
            # Blocks paho's network thread when the pipeline is behind: TCP back-pressure.
            self.inbox.put(Inbound(burst, self.gen, now_ms()))

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Publish at QoS 1; the handle tells when the broker acknowledged it."""
        return self.client.publish(topic, payload, qos=1)

    def start(self) -> None:
        """Connect (asynchronously) and start paho's network thread."""
        host, port = self.settings.mqtt_endpoint()
        self.sup.degraded(BROKER_DOWN, f"connecting to {host}:{port}")
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()

    def close_intake(self) -> None:
        """Stop taking messages (what arrives from now on is left unacked for the next session)."""
        self._closing.set()

    @property
    def closing(self) -> bool:
        """Whether intake is closed."""
        return self._closing.is_set()

    def fence(self) -> None:
        """Off the broker at once, acknowledging nothing more (the lease is lost: the new owner
        of this session gets everything unacknowledged)."""
        self._closing.set()
        self._stopped.set()
        self.client.disconnect()

    def stop(self) -> None:
        """Disconnect once the last acknowledgements had a moment to leave."""
        self._stopped.set()
        time.sleep(0.2)  # let paho send the last PUBACKs
        self.client.disconnect()
        self.client.loop_stop()


class AckGate:
    """Releases each batch's PUBACKs once it and every earlier batch are durable."""

    def __init__(
        self, source: MqttSource, records_durable: Callable[[], int], count: Callable[[str, int], None]
    ) -> None:
        self.source = source
        self._records_durable = records_durable
        self._count = count
        self._lock = threading.Lock()
        self._next = 0  # next Batch.seq whose acknowledgements may leave
        self._written: dict[int, Batch] = {}  # durable telemetry, waiting for earlier ones / records

    def written(self, batch: Batch) -> None:
        """A batch's telemetry is durable (called by the writers)."""
        if batch.seq is None:
            return
        with self._lock:
            self._written[batch.seq] = batch
            self._release()

    def records_advanced(self) -> None:
        """The alarm sink's durable watermark moved (called by the alarm sink)."""
        with self._lock:
            self._release()

    def waiting(self) -> int:
        """Batches durable but held back (an earlier batch or its alarm records not yet)."""
        with self._lock:
            return len(self._written)

    def _release(self) -> None:
        durable = self._records_durable()
        while (b := self._written.get(self._next)) is not None and b.records <= durable:
            del self._written[self._next]
            self._next += 1
            self.source.ack_many(b.acks)
            self._count("acked", len(b.acks))
            m.UNACKED.dec(len(b.acks))
