"""Small test helpers: a registry CSV, a QoS 1 publisher that waits for every PUBACK, an alarm
listener, polling."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion

from semon.api.app import create_app
from semon.config import Settings
from semon.store.db import Database
from semon.store.registry import import_devices_csv
from semon.timeutil import now_ms  # noqa: F401  (re-exported: one clock for every module)
from tests.services import free_port, wait_port

REGISTRY_HEADER = (
    "id,equipment_code,kind,district,address,lat,lon,firm_id,firm_name,firm_tech_level,firm_credit_grade,"
    "firm_credit_score,use_unit_id,use_unit_name,use_unit_mgmt_level,install_date,rated_speed,floors,"
    "bottom_floor,design_pressure,set_pressure,design_temperature,medium"
)


def small_registry(db: Database, path: Path) -> None:
    """Two elevators and a vessel (set pressure 1.6 MPa) under firm F001."""
    firm = "F001,Firm One,4,A,92,U0001,Unit,3"
    path.write_text(
        REGISTRY_HEADER
        + f"\nE1,311012345202000001,elevator,Tianhe,A road 1,23.1,113.3,{firm},2020-01-01,1.75,20,1,,,,"
        + f"\nE2,311012345202000002,elevator,Yuexiu,A road 2,23.1,113.3,{firm},2020-01-01,1.0,8,1,,,,"
        + f"\nV1,210012345202000003,vessel,Haizhu,A road 3,23.1,113.3,{firm},2019-05-01,,,,1.76,1.6,80,LPG\n"
    )
    import_devices_csv(db, path)


def elevator_registry(db: Database, path: Path, devices: list[str]) -> None:
    """Elevators of firm F001, one per id, registered from a CSV written at ``path``."""
    firm = "F001,Firm One,4,A,92,U0001,Unit,3"
    rows = [
        f"{d},3110SHMIT2020{i:05d},elevator,Tianhe,Road {i},23.1,113.3,{firm},2020-01-01,1.75,20,1,,,,"
        for i, d in enumerate(devices, start=1)
    ]
    path.write_text(REGISTRY_HEADER + "\n" + "\n".join(rows) + "\n")
    import_devices_csv(db, path)


def elevator_payload(ts: int, seq: int, **kw: Any) -> bytes:
    """A valid elevator status."""
    p = dict(
        ts=ts, seq=seq, mode="normal", running=False, dir="stop", floor=3, door_zone=True, door="closed",
        occupied=False, speed=0.0, load=0.0, run_count=10, run_hours=1.5,
    )  # fmt: skip
    p.update(kw)
    return orjson.dumps(p)


def publish_all(settings: Settings, msgs: Iterable[tuple[str, bytes]], client_id: str = "test-pub") -> int:
    """Publish at QoS 1 and return once the broker acknowledged every message."""
    host, port = settings.mqtt_endpoint()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.connect(host, port)
    c.loop_start()
    infos = [c.publish(t, p, qos=1) for t, p in msgs]
    for i in infos:
        i.wait_for_publish(30)
    c.disconnect()
    c.loop_stop()
    return len(infos)


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``pred`` until true or fail with ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class ApiServer:
    """The API (and its dispatcher, unless disabled in ``settings``) on a free port, in a thread."""

    def __init__(self, settings: Settings, db: Database, telemetry: Any) -> None:
        self.port = free_port()
        app = create_app(settings, db=db, telemetry=telemetry)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    access_log=False, timeout_graceful_shutdown=2))  # fmt: skip
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ApiServer:
        self.thread.start()
        wait_port(self.port)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


class AlarmListener:
    """Every alarm transition on the broker, as a firm's system receives it: ``got`` holds the
    messages in arrival order, ``arrived`` their arrival (wall) times."""

    def __init__(self, settings: Settings) -> None:
        host, port = settings.mqtt_endpoint()
        self.got: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        cid = f"alarm-listener-{os.getpid()}-{id(self)}"
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311)
        self.c.on_message = self._on_message
        ok = threading.Event()
        self.c.on_subscribe = lambda *_: ok.set()
        self.c.connect(host, port)
        self.c.subscribe("semon/v1/alarms/#", qos=1)
        self.c.loop_start()
        assert ok.wait(10), "alarm listener not subscribed"

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        self.arrived.append(time.time())
        self.got.append(orjson.loads(m.payload))

    def events(self, device: str) -> list[str]:
        """Event names of a device's transitions as they arrived (redeliveries included)."""
        return [m["event"] for m in self.got if m["device_id"] == device]

    def distinct(self, device: str) -> list[dict[str, Any]]:
        """A device's transitions, each once (by ``event_id``), in arrival order."""
        out: dict[int, dict[str, Any]] = {}
        for m in list(self.got):
            if m["device_id"] == device:
                out.setdefault(m["event_id"], m)
        return list(out.values())

    def raised(self, device: str, alarm_type: str) -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, message) of each distinct raise of one alarm type on a device."""
        seen: dict[int, tuple[float, dict[str, Any]]] = {}
        for at, m in zip(list(self.arrived), list(self.got), strict=False):
            if m["device_id"] == device and m["type"] == alarm_type and m["event"] == "raised":
                seen.setdefault(m["event_id"], (at, m))
        return list(seen.values())

    def close(self) -> None:
        """Disconnect."""
        self.c.disconnect()
        self.c.loop_stop()


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Server-Sent Events parsed from a line stream (comments skipped)."""
    ev: dict[str, str] = {}
    for line in lines:
        if not line:
            if ev:
                yield ev
            ev = {}
        elif not line.startswith(":"):
            k, _, v = line.partition(":")
            ev[k] = v.removeprefix(" ")
