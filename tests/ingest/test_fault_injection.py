"""Alarms never go silent: faults injected into a running collector on real services.

Each case runs a collector against a real Mosquitto, a real InfluxDB and a private PostgreSQL
cluster (never the machine's shared one: these tests stop it). Devices report in real time; a
passenger is trapped *during* the fault, and the case checks that

* the trapped alarm is published on MQTT within its rule duration + 5 s,
* no message is lost (every (device, seq) published is stored),
* no alarm is raised twice,
* ``/health`` is 503 with the right reason during the fault and 200 after, with no manual
  intervention (where a stage fails, the process ends and the service manager starts a new one:
  the test plays the service manager).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from semon.config import Settings
from semon.ingest.alarm_sink import AlarmSink
from semon.ingest.collector import Collector
from semon.ingest.pipeline import Pipeline
from semon.ingest.supervision import EXIT_STAGE_FAILED
from semon.ingest.telemetry_sink import TelemetrySink
from semon.metrics import serve_health
from semon.store import open_telemetry
from semon.store.db import Database
from semon.store.models import Alarm, AlarmEvent
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from tests.helpers import AlarmListener, elevator_payload, publish_all, small_registry, wait_until
from tests.private_pg import PrivatePostgres
from tests.services import REPO, Influx, Mosquitto
from tests.slow_proxy import SlowProxy

pytestmark = pytest.mark.services

TRAPPED_FOR_S = 20.0  # elevator.trapped_passenger's trigger_for_s (rules/data/catalog.toml)
LATENCY_BOUND_S = 5.0  # the promise: published within the rule's duration + 5 s
PERIOD_S = 0.5  # each simulated terminal reports twice a second
EL = "semon/v1/elevator/{}/status"


# -- the surroundings ---------------------------------------------------------------------------
@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this test's own, which it may stop and start."""
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.close()


def settings_for(mq: Mosquitto, ix: Influx | None, db_url: str, data: Path, **kw: Any) -> Settings:
    """Collector settings on the test's services (a short batch age: small, frequent batches)."""
    base: dict[str, Any] = dict(
        mqtt_url=mq.url, influx_url=ix.url if ix else None, influx_db="semon", db_url=db_url, data_dir=data,
        telemetry_sqlite_path=data / "telemetry.db", mqtt_client_id="semon-fault-collector", batch_max_lines=500,
        batch_max_age_s=0.2, alarm_puback_timeout_s=2.0, influx_timeout_s=2.0,
    )  # fmt: skip
    base.update(kw)
    return Settings(**base)


class Feeder:
    """Terminals reporting in real time; ``trap(device)`` starts an entrapment, ``release`` ends it."""

    def __init__(self, settings: Settings, devices: list[str]) -> None:
        host, port = settings.mqtt_endpoint()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"feeder-{os.getpid()}", protocol=mqtt.MQTTv311)
        self.c.max_inflight_messages_set(1000)
        self.c.connect(host, port)
        self.c.loop_start()
        self.devices = devices
        self.seq = dict.fromkeys(devices, 0)
        self.trapped: dict[str, float] = {}  # device → wall time of its first trapped status
        self._trap: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                for d in self.devices:
                    self.seq[d] += 1
                    trapped = d in self._trap
                    now = time.time()
                    if trapped and d not in self.trapped:
                        self.trapped[d] = now
                    payload = elevator_payload(int(now * 1000), self.seq[d], occupied=trapped, door_zone=not trapped)
                    self.c.publish(EL.format(d), payload, qos=1)
            self._stop.wait(PERIOD_S)

    def trap(self, device: str) -> None:
        """From the next report on, the car holds a passenger, stopped, doors closed."""
        with self._lock:
            self._trap.add(device)

    def release(self, device: str) -> None:
        """The passenger is out."""
        with self._lock:
            self._trap.discard(device)

    def stop(self) -> dict[str, int]:
        """Stop reporting; returns the last seq published per device (seqs run from 1)."""
        self._stop.set()
        self.thread.join(10)
        self.c.disconnect()
        self.c.loop_stop()
        return dict(self.seq)


class Health:
    """The collector's real ``/health`` endpoint (HTTP status and reasons)."""

    def __init__(self, col: Collector) -> None:
        self.srv = serve_health("127.0.0.1", 0, col.health)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/health"

    def get(self) -> tuple[int, str]:
        """(status code, the reasons joined)."""
        r = httpx.get(self.url, timeout=5)
        return r.status_code, " | ".join(r.json().get("reasons", []))

    def wait(self, code: int, contains: str, timeout: float) -> None:
        """Until /health answers ``code`` with a reason containing ``contains``."""
        wait_until(lambda: (h := self.get())[0] == code and contains in h[1], timeout, f"/health {code} {contains!r}")

    def close(self) -> None:
        """Stop serving."""
        self.srv.shutdown()


def assert_alarm_in_time(listener: AlarmListener, feeder: Feeder, device: str) -> dict[str, Any]:
    """The trapped alarm arrived, once, within the rule's duration + 5 s of the entrapment."""
    bound = TRAPPED_FOR_S + LATENCY_BOUND_S + 10
    wait_until(lambda: listener.raised(device, "trapped_passenger"), bound, f"trapped alarm on {device}")
    raised = listener.raised(device, "trapped_passenger")
    assert len(raised) == 1, raised
    at, msg = raised[0]
    late = at - feeder.trapped[device] - TRAPPED_FOR_S
    assert late <= LATENCY_BOUND_S, f"published {late:.1f} s after the rule's duration"
    return msg


def assert_nothing_lost(read_seqs: Callable[[], dict[str, list[int]]], last: dict[str, int]) -> None:
    """Every (device, seq) published is stored, once."""

    missing: dict[str, list[int]] = {}

    def complete() -> bool:
        got = {d: set(v) for d, v in read_seqs().items()}
        missing.clear()
        missing.update({d: sorted(set(range(1, n + 1)) - got.get(d, set())) for d, n in last.items()})
        return not any(missing.values())

    try:
        wait_until(complete, 90, "every published status stored")
    except AssertionError:
        raise AssertionError(f"lost: { {d: (len(v), v[:20]) for d, v in missing.items()} }") from None


def influx_seqs(ix: Influx) -> Callable[[], dict[str, list[int]]]:
    """Stored seqs per device in InfluxDB."""

    def read() -> dict[str, list[int]]:
        from semon.store.influx import InfluxStore

        st = InfluxStore(ix.url, "semon")
        try:
            rows = st.rows('SELECT "seq", device_id FROM "elevator_status"')
        finally:
            st.close()
        out: dict[str, list[int]] = {}
        for r in rows:
            out.setdefault(str(r["device_id"]), []).append(int(r["seq"]))
        return out

    return read


def alarms_in(db: Database, device: str) -> list[Alarm]:
    """Trapped alarms of a device in the database."""
    with db.session() as s:
        return list(
            s.scalars(
                select(Alarm).where(Alarm.device_id == device, Alarm.type == "trapped_passenger").order_by(Alarm.id)
            )
        )


@pytest.fixture
def world(mosquitto: Mosquitto, influx: Influx, private_pg: PrivatePostgres, tmp_path: Path) -> dict[str, Any]:
    """Services, a registry (E1, E2 elevators) and a listener on the alarm topics."""
    db = Database(private_pg.url)
    small_registry(db, tmp_path / "reg.csv")
    yield {"mq": mosquitto, "ix": influx, "pg": private_pg, "db": db, "tmp": tmp_path}
    db.dispose()


def burst(s: Settings, device: str, n: int) -> None:
    """A terminal's backlog: ``n`` statuses (seq 1…n, a minute old) published as fast as the broker
    takes them."""
    host, port = s.mqtt_endpoint()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"burst-{device}", protocol=mqtt.MQTTv311)
    pub.max_inflight_messages_set(1000)
    pub.connect(host, port)
    pub.loop_start()
    t0 = int(time.time() * 1000) - 60_000
    infos = [pub.publish(EL.format(device), elevator_payload(t0 + i, i, floor=i % 20), qos=1) for i in range(1, n + 1)]
    for i in infos:
        i.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()


# -- the cases ------------------------------------------------------------------------------------
def test_postgres_down_60s_alarm_published_at_once_and_stored_when_back(world: dict[str, Any]):
    mq, ix, pg, db = world["mq"], world["ix"], world["pg"], world["db"]
    s = settings_for(mq, ix, pg.url, world["tmp"] / "data")
    col = Collector(s, db, open_telemetry(s))
    health = Health(col)
    col.start()
    listener = AlarmListener(s)
    # A brand-new session: what is published before its subscription reaches nobody.
    assert col.connected.wait(10)
    feeder = Feeder(s, ["E1", "E2"])
    try:
        assert col.connected.wait(10)
        health.wait(200, "", 20)
        pg.stop()
        stopped = time.monotonic()
        health.wait(503, "database unavailable", 15)
        feeder.trap("E1")
        raised = assert_alarm_in_time(listener, feeder, "E1")
        feeder.release("E1")
        wait_until(lambda: [m["event"] for m in listener.distinct("E1")] == ["raised", "cleared"], 20, "cleared")
        assert health.get()[0] == 503  # still down: the API, webhooks and escalations need it too
        time.sleep(max(0.0, 60 - (time.monotonic() - stopped)))  # the outage lasts 60 s
        pg.start()
        health.wait(200, "", 60)
        last = feeder.stop()
        assert_nothing_lost(influx_seqs(ix), last)
        # The alarm is in the database under the ids it was published with, raised and cleared once.
        stored = alarms_in(db, "E1")
        assert [(a.id, a.active) for a in stored] == [(raised["alarm_id"], False)]
        with db.session() as ss:
            events = list(ss.scalars(select(AlarmEvent).where(AlarmEvent.alarm_id == raised["alarm_id"])))
        assert sorted(e.id for e in events) == sorted(m["event_id"] for m in listener.distinct("E1"))
        assert all(e.published_at is not None for e in events)
        assert len(listener.raised("E1", "trapped_passenger")) == 1 and alarms_in(db, "E2") == []
    finally:
        feeder.stop()
        listener.close()
        col.stop()
        health.close()


def test_a_partition_owner_keeps_its_devices_alarmed_through_a_postgres_outage(world: dict[str, Any]):
    """The partition lease lives in PostgreSQL. With the database gone nobody can take the lease,
    so the owner consumes on (alarms flow) and confirms its lease when the database is back."""
    mq, ix, pg, db = world["mq"], world["ix"], world["pg"], world["db"]
    # One collector that owns the whole stream under a lease (a standby would take it over).
    s = settings_for(mq, ix, pg.url, world["tmp"] / "data", collector_standby=True)
    col = Collector(s, db, open_telemetry(s))
    health = Health(col)
    col.start()
    listener = AlarmListener(s)
    feeder: Feeder | None = None
    try:
        wait_until(lambda: col.health().get("role") == "owner" and col.connected.is_set(), 30, "owner, subscribed")
        feeder = Feeder(s, ["E1", "E2"])
        pg.stop()
        health.wait(503, "database unavailable", 15)
        feeder.trap("E1")
        assert_alarm_in_time(listener, feeder, "E1")
        assert not col.fatal.is_set() and col.health()["role"] == "owner"
        pg.start()
        health.wait(200, "", 60)
        assert not col.fatal.is_set() and col.health()["role"] == "owner" and not col.lease.uncertain.is_set()
        assert_nothing_lost(influx_seqs(ix), feeder.stop())
    finally:
        if feeder is not None:
            feeder.stop()
        listener.close()
        col.stop()
        health.close()


def test_influx_slow_alarms_do_not_wait_for_telemetry(world: dict[str, Any]):
    """InfluxDB up but slow (~600 lines/s per writer): messages are journaled and acknowledged
    at the rate they arrive, so an overshoot reported behind a 40,000-message backlog is alarmed
    at once and the whole backlog is acknowledged while InfluxDB has only part of it; the lag
    shows in /health (degraded, never 503), the journal drains into InfluxDB afterwards, nothing
    is lost. (Acknowledged only once in InfluxDB, ~25,000 messages would wait unacknowledged in
    the collector's memory and the broker's session instead.)"""
    mq, ix, pg, db = world["mq"], world["ix"], world["pg"], world["db"]
    proxy = SlowProxy(ix.http_port, bytes_per_s=6_000)  # gzip: ~10 bytes a line; 40,000 lines ≥ 30 s
    s = settings_for(
        mq, ix, pg.url, world["tmp"] / "data", influx_url=proxy.url, influx_timeout_s=30.0, batch_max_lines=1000,
        telemetry_lag_degraded_s=3.0,
    )  # fmt: skip
    col = Collector(s, db, open_telemetry(s))
    health = Health(col)
    col.start()
    listener = AlarmListener(s)
    try:
        assert col.connected.wait(10)
        health.wait(200, "", 20)
        burst(s, "E2", 40_000)
        sent = time.time()
        publish_all(s, [(EL.format("E1"), elevator_payload(int(sent * 1000), 1, floor=25, running=True, speed=1.0))])
        wait_until(lambda: listener.raised("E1", "overshoot_top"), 30, "overshoot alarm on E1")
        late = listener.raised("E1", "overshoot_top")[0][0] - sent
        assert late <= LATENCY_BOUND_S, f"alarm {late:.1f} s after the report, behind telemetry"
        # Acknowledged from the journal at the rate they came, long before InfluxDB has them.
        wait_until(lambda: col.stats["acked"] >= 40_001, 30, "the backlog acknowledged")
        assert col.stats["points_written"] < 40_000 and col.stats["spooled_batches"] > 0
        health.wait(200, "behind intake", 30)
        publish_all(s, [(EL.format("E1"), elevator_payload(int(time.time() * 1000), 2))])
        assert_nothing_lost(influx_seqs(ix), {"E1": 2, "E2": 40_000})
        wait_until(lambda: health.get() == (200, "") and len(col.spool) == 0, 30, "journal drained, /health ok")
        assert len(listener.raised("E1", "overshoot_top")) == 1
    finally:
        listener.close()
        col.stop()
        health.close()
        proxy.close()


def test_influx_down_with_the_spool_at_its_bound_alarms_flow(world: dict[str, Any]):
    mq, ix, pg, db = world["mq"], world["ix"], world["pg"], world["db"]
    s = settings_for(mq, ix, pg.url, world["tmp"] / "data", spool_max_bytes=1 << 20)
    col = Collector(s, db, open_telemetry(s))
    health = Health(col)
    col.start()
    listener = AlarmListener(s)
    # A brand-new session: what is published before its subscription reaches nobody.
    assert col.connected.wait(10)
    feeder = Feeder(s, ["E1"])
    try:
        assert col.connected.wait(10)
        health.wait(200, "", 20)
        ix.stop()
        burst(s, "E2", 6000)  # another terminal's backlog fills the 1 MiB spool
        health.wait(503, "spool holds", 60)
        feeder.trap("E1")
        assert_alarm_in_time(listener, feeder, "E1")
        assert health.get()[0] == 503
        ix.start()
        health.wait(200, "", 90)
        last = feeder.stop()
        assert_nothing_lost(influx_seqs(ix), {**last, "E2": 6000})
        assert len(alarms_in(db, "E1")) == 1
    finally:
        feeder.stop()
        listener.close()
        col.stop()
        health.close()


STAGE_FAULTS: dict[str, tuple[type, str]] = {
    "pipeline": (Pipeline, "_handle"),
    "alarms": (AlarmSink, "_replay"),  # runs on every loop of the stage
    "writer": (TelemetrySink, "_store"),  # whichever writer takes the next batch
}


@pytest.mark.parametrize("stage", list(STAGE_FAULTS))
def test_an_exception_in_a_stage_fails_loudly_and_a_restart_recovers(
    world: dict[str, Any], stage: str, monkeypatch: pytest.MonkeyPatch
):
    mq, ix, pg, db = world["mq"], world["ix"], world["pg"], world["db"]
    s = settings_for(mq, ix, pg.url, world["tmp"] / "data")
    cls, name = STAGE_FAULTS[stage]
    original = getattr(cls, name)
    armed = threading.Event()

    def faulty(self: Any, *a: Any, **kw: Any) -> Any:
        if armed.is_set():
            armed.clear()
            raise RuntimeError(f"injected fault in {stage}")
        return original(self, *a, **kw)

    monkeypatch.setattr(cls, name, faulty)
    col = Collector(s, db, open_telemetry(s))
    health = Health(col)
    col.start()
    listener = AlarmListener(s)
    # A brand-new session: what is published before its subscription reaches nobody.
    assert col.connected.wait(10)
    feeder = Feeder(s, ["E1", "E2"])
    second: Collector | None = None
    try:
        assert col.connected.wait(10)
        feeder.trap("E1")
        time.sleep(2 * PERIOD_S)  # the trapped reports are flowing when the stage fails
        armed.set()
        assert col.fatal.wait(20), "the stage failure must be flagged"
        code, why = health.get()
        assert code == 503 and f"stage {stage}" in why and "failed" in why and "injected fault" in why
        # What `semon collect` does on the flag (it then exits 70 and its service manager starts it
        # again): stop; and a new collector takes the same session and data directory.
        col.stop()
        health.close()
        monkeypatch.setattr(cls, name, original)
        second = Collector(s, db, open_telemetry(s))
        health = Health(second)
        second.start()
        assert second.connected.wait(10)
        assert_alarm_in_time(listener, feeder, "E1")
        health.wait(200, "", 30)
        last = feeder.stop()
        assert_nothing_lost(influx_seqs(ix), last)
        assert len(alarms_in(db, "E1")) == 1
    finally:
        feeder.stop()
        listener.close()
        (second or col).stop()
        health.close()


def test_semon_collect_exits_non_zero_when_a_stage_fails(world: dict[str, Any]):
    """The process ends (status 70) so that compose's ``restart:`` / systemd's ``Restart=`` act."""
    mq, ix, pg = world["mq"], world["ix"], world["pg"]
    code = (
        "import sys\n"
        "from semon.ingest.pipeline import Pipeline\n"
        "def boom(self, *a, **kw):\n"
        "    raise RuntimeError('injected fault')\n"
        "Pipeline._handle = boom\n"
        "from semon.cli import app\n"
        "sys.argv = ['semon', 'collect', '--health-port', '0']\n"
        "app()\n"
    )
    env = {
        **os.environ, "SEMON_MQTT_URL": mq.url, "SEMON_INFLUX_URL": ix.url, "SEMON_DB_URL": pg.url,
        "SEMON_DATA_DIR": str(world["tmp"] / "data"), "SEMON_MQTT_CLIENT_ID": "semon-exit-test",
    }  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        s = settings_for(mq, ix, pg.url, world["tmp"] / "x")
        wait_until(lambda: _publish_one(s) or proc.poll() is not None, 60, "the collector to fail and exit")
        out = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_STAGE_FAILED, out[-3000:]
    assert "collector stage pipeline failed" in out and "injected fault" in out


def _publish_one(s: Settings) -> bool:
    host, port = s.mqtt_endpoint()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="one", protocol=mqtt.MQTTv311)
    c.connect(host, port)
    c.loop_start()
    c.publish(EL.format("E1"), elevator_payload(int(time.time() * 1000), 1), qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
    time.sleep(0.5)
    return False


def test_a_spool_written_for_influx_replays_into_sqlite_after_a_restart(world: dict[str, Any]):
    mq, ix, pg, db = world["mq"], world["ix"], world["pg"], world["db"]
    data = world["tmp"] / "data"
    s = settings_for(mq, ix, pg.url, data)
    col = Collector(s, db, open_telemetry(s))
    col.start()
    # A brand-new session: what is published before its subscription reaches nobody.
    assert col.connected.wait(10)
    feeder = Feeder(s, ["E1", "E2"])
    listener = AlarmListener(s)
    second: Collector | None = None
    try:
        assert col.connected.wait(10)
        ix.stop()
        wait_until(lambda: len(col.spool) >= 3, 30, "batches spooled while InfluxDB is down")
        # Telemetry impaired, alarms not: 200 with the reason, not "ok".
        h = col.health()
        assert h["status"] == "degraded" and any("spooling" in r for r in h["reasons"]), h["reasons"]
        col.stop()
        # Restarted on the embedded SQLite telemetry store, same data directory (and spool).
        s2 = settings_for(mq, None, pg.url, data)
        store = SqliteTelemetryStore(s2.telemetry_sqlite_path)
        second = Collector(s2, db, store)
        health = Health(second)
        second.start()
        assert second.connected.wait(10)
        feeder.trap("E1")
        assert_alarm_in_time(listener, feeder, "E1")
        wait_until(lambda: len(second.spool) == 0, 30, "the spool replayed into SQLite")
        health.wait(200, "", 20)
        last = feeder.stop()

        def sqlite_seqs() -> dict[str, list[int]]:
            rows = store._db.execute(
                "SELECT device_id, json_extract(fields, '$.seq') FROM telemetry WHERE measurement='elevator_status'"
            ).fetchall()
            out: dict[str, list[int]] = {}
            for d, v in rows:
                out.setdefault(d, []).append(int(v))
            return out

        def stored_anywhere() -> dict[str, list[int]]:
            # What InfluxDB took before it went down, plus everything since in SQLite.
            out = sqlite_seqs()
            for d, v in influx_seqs(ix)().items():
                out.setdefault(d, []).extend(v)
            return out

        ix.start()
        assert_nothing_lost(stored_anywhere, last)
        assert not second.fatal.is_set() and second.stats["replayed_batches"] >= 3
        health.close()
    finally:
        feeder.stop()
        listener.close()
        if second is not None:
            second.stop()


def test_a_stopped_collector_is_caught_by_the_canary_and_cleared_when_it_resumes(world: dict[str, Any]):
    """SIGSTOP: the process is alive, its socket open, its /health unanswered — only a check from
    outside the collector sees it. The API's canary raises "monitoring degraded" within its
    timeout + 5 s, /health turns 503, and both clear once the collector runs again."""
    import signal

    from fastapi.testclient import TestClient

    from semon.api.app import create_app
    from semon.notify.canary import PLATFORM_DEVICE

    mq, ix, pg, db = world["mq"], world["ix"], world["pg"], world["db"]
    timeout = 5.0
    s = settings_for(mq, ix, pg.url, world["tmp"] / "data", canary_enabled=True, canary_interval_s=0.5,
                     canary_timeout_s=timeout, api_auth="open")  # fmt: skip
    env = {
        **os.environ, "SEMON_MQTT_URL": mq.url, "SEMON_INFLUX_URL": ix.url, "SEMON_DB_URL": pg.url,
        "SEMON_DATA_DIR": str(world["tmp"] / "data"), "SEMON_MQTT_CLIENT_ID": "semon-canary-test",
        "SEMON_HEALTH_PORT": "0",
    }  # fmt: skip
    log = (world["tmp"] / "collector.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "semon", "collect"], env=env, cwd=REPO, stdout=log, stderr=log)
    listener = AlarmListener(s)
    feeder: Feeder | None = None
    try:
        with TestClient(create_app(s, db=db)) as api:
            canary = api.app.state.canary
            wait_until(lambda: "semon-canary-test" in canary.health()["echo_age_s"], 60, "the collector's first echo")
            feeder = Feeder(s, ["E1", "E2"])  # the collector's session exists: nothing reaches nobody
            wait_until(lambda: api.get("/health").status_code == 200, 20, "/health 200")
            os.kill(proc.pid, signal.SIGSTOP)
            stopped = time.time()
            feeder.trap("E1")
            wait_until(lambda: listener.raised(PLATFORM_DEVICE.id, "monitoring_degraded"), timeout + 10, "canary alarm")
            (at, msg), = listener.raised(PLATFORM_DEVICE.id, "monitoring_degraded")
            assert at - stopped <= timeout + LATENCY_BOUND_S, f"canary alarm after {at - stopped:.1f} s"
            assert msg["severity"] == "critical" and "semon-canary-test" in msg["details"]["reason"]
            h = api.get("/health")
            assert h.status_code == 503 and "semon-canary-test" in h.json()["pipeline"]["reason"]
            os.kill(proc.pid, signal.SIGCONT)
            wait_until(
                lambda: [m["event"] for m in listener.distinct(PLATFORM_DEVICE.id)] == ["raised", "cleared"],
                timeout + 10, "canary alarm cleared",
            )  # fmt: skip
            wait_until(lambda: api.get("/health").status_code == 200, 20, "/health 200 again")
            # The entrapment that began while the collector was stopped is reported once it runs.
            wait_until(lambda: listener.raised("E1", "trapped_passenger"), TRAPPED_FOR_S + 30, "trapped after SIGCONT")
            last = feeder.stop()
            assert_nothing_lost(influx_seqs(ix), last)
            assert len(listener.raised("E1", "trapped_passenger")) == 1
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            proc.wait(30)
        if feeder is not None:
            feeder.stop()
        listener.close()
        log.close()
