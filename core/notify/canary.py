"""The pipeline canary: a stopped, hung or deaf collector is caught from outside it.

A process other than the collectors — ``semon api`` (beside the dispatcher) or ``semon
deliver`` — publishes a ping on ``semon/v1/canary/{checker}/ping`` every ``canary_interval_s``
at QoS 1. Each collector takes the ping through its source, pipeline and alarm sink, in order
with the alarm records before it, and answers on ``semon/v1/canary/{checker}/echo/{collector}``.
The checker keeps the last echo time of every collector it has heard. When one has been silent
for ``canary_timeout_s`` — or none has answered that long since the checker started, or the
checker cannot reach the broker — it raises the platform alarm ``monitoring_degraded``
(critical, for the regulator: MQTT, regulator webhooks, the board) and its ``/health`` is 503;
the alarm clears once every collector it knows answers again.

A collector retired for good keeps the alarm raised until the checker restarts (it cannot tell
a retired collector from a dead one).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from sqlalchemy.exc import SQLAlchemyError

from semon import timeutil
from semon.config import Settings
from semon.contract.topics import alarm_topic, canary_echo_topic, canary_ping_topic
from semon.domain import DeviceInfo
from semon.mqtt_connect import make_client
from semon.rules.alarms import AlarmStore, Stored
from semon.rules.base import AlarmTransition, RuleSpec, Severity
from semon.store.db import Database
from semon.store.models import Device

log = logging.getLogger(__name__)

# The platform itself, as the "device" its alarms are about (a registry row of kind "platform",
# created with the first alarm; the collectors' registry leaves that kind out).
PLATFORM_DEVICE = DeviceInfo("semon-platform", "platform", "", "")
MONITORING_DEGRADED = RuleSpec(
    "platform.monitoring_degraded", "platform", "monitoring_degraded", Severity.critical, explain="监测链路中断"
)


def ensure_platform_device(db: Database) -> None:
    """The platform's registry row, which its alarms reference (created once)."""
    with db.session() as s:
        if s.get(Device, PLATFORM_DEVICE.id) is None:
            s.add(Device(id=PLATFORM_DEVICE.id, kind="platform", district=None, address="semon", attributes={}))


class Canary:
    """One checker; ``start()`` / ``stop()``; ``health()`` for the API's ``/health``."""

    def __init__(self, settings: Settings, db: Database, *, name: str = "canary") -> None:
        self.settings = settings
        self.db = db
        self.alarms = AlarmStore(db)
        self.checker = f"{name}-{uuid.uuid4().hex[:8]}"
        self.started = time.monotonic()
        self.last_echo: dict[str, float] = {}  # collector → monotonic time of its last echo
        self.connected = threading.Event()
        self.raised = False
        self.reason = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        c = make_client(settings.mqtt_target(), self.checker)
        c.reconnect_delay_set(0.5, 5)  # type: ignore[arg-type]  # paho takes float seconds; its stub says int
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *_a: self.connected.clear()
        c.on_message = self._on_echo
        self.client = c

    # -- MQTT ----------------------------------------------------------------------------------
    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            log.error("canary: MQTT connect refused: %s", rc)
            return
        c.subscribe(canary_echo_topic(self.checker, "+"), qos=0)
        self.connected.set()

    def _on_echo(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        collector = msg.topic.rsplit("/", 1)[-1]
        with self._lock:
            if collector not in self.last_echo:
                log.info("canary: collector %s answers", collector)
            self.last_echo[collector] = time.monotonic()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Connect and start pinging."""
        host, port = self.settings.mqtt_endpoint()
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="canary", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop pinging and disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:  # the canary must outlive any one failure; say so loudly
                log.exception("canary check failed")
            self._stop.wait(self.settings.canary_interval_s)

    # -- the check -----------------------------------------------------------------------------
    def check_once(self) -> str:
        """Ping, judge the echoes so far, raise or clear the alarm; returns the reason ("" = ok)."""
        if self.connected.is_set():
            ping = {"nonce": uuid.uuid4().hex, "sent_ms": timeutil.now_ms()}
            self.client.publish(canary_ping_topic(self.checker), orjson.dumps(ping), qos=1)
        reason = self._judge(time.monotonic())
        with self._lock:
            self.reason = reason
        if reason and not self.raised:
            log.error("canary: monitoring degraded — %s", reason)
            self.raised = self._transition("raised", reason)
        elif not reason and self.raised:
            log.warning("canary: monitoring restored")
            self.raised = not self._transition("cleared", "")
        return reason

    def _judge(self, now: float) -> str:
        timeout = self.settings.canary_timeout_s
        with self._lock:
            echoes = dict(self.last_echo)
        if not self.connected.is_set() and now - self.started > timeout:
            return "the canary cannot reach the MQTT broker"
        silent = sorted(c for c, t in echoes.items() if now - t > timeout)
        if silent:
            return f"no canary echo for {timeout:.0f} s from collector(s) {', '.join(silent)}"
        if not echoes and now - self.started > timeout:
            return f"no collector has answered the canary in {now - self.started:.0f} s"
        return ""

    def _transition(self, event: str, reason: str) -> bool:
        """Store and publish the platform alarm's transition; True when it took effect."""
        now_ms = timeutil.now_ms()
        t = AlarmTransition(
            event, MONITORING_DEGRADED, PLATFORM_DEVICE, now_ms, now_ms,
            f"监测链路中断 (monitoring degraded): {reason}" if reason else "", {"reason": reason}, Severity.critical,
        )  # fmt: skip
        try:
            self._ensure_platform_device()
            stored = self.alarms.apply(t)
        except SQLAlchemyError as e:
            log.error("canary: cannot store the platform alarm (%s): %s", event, e)
            return False
        if stored is not None:
            self._publish(stored)
        return True

    def _publish(self, stored: Stored) -> None:
        info = self.client.publish(alarm_topic(None, PLATFORM_DEVICE.id), orjson.dumps(stored.message), qos=1)
        try:
            info.wait_for_publish(self.settings.alarm_puback_timeout_s)
        except (RuntimeError, ValueError):
            pass
        if info.is_published():  # else the collectors' relay sends it once they are back
            self.alarms.mark_published([stored.event_id])

    def _ensure_platform_device(self) -> None:
        ensure_platform_device(self.db)

    def health(self) -> dict[str, Any]:
        """What ``/health`` reports of the canary."""
        now = time.monotonic()
        with self._lock:
            echoes = {c: round(now - t, 1) for c, t in self.last_echo.items()}
            reason = self.reason
        return {"ok": not reason, "reason": reason, "echo_age_s": echoes, "checker": self.checker}
