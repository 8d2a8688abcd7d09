"""Failover: partition ownership is a PostgreSQL lease; a standby takes over a dead owner's partition.

* the lease itself (``PgAdvisoryLease``): exclusive per partition, freed when its session ends;
  an owner whose lease session is gone fences itself (off the broker, ``/health`` 503, fatal);
* a standby on SQLite is refused with one line naming the setting;
* acceptance, on real Mosquitto, InfluxDB and PostgreSQL with collectors as real processes: two
  collectors per partition for two partitions; SIGKILL one owner (not restarted) → its standby
  raises a trapped alarm injected after the kill within 15 s + the rule's 20 s; every
  (device, seq) stored, exactly one alarm; the old owner restarted joins as standby.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from semon.config import Settings
from semon.ingest.collector import Collector, partition_of
from semon.ingest.lease import CHECK_EVERY_S, LOCK_NAMESPACE, LeaseKeeper, LeaseLost, PgAdvisoryLease, lock_key
from semon.ingest.supervision import Supervisor
from semon.ports import free_port
from semon.store.db import Database
from semon.store.models import Alarm
from tests.conftest import Stack
from tests.helpers import AlarmListener, elevator_payload, elevator_registry, now_ms, wait_until

EL = "semon/v1/elevator/{}/status"
# The trapped-passenger rule's duration (rules catalogue): closed in for 20 s without interruption.
TRAPPED_AFTER_S = 20
TAKEOVER_S = 15


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _terminate_lease_sessions(url: str) -> int:
    """What a dropped connection does to the lease (the owner's host lost the database)."""
    with psycopg.connect(_libpq(url), autocommit=True) as c:
        rows = c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'semon-lease-%%'"
            " AND datname = current_database()"
        ).fetchall()
    return len(rows)


def _lease_sessions(url: str) -> int:
    with psycopg.connect(_libpq(url), autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory'"
            " AND l.granted AND a.application_name LIKE 'semon-lease-%%' AND a.datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_advisory_lease_is_exclusive_per_partition_and_freed_with_its_session(pg_url: str):
    a, b, other = PgAdvisoryLease(pg_url, (0, 2)), PgAdvisoryLease(pg_url, (0, 2)), PgAdvisoryLease(pg_url, (1, 2))
    try:
        assert a.try_acquire() and a.still_held()
        # The server drops a silent holder's session (freeing the lock) in bounded time: the lease
        # connection carries its own keepalive settings (docs/scaling.md "Failover").
        conn = a._conn
        assert conn is not None
        shown = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in ("tcp_keepalives_idle", "tcp_user_timeout")}
        assert shown == {"tcp_keepalives_idle": "5", "tcp_user_timeout": "10000"}, shown
        assert not b.try_acquire()  # taken
        assert other.try_acquire()  # another partition is another lock
        assert lock_key((0, 2)) != lock_key((1, 2)) and lock_key((0, 2)) == PgAdvisoryLease(pg_url, (0, 2))._key
        a.release()  # the session ends: the lock is free at once
        assert b.try_acquire() and b.still_held()
        assert _terminate_lease_sessions(pg_url) == 2  # b's and other's sessions dropped
        assert not b.still_held() and not other.still_held()
        # ... and the lock is free again for anyone, once the server has ended that backend.
        wait_until(a.try_acquire, 10, "the lock freed with the terminated session")
        with psycopg.connect(_libpq(pg_url), autocommit=True) as c:
            holders = c.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s",
                (LOCK_NAMESPACE, lock_key((0, 2))),
            ).fetchone()
        assert holders == (1,)
    finally:
        for lease in (a, b, other):
            lease.release()


def test_keeper_waits_as_standby_then_owns_then_fences_when_another_takes_the_lock(pg_url: str):
    holder = PgAdvisoryLease(pg_url, (0, 1))
    assert holder.try_acquire()
    sup = Supervisor()
    acquired, fenced = threading.Event(), []
    keeper = LeaseKeeper(PgAdvisoryLease(pg_url, (0, 1)), sup, acquired.set, fenced.append)
    keeper.start()
    try:
        time.sleep(1.5)  # a few acquisition attempts while the holder holds it
        assert keeper.role == "standby" and not acquired.is_set()
        holder.release()
        assert acquired.wait(10) and keeper.role == "owner"
        # Its session is dropped and another takes the lock before it can take it again.
        thief = PgAdvisoryLease(pg_url, (0, 1))

        def steal() -> bool:
            _terminate_lease_sessions(pg_url)
            return thief.try_acquire() is True

        wait_until(steal, 10, "the lock taken by another session")
        assert sup.fatal.wait(10)
        thief.release()
        assert keeper.role == "standby" and len(fenced) == 1 and "fenced" in fenced[0]
        assert "LeaseLost" in sup.failures["lease"]
    finally:
        keeper.release()
    assert issubclass(LeaseLost, RuntimeError)


def test_standby_on_sqlite_is_refused_with_one_line_naming_the_setting(tmp_path: Path):
    s = Settings(db_url=f"sqlite:///{tmp_path}/s.db", data_dir=tmp_path / "d", collector_standby=True,
                 mqtt_url="mqtt://127.0.0.1:1")  # fmt: skip
    db = Database(s.db_url)
    try:
        with pytest.raises(ValueError, match="SEMON_COLLECTOR_STANDBY needs PostgreSQL"):
            Collector(s, db, None)  # type: ignore[arg-type]
    finally:
        db.dispose()
    env = {**os.environ, "SEMON_DB_URL": s.db_url, "SEMON_COLLECTOR_STANDBY": "true", "SEMON_MQTT_URL": "mqtt://127.0.0.1:1",
           "SEMON_DATA_DIR": str(tmp_path / "d")}  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "semon", "collect"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "SEMON_COLLECTOR_STANDBY needs PostgreSQL" in r.stdout + r.stderr


@pytest.mark.services
@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_owner_that_loses_its_lease_stops_consuming_and_says_so(stack: Stack):
    s = stack.settings.model_copy(update={"collector_partition": "1/2"})
    col = Collector(s, stack.db, stack.telemetry())
    col.start()
    thief = psycopg.connect(_libpq(s.db_url), autocommit=True)
    try:
        wait_until(lambda: col.health().get("role") == "owner" and col.connected.is_set(), 30, "owner, subscribed")
        assert col.health()["status"] == "ok"
        # The owner's lease connection drops and, before it can take the lock again, another
        # session has it: the lease is lost.
        def steal() -> bool:
            _terminate_lease_sessions(s.db_url)
            row = thief.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, lock_key((1, 2)))).fetchone()
            return bool(row and row[0])

        wait_until(steal, 15, "the lock taken by another session")
        wait_until(col.fatal.is_set, 15, "fenced")
        h = col.health()
        assert h["status"] == "failing" and any("lease on partition 1/2 lost" in r for r in h["reasons"]), h
        assert not col.connected.is_set() and col.source.closing
    finally:
        thief.close()
        col.stop(10)


@pytest.mark.services
@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_an_owner_whose_lease_connection_drops_takes_the_free_lock_again_and_consumes_on(stack: Stack):
    """A dropped connection is not a lost lease: nobody else holds it, so the owner carries on."""
    s = stack.settings.model_copy(update={"collector_partition": "1/2"})
    col = Collector(s, stack.db, stack.telemetry())
    col.start()
    try:
        wait_until(lambda: col.health().get("role") == "owner" and col.connected.is_set(), 30, "owner, subscribed")
        assert _terminate_lease_sessions(s.db_url) == 1
        wait_until(lambda: _lease_sessions(s.db_url) == 1, 15, "lock taken again on a new connection")
        time.sleep(3 * CHECK_EVERY_S)  # several checks later it is still the owner, consuming
        assert not col.fatal.is_set() and col.connected.is_set() and col.health()["role"] == "owner"
    finally:
        col.stop(10)


# --- acceptance: real processes -----------------------------------------------------------------


class CollectorProcess:
    """``semon collect`` for one partition, with its own data directory and health port."""

    def __init__(self, stack: Stack, partition: int, name: str, workdir: Path) -> None:
        s = stack.settings
        self.name, self.port, self.log = name, free_port(), workdir / f"{name}.log"
        self.env = {
            **os.environ,
            "SEMON_MQTT_URL": s.mqtt_url, "SEMON_MQTT_CLIENT_ID": "semon-fo",
            "SEMON_COLLECTOR_PARTITION": f"{partition}/2", "SEMON_COLLECTOR_STANDBY": "true",
            "SEMON_INFLUX_URL": s.influx_url or "", "SEMON_INFLUX_DB": s.influx_db, "SEMON_DB_URL": s.db_url,
            "SEMON_DATA_DIR": str(workdir / name), "SEMON_HEALTH_PORT": str(self.port),
        }  # fmt: skip
        self.env.pop("SEMON_MQTT_SHARE_GROUP", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "semon", "collect"], env=self.env, stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def health(self) -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())
        except OSError:
            return {}

    def role(self) -> str | None:
        h = self.health()
        if h.get("role") == "owner" and not h.get("mqtt_connected"):
            return "owner-connecting"
        return h.get("role")


class Fleet:
    """Every device publishes a status a second (ts = now, seq + 1) until stopped; one device can be
    switched to a passenger shut in."""

    def __init__(self, settings: Settings, devices: list[str]) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        host, port = settings.mqtt_endpoint()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fo-fleet", protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(1000)
        self.client.connect(host, port)
        self.client.loop_start()
        self.devices = devices
        self.sent: dict[str, list[int]] = {d: [] for d in devices}
        self.trapped: set[str] = set()
        self._stop = threading.Event()
        self._infos: list = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        while not self._stop.wait(1.0):
            seq += 1
            ts = now_ms()
            for d in self.devices:
                p = elevator_payload(ts, seq, occupied=d in self.trapped)
                self._infos.append(self.client.publish(EL.format(d), p, qos=1))
                self.sent[d].append(seq)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for i in self._infos:
            i.wait_for_publish(30)
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.services
@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_standby_takes_over_a_killed_owner_within_bounds(stack: Stack, tmp_path: Path):
    devices = [f"FO{i:02d}" for i in range(1, 13)]
    elevator_registry(stack.db, tmp_path / "reg.csv", devices)
    parts = [[d for d in devices if partition_of(d, 2) == p] for p in range(2)]
    assert all(parts), parts
    owners = [CollectorProcess(stack, p, f"owner{p}", tmp_path) for p in range(2)]
    standbys = [CollectorProcess(stack, p, f"standby{p}", tmp_path) for p in range(2)]
    everyone = owners + standbys
    fleet = None
    listener = AlarmListener(stack.settings)
    try:
        for c in owners:
            c.start()
        wait_until(lambda: all(c.role() == "owner" for c in owners), 90, "both owners subscribed")
        for c in standbys:
            c.start()
        wait_until(lambda: all(c.role() == "standby" for c in standbys), 90, "both standbys waiting")
        assert all(c.health()["status"] == "standby" for c in standbys)
        fleet = Fleet(stack.settings, devices)
        time.sleep(3)  # the fleet runs on both owners a moment before the kill

        victim = parts[0][0]
        owners[0].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        owners[0].proc.wait(10)  # type: ignore[union-attr]
        fleet.trapped.add(victim)  # a passenger shut in from right after the kill
        injected = time.time()
        wait_until(lambda: standbys[0].role() == "owner", TAKEOVER_S, "standby 0 owns partition 0")
        took_over = time.time() - injected

        def alarms() -> list[Alarm]:
            with stack.db.session() as s:
                return list(s.scalars(select(Alarm)))

        # As the firm receives it: on the broker, within the takeover bound + the rule's duration.
        wait_until(
            lambda: listener.raised(victim, "trapped_passenger"), TAKEOVER_S + TRAPPED_AFTER_S,
            "trapped alarm raised by the new owner",
        )  # fmt: skip
        raised_after = listener.raised(victim, "trapped_passenger")[0][0] - injected
        assert raised_after <= TAKEOVER_S + TRAPPED_AFTER_S
        time.sleep(2)
        fleet.stop()
        expected = {d: sorted(v) for d, v in fleet.sent.items()}
        wait_until(lambda: {d: sorted(set(v)) for d, v in stack.seqs("elevator_status").items()} == expected, 60,
                   "every (device, seq) stored")  # fmt: skip

        # The old owner comes back: it joins as standby, the new owner keeps the partition.
        owners[0].start()
        wait_until(lambda: owners[0].role() == "standby", 90, "the old owner rejoins as standby")
        assert standbys[0].role() == "owner" and owners[1].role() == "owner" and standbys[1].role() == "standby"
        got = [(a.device_id, a.type) for a in alarms()]
        assert got == [(victim, "trapped_passenger")], got  # one alarm, none duplicated, none false
        assert len(listener.raised(victim, "trapped_passenger")) == 1
        assert all(m["device_id"] == victim for m in listener.got), listener.got
        print(f"takeover {took_over:.1f} s, trapped alarm {raised_after:.1f} s after the kill")
    finally:
        listener.close()
        if fleet is not None and not fleet._stop.is_set():
            fleet.stop()
        for c in everyone:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.terminate()
                c.proc.wait(60)
    texts = {c.name: c.log.read_text() for c in everyone}
    assert all("Traceback" not in t for n, t in texts.items()), {n: t[-2000:] for n, t in texts.items()}
