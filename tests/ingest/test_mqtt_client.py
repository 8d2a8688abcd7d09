"""The collector's paho client (ingest/mqtt_client.py) against a real Mosquitto.

Its buffered read path must hand paho exactly the packets the broker sent — small ones many to
a read, large ones split over reads — and its batched PUBACKs must settle exactly the messages
they name: what was acknowledged is never redelivered, what was not always is.
"""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from semon.config import Settings
from semon.ingest.mqtt_client import RECV_BYTES, BufferedSocket, FastClient
from tests.helpers import publish_all
from tests.services import Mosquitto


def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    publish_all(Settings(mqtt_url=f"mqtt://127.0.0.1:{port}"), messages, client_id="t-pub")


class Receiver:
    """A FastClient on a persistent session that records what it receives and acks on demand."""

    def __init__(self, port: int, topic: str = "t/#") -> None:
        self.got: list[tuple[str, bytes, int]] = []
        self.bursts = 0
        self.subscribed = threading.Event()
        c = FastClient(CallbackAPIVersion.VERSION2, client_id="t-sub", clean_session=False, protocol=mqtt.MQTTv311)
        c.manual_ack_set(True)
        c.on_connect = lambda cl, *_: cl.subscribe(topic, 1)
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.on_message = lambda _c, _u, m: self.got.append((m.topic, bytes(m.payload), m.mid))
        c.on_burst_end = self._burst
        self.client = c
        c.connect("127.0.0.1", port, keepalive=5)
        c.loop_start()
        assert self.subscribed.wait(10)

    def _burst(self) -> None:
        self.bursts += 1

    def wait_for(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.got) >= n, f"received {len(self.got)} of {n}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_every_packet_arrives_intact_in_order_small_and_large(mosquitto: Mosquitto):
    r = Receiver(mosquitto.port)
    big = bytes(range(256)) * (RECV_BYTES // 256 + 300)  # larger than one read: split over reads
    sent = []
    for i in range(5000):
        payload = big if i in (10, 2500) else b'{"i":%d,"pad":"%s"}' % (i, b"x" * (i % 300))
        sent.append((f"t/{i % 7}/status", payload))
    _publish(mosquitto.port, sent)
    r.wait_for(len(sent))
    assert [(t, p) for t, p, _ in r.got] == sent  # Mosquitto keeps a session's order
    assert r.bursts < len(sent) // 5, "packets should arrive many to a read"
    r.client.ack_many([mid for _, _, mid in r.got])
    time.sleep(0.5)
    r.close()
    # All acknowledged: the resumed session has nothing to redeliver.
    r2 = Receiver(mosquitto.port)
    time.sleep(1.0)
    assert r2.got == []
    r2.close()


def test_unacknowledged_messages_are_redelivered_acknowledged_ones_are_not(mosquitto: Mosquitto):
    r = Receiver(mosquitto.port)
    sent = [(f"t/{i}/status", b"%d" % i) for i in range(200)]
    _publish(mosquitto.port, sent)
    r.wait_for(200)
    acked = [mid for _, p, mid in r.got if int(p) % 2 == 0]
    r.client.ack_many(acked)
    time.sleep(0.5)
    r.close()
    r2 = Receiver(mosquitto.port)
    r2.wait_for(100)
    time.sleep(0.5)
    assert sorted(int(p) for _, p, _ in r2.got) == list(range(1, 200, 2))
    r2.close()


def test_buffered_socket_serves_small_reads_and_whole_packets():
    a, b = socket.socketpair()
    a.setblocking(False)
    s = BufferedSocket(a)
    with pytest.raises(BlockingIOError):
        s.recv(1)
    # Two PUBACKs, then the first 3 bytes of a 130-byte packet (2-byte remaining length).
    b.sendall(b"\x40\x02\x00\x07" + b"\x40\x02\x00\x08" + b"\x30\x80\x01" + b"x")
    time.sleep(0.05)
    assert s.take_packet() is None  # nothing buffered yet: paho's path reads first
    assert s.recv(1) == b"\x40" and s.recv(3) == b"\x02\x00\x07"  # one socket read, served in parts
    assert s.take_packet() == (0x40, b"\x00\x08")
    assert s.take_packet() is None  # incomplete: left for paho's byte-wise path
    assert s.recv(1) == b"\x30" and s.pending() == 3
    assert s.recv(100) == b"\x80\x01x" and s.pending() == 0
    b.close()
    assert s.recv(1) == b""  # closed by the peer
    a.close()


def test_topic_filtered_callbacks_are_refused():
    c = FastClient(CallbackAPIVersion.VERSION2, client_id="t-x")
    with pytest.raises(NotImplementedError):
        c.message_callback_add("a/#", lambda *_: None)
