"""The collector's MQTT client: paho-mqtt (v2 API) with a read path built for streams.

Stock paho reads each packet with three or more ``recv`` calls (one byte of header, the
remaining length byte by byte, then the body) and goes back to ``select`` after every packet.
At fleet rates that is most of a core (docs/benchmarks.md, "Where the time goes"). This
subclass changes only how bytes reach paho's own packet parser:

* the socket is wrapped in :class:`BufferedSocket`, which fills a buffer with one large
  ``recv`` and serves paho's small reads from it; its ``pending()`` is the hook paho already
  uses for TLS sockets, so ``select`` is skipped while buffered bytes remain;
* ``loop_read`` parses up to :data:`READ_BURST` packets per wake-up, then calls
  :attr:`FastClient.on_burst_end` so the application can hand the burst on as one unit;
* :meth:`FastClient.ack_many` queues the PUBACKs of a whole batch as one write.

Everything else — connect, session, keep-alive, reconnect, publish, QoS bookkeeping — is paho.
A test (tests/ingest/test_mqtt_client.py) runs this against real Mosquitto, including packets split
across reads and a broker restart.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

# Packets parsed per wake-up before paho gets to write (PUBACKs, pings) again.
READ_BURST = 1000
# One recv fills this much: a burst of small status messages (~150 bytes each).
RECV_BYTES = 256 * 1024
_PUBACK = 0x40
_PUBACK_PACK = struct.Struct("!BBH").pack


class BufferedSocket:
    """A socket whose small reads are served from one large read."""

    __slots__ = ("_buf", "_inner_pending", "_pos", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        # A TLS socket holds decrypted bytes select() cannot see; paho asks pending() first.
        self._inner_pending = getattr(sock, "pending", None)

    def recv(self, n: int) -> bytes:
        """Up to ``n`` bytes; raises ``BlockingIOError`` like the socket when nothing is there."""
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail == 0:
            buf = self._sock.recv(RECV_BYTES)
            if not buf:
                return b""  # peer closed: paho sees the connection lost
            pos, avail = 0, len(buf)
        if n >= avail:
            self._buf, self._pos = b"", 0
            return buf[pos:] if pos else buf
        self._buf, self._pos = buf, pos + n
        return buf[pos : pos + n]

    def pending(self) -> int:
        """Bytes already read from the socket (or decrypted by TLS) and not yet handed to paho."""
        inner = self._inner_pending() if self._inner_pending is not None else 0
        return len(self._buf) - self._pos + inner

    def take_packet(self) -> tuple[int, bytes] | None:
        """The next whole MQTT packet in the buffer as (first byte, rest after the length), or
        None when the buffer does not hold a whole one (paho's byte-wise path then reads it)."""
        buf, pos = self._buf, self._pos
        end = len(buf)
        if end - pos < 2:
            return None
        length, mult, i = 0, 1, pos + 1
        while True:  # "remaining length": 7 bits per byte, at most 4 bytes (MQTT 3.1.1 §2.2.3)
            if i >= end or i - pos > 4:
                return None  # incomplete here; a malformed one is left for paho to refuse
            b = buf[i]
            length += (b & 127) * mult
            mult *= 128
            i += 1
            if not b & 128:
                break
        if end - i < length:
            return None
        self._pos = i + length
        return buf[pos], buf[i : i + length]

    def __getattr__(self, name: str) -> Any:
        # send, fileno, close, setblocking, setsockopt…: the socket's own.
        return getattr(self._sock, name)


def _in_packet(command: int = 0, body: bytes | None = None) -> Any:
    """paho's state of the packet being read: an empty one, or ``body`` read whole."""
    return {
        "command": command,
        "have_remaining": int(body is not None),
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": 0 if body is None else len(body),
        "packet": bytearray(b"") if body is None else body,
        "to_process": 0,
        "pos": 0,
    }


class FastClient(mqtt.Client):
    """paho's Client with buffered, burst-wise reads and batched acknowledgements."""

    #: Called on the network thread after each burst of packets (possibly empty).
    on_burst_end: Callable[[], None] | None = None

    def _create_socket(self) -> Any:
        return BufferedSocket(cast(socket.socket, super()._create_socket()))  # a TCP socket here (TLS wraps later)

    def message_callback_add(self, sub: str, callback: Any) -> None:
        """Not supported: :meth:`_handle_on_message` calls ``on_message`` only (no topic matching
        per message, which costs more than the rest of paho's receive path)."""
        raise NotImplementedError("FastClient delivers every message to on_message")

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)

    def _packet_read(self) -> MQTTErrorCode:
        # A whole packet already buffered goes straight to paho's packet handler; anything else
        # (a packet split across reads, an empty buffer) takes paho's own byte-wise path.
        sock = self._sock
        if self._in_packet["command"] != 0 or not isinstance(sock, BufferedSocket):
            return super()._packet_read()
        got = sock.take_packet()
        if got is None:
            return super()._packet_read()
        command, body = got
        self._in_packet = _in_packet(command, body)  # read whole: nothing left to process
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = _in_packet()  # paho's "no packet in progress"
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()  # keep-alive bookkeeping (paho's clock)
        return rc

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Parse packets until the socket would block (at most :data:`READ_BURST`)."""
        try:
            for _ in range(READ_BURST):
                if self._sock is None:
                    return MQTTErrorCode.MQTT_ERR_NO_CONN
                rc = self._packet_read()
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    break
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        finally:
            if self.on_burst_end is not None:
                self.on_burst_end()

    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK each QoS 1 message id, all in one queued write (in the order given)."""
        packet = b"".join([_PUBACK_PACK(_PUBACK, 2, mid) for mid in mids])
        if packet:
            self._packet_queue(_PUBACK, packet, 0, 1)
