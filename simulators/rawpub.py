"""A lean MQTT 3.1.1 publisher for load generation: one plain socket, pipelined QoS 0/1 publishes.

paho-mqtt needs about a core for 8 k QoS 1 publishes/s on the 2-vCPU benchmark machine
(its per-message bookkeeping, locks and network thread), which would starve the system under
test. This client does the minimum the protocol requires:

* packets of a whole chunk of messages are built into one buffer and written with one
  ``sendall``; the fixed header and topic of each device are cached;
* packet ids cycle through 1…65535 and at most ``window`` QoS 1 messages are unacknowledged
  (``window`` < 65535, so an id is never reused while still in flight);
* PUBACKs are read, without blocking, in the publishing thread itself and only counted:
  Mosquitto acknowledges in order and a load generator needs "how many are durable at the
  broker", not which;
* a PINGREQ every ``keepalive / 2`` s of silence keeps the connection alive.

It does not reconnect: a load generator that lost its broker has failed its run, and says so
(:class:`BrokerGone`). For devices that must survive a broker restart use paho
(:mod:`semon.simulators.publisher`).
"""

from __future__ import annotations

import select
import socket
import struct
import time

_PUBACK = 0x40
_PINGRESP = 0xD0
_MAX_WINDOW = 65_000


class BrokerGone(ConnectionError):
    """The broker closed the connection or refused it."""


def varint(n: int) -> bytes:
    """MQTT "remaining length" encoding."""
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(
    client_id: str,
    *,
    keepalive_s: int = 60,
    clean_session: bool = True,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """An MQTT 3.1.1 CONNECT packet."""
    flags = 0x02 if clean_session else 0
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", keepalive_s) + payload
    return b"\x10" + varint(len(body)) + body


def read_connack(sock: socket.socket, timeout_s: float) -> bool:
    """Wait for the CONNACK; returns "session present", raises :class:`BrokerGone` on refusal."""
    sock.settimeout(timeout_s)
    data = b""
    try:
        while len(data) < 4:
            chunk = sock.recv(4 - len(data))
            if not chunk:
                raise BrokerGone("connection closed before CONNACK")
            data += chunk
    except TimeoutError as e:
        raise BrokerGone(f"no CONNACK within {timeout_s}s") from e
    finally:
        sock.settimeout(None)
    if data[0] != 0x20 or data[3] != 0:
        raise BrokerGone(f"CONNECT refused (CONNACK {data.hex()})")
    return bool(data[2] & 1)


class RawPublisher:
    """Pipelined QoS 0/1 publisher on one TCP connection; single-threaded by design."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        qos: int = 1,
        window: int = 20_000,
        keepalive_s: int = 60,
        username: str | None = None,
        password: str | None = None,
        clean_session: bool = True,
    ) -> None:
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if not 0 < window <= _MAX_WINDOW:
            raise ValueError(f"window must be in 1..{_MAX_WINDOW} (packet ids are 16 bit)")
        self.host, self.port, self.client_id = host, port, client_id
        self.qos, self.window, self.keepalive_s = qos, window, keepalive_s
        self.username, self.password, self.clean_session = username, password, clean_session
        self.sent = 0  # messages written to the socket
        self.acked = 0  # PUBACKs received (QoS 1); for QoS 0 it follows ``sent``
        self.session_present = False
        self._pid = 0
        self._rx = b""
        self._sock: socket.socket | None = None
        self._last_tx = 0.0
        self._topics: dict[str, bytes] = {}

    # ------------------------------------------------------------------ connection
    def connect(self, timeout_s: float = 10.0) -> None:
        """Open the connection and wait for the CONNACK."""
        try:
            s = socket.create_connection((self.host, self.port), timeout=timeout_s)
        except OSError as e:
            raise BrokerGone(f"cannot reach MQTT broker at {self.host}:{self.port}: {e}") from e
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A large send buffer lets one sendall of a chunk return without waiting for the broker.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        pkt = connect_packet(
            self.client_id, keepalive_s=self.keepalive_s, clean_session=self.clean_session,
            username=self.username, password=self.password,
        )  # fmt: skip
        s.sendall(pkt)
        self.session_present = read_connack(s, timeout_s)
        self._sock = s
        self._last_tx = time.monotonic()

    @property
    def unacked(self) -> int:
        """QoS 1 messages written but not yet acknowledged."""
        return self.sent - self.acked

    def close(self) -> None:
        """Send DISCONNECT and close (unacknowledged messages are the caller's concern)."""
        s, self._sock = self._sock, None
        if s is None:
            return
        try:
            s.sendall(b"\xe0\x00")
        except OSError:
            pass
        s.close()

    # ------------------------------------------------------------------ publishing
    def _topic(self, topic: str) -> bytes:
        t = self._topics.get(topic)
        if t is None:
            t = self._topics[topic] = _utf8(topic)
        return t

    def publish_many(self, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
        """Publish a chunk in one write; blocks first while the QoS 1 window is full."""
        if self._sock is None:
            raise BrokerGone("not connected")
        n = len(messages)
        if self.qos and self.sent + n - self.acked > self.window:
            self.wait_unacked_at_most(max(0, self.window - n))
        buf = bytearray()
        topic = self._topic
        if self.qos:
            head = 0x32 | (1 if retain else 0)
            pid = self._pid
            for tp, payload in messages:
                t = topic(tp)
                pid = pid % 65535 + 1
                rl = len(t) + 2 + len(payload)
                # Remaining length inline for the usual sizes (< 16 kB): two bytes at most.
                if rl < 128:
                    buf += bytes((head, rl))
                elif rl < 16384:
                    buf += bytes((head, (rl & 0x7F) | 0x80, rl >> 7))
                else:
                    buf.append(head)
                    buf += varint(rl)
                buf += t
                buf += pid.to_bytes(2, "big")
                buf += payload
            self._pid = pid
        else:
            head = 0x30 | (1 if retain else 0)
            for tp, payload in messages:
                t = topic(tp)
                buf.append(head)
                buf += varint(len(t) + len(payload))
                buf += t
                buf += payload
        self._send(bytes(buf))
        self.sent += n
        if not self.qos:
            self.acked = self.sent
        self.poll()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish one message (prefer :meth:`publish_many`)."""
        self.publish_many([(topic, payload)], retain)

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise BrokerGone(f"connection lost while sending: {e}") from e
        self._last_tx = time.monotonic()

    # ------------------------------------------------------------------ acknowledgements
    def poll(self, timeout_s: float = 0.0) -> None:
        """Read whatever the broker sent (PUBACKs); waits up to ``timeout_s`` for the first byte."""
        s = self._sock
        if s is None:
            raise BrokerGone("not connected")
        r, _, _ = select.select([s], [], [], timeout_s)
        if r:
            try:
                data = s.recv(1 << 17)
            except OSError as e:
                raise BrokerGone(f"connection lost while reading: {e}") from e
            if not data:
                raise BrokerGone("broker closed the connection")
            self._parse(self._rx + data if self._rx else data)
        if time.monotonic() - self._last_tx > self.keepalive_s / 2:
            self._send(b"\xc0\x00")  # PINGREQ

    def _parse(self, buf: bytes) -> None:
        i, n, acks = 0, len(buf), 0
        while i + 2 <= n:
            # Everything a broker sends a publisher here is 2 or 4 bytes (PUBACK, PINGRESP);
            # the general length decoding keeps the framing right whatever arrives.
            rl, mult, j = 0, 1, i + 1
            while j < n:
                b = buf[j]
                rl += (b & 0x7F) * mult
                mult <<= 7
                j += 1
                if not b & 0x80:
                    break
            else:
                break
            if j + rl > n:
                break
            if buf[i] & 0xF0 == _PUBACK:
                acks += 1
            i = j + rl
        self.acked += acks
        self._rx = buf[i:]

    def wait_unacked_at_most(self, limit: int, timeout_s: float | None = None) -> bool:
        """Block until at most ``limit`` messages are unacknowledged; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.sent - self.acked > limit:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            self.poll(min(left, 1.0))
        return True

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait for every PUBACK; True when all arrived."""
        return self.wait_unacked_at_most(0, timeout_s)
