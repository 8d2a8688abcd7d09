"""What the harness watches during a case: CPU and RSS per process, InfluxDB's write counter, the
load generator's progress, the broker's message store (backlog) and every alarm published.

All sampling happens in the harness process, once a second, from ``/proc``, InfluxDB's
``/debug/vars`` and an MQTT subscription — nothing is added to the systems under test.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleetbench.services import Influx, Proc, cpu_seconds, rss_mb

ALARM_TOPICS = ("semon/v1/alarms/#",)
STORE_TOPIC = "$SYS/broker/store/messages/count"


@dataclass
class Sample:
    """One second of observations."""

    t: float
    points: int  # InfluxDB pointsWrittenOK (cumulative since the case began)
    sent: int  # load generator: messages written to the broker
    acked: int  # load generator: messages the broker acknowledged
    store: int | None  # broker: messages held in its store (queued + in flight + retained)
    cpu: dict[str, float] = field(default_factory=dict)  # process → % of one core over the last second


class Listener:
    """An MQTT client of the harness: alarms (with arrival time) and the broker's store size."""

    def __init__(self, port: int, client_id: str) -> None:
        self.alarms: list[tuple[int, dict[str, Any]]] = []  # (arrival wall ms, message)
        self.store: int | None = None
        self._ready = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *_a: self._ready.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        self.client = c
        if not self._ready.wait(15):
            raise TimeoutError("the harness's MQTT listener could not subscribe")

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        c.subscribe([(t, 1) for t in ALARM_TOPICS] + [(STORE_TOPIC, 0)])

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time_ns() // 1_000_000
        if msg.topic == STORE_TOPIC:
            try:
                self.store = int(msg.payload)
            except ValueError:
                pass
            return
        try:
            self.alarms.append((now, orjson.loads(msg.payload)))
        except orjson.JSONDecodeError:
            self.alarms.append((now, {"raw": msg.payload.decode(errors="replace"), "topic": msg.topic}))

    def mark(self) -> int:
        """Position in :attr:`alarms` (a case reads the alarms after its mark)."""
        return len(self.alarms)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


class Observer:
    """Samples every second until stopped; the series belongs to one case."""

    def __init__(self, influx: Influx, listener: Listener, status_path: Path | None) -> None:
        self.influx = influx
        self.listener = listener
        self.status_path = status_path
        self.procs: dict[str, Proc] = {}
        self.series: list[Sample] = []
        self.peak_rss: dict[str, float] = {}
        self._cpu_start: dict[str, tuple[float, float]] = {}  # name → (cpu s, wall) when first seen
        self._cpu_last: dict[str, tuple[float, float]] = {}
        self.cpu_total: dict[str, tuple[float, float]] = {}  # name → (cpu s, wall s) while observed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._points0 = influx.points_written()

    def watch(self, proc: Proc) -> None:
        """Account this process from now on (a restarted one gets a new name suffix by the caller)."""
        self.procs[proc.name] = proc

    def start(self) -> None:
        """Start sampling."""
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (takes one last sample)."""
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def points(self) -> int:
        """Points InfluxDB wrote since this observer began."""
        return self.influx.points_written() - self._points0

    def _status(self) -> tuple[int, int]:
        if self.status_path is None:
            return 0, 0
        sent = acked = 0
        for p in self.status_path.parent.glob(self.status_path.name + "*"):
            if p.suffix == ".tmp":
                continue
            try:
                st = orjson.loads(p.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            sent += int(st.get("sent", 0))
            acked += int(st.get("acked", 0))
        return sent, acked

    def _sample(self) -> None:
        now = time.monotonic()
        cpu: dict[str, float] = {}
        for name, p in list(self.procs.items()):
            c = cpu_seconds(p.pid)
            if c is None:
                continue
            if name not in self._cpu_start:
                self._cpu_start[name] = (c, now)
            last = self._cpu_last.get(name)
            if last is not None and now > last[1]:
                cpu[name] = round((c - last[0]) / (now - last[1]) * 100, 1)
            self._cpu_last[name] = (c, now)
            c0, w0 = self._cpu_start[name]
            self.cpu_total[name] = (c - c0, now - w0)
            r = rss_mb(p.pid)
            if r:
                self.peak_rss[name] = max(self.peak_rss.get(name, 0.0), r[0])
        try:
            pts = self.points()
        except Exception:  # InfluxDB busy answering a big query: skip this second
            return
        sent, acked = self._status()
        self.series.append(Sample(time.time(), pts, sent, acked, self.listener.store, cpu))

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self._sample()
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - t0)))
        self._sample()

    def cpu_pct(self, t0: float, t1: float) -> dict[str, float]:
        """Average CPU % (100 = one core) of each process over samples taken in [t0, t1] (wall)."""
        out: dict[str, float] = {}
        rows = [s for s in self.series if t0 <= s.t <= t1]
        for name in self.procs:
            vals = [s.cpu[name] for s in rows if name in s.cpu]
            if vals:
                out[name] = round(sum(vals) / len(vals), 1)
        return out


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists."""
    return os.path.exists(f"/proc/{pid}")
