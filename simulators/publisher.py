"""MQTT side of the simulator: one paho client for the whole fleet, QoS 1, PUBACK accounting.

paho-mqtt 2.x, callback API v2, MQTT 3.1.1 (the embedded amqtt broker speaks nothing newer).
The network loop runs in paho's own thread; ``publish`` may be called from the simulation
thread. Every QoS 1 publish is counted when sent and again when its PUBACK arrives, so the
run can end only after the broker has acknowledged everything.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from semon.mqtt_connect import MqttTarget, TlsFiles, make_client

log = logging.getLogger(__name__)

# Our own send window (messages awaiting PUBACK). paho's message ids are 16 bit, so more than
# 65 535 unacknowledged messages cannot even be queued; 5 000 measured best (below).
MAX_UNACKED = 5_000


class PublishError(RuntimeError):
    """The broker connection cannot take more messages."""


class StatusPublisher:
    """A connected paho client plus sent / acknowledged counters."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        qos: int = 1,
        max_inflight: int = 0,
        keepalive_s: int = 30,
        tls: TlsFiles | None = None,
    ) -> None:
        self.host, self.port, self.qos, self.keepalive_s = host, port, qos, keepalive_s
        self.sent = 0  # written by the caller's thread only
        self.acked = 0  # written by paho's network thread only
        self._connected = threading.Event()
        self._connect_error: str | None = None
        c = make_client(MqttTarget(host, port, tls, username, password), client_id, clean_session=True)
        # 0 = no paho in-flight limit. With a limit, paho rescans its whole in-flight table on
        # every PUBACK (Client._update_inflight): measured against Mosquitto 2.0.11 on 2 cores,
        # 20 000 QoS 1 publishes were acknowledged at 3.9 k msg/s with a limit of 1 000 and at
        # 9-12 k msg/s without. The window is bounded by MAX_UNACKED instead (see wait_below).
        c.max_inflight_messages_set(max_inflight)
        c.max_queued_messages_set(0)  # unbounded queue; back-pressure is ours
        c.reconnect_delay_set(1, 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self._client = c

    # ------------------------------------------------------------------------ callbacks
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            self._connect_error = f"broker refused the connection: {rc}"
            log.error("MQTT connect to %s:%s refused: %s", self.host, self.port, rc)
        else:
            log.info("MQTT connected to %s:%s", self.host, self.port)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self._connected.clear()
        if rc.is_failure:
            log.warning("MQTT connection to %s:%s lost (%s); paho reconnects", self.host, self.port, rc)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any = None) -> None:
        self.acked += 1

    # ----------------------------------------------------------------------------- API
    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and wait for the CONNACK; raises ``ConnectionError`` with the reason."""
        try:
            self._client.connect(self.host, self.port, keepalive=self.keepalive_s)
        except OSError as e:
            raise ConnectionError(f"cannot reach MQTT broker at {self.host}:{self.port}: {e}") from e
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self.close()
            raise ConnectionError(f"no CONNACK from MQTT broker at {self.host}:{self.port} within {timeout_s}s")
        if self._connect_error:
            self.close()
            raise ConnectionError(self._connect_error)

    @property
    def unacked(self) -> int:
        """Messages sent but not yet acknowledged by the broker."""
        return self.sent - self.acked

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Queue one message (QoS ``self.qos``); paho sends it, or resends after a reconnect.

        ``on_publish`` fires on PUBACK for QoS 1 (on sending for QoS 0), so ``acked`` works
        for both.
        """
        self.sent += 1
        info = self._client.publish(topic, payload, qos=self.qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.sent -= 1
            raise PublishError(f"publish on {topic} failed: {mqtt.error_string(info.rc)}")

    def wait_below(self, max_unacked: int, stop: threading.Event | None = None, deadline: float | None = None) -> None:
        """Block while more than ``max_unacked`` messages await their PUBACK (broker slower than us).

        Gives up when ``stop`` is set or at ``deadline`` (``time.monotonic()`` value).
        """
        while self.sent - self.acked > max_unacked:
            if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                return
            time.sleep(0.002)

    def wait_acked(self, timeout_s: float) -> bool:
        """Wait until every sent message is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.unacked > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
