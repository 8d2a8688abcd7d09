"""Alarm lifecycle through the real pipeline: concurrent raisers, two collectors on a shared
subscription, operator actions relayed and re-raised, offline timers, noisy streams."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import jsonschema
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from semon.api.app import create_app
from semon.ingest.collector import Collector
from semon.rules.alarms import AlarmStore
from semon.rules.base import AlarmTransition, RuleSpec, Severity
from semon.rules.catalog import Catalog
from semon.rules.engine import RuleEngine
from semon.store.models import Alarm, AlarmEvent
from semon.store.registry import load_registry
from tests.conftest import Stack
from tests.helpers import AlarmListener, elevator_payload, now_ms, publish_all, small_registry, wait_until
from tests.services import REPO

EL = "semon/v1/elevator/{}/status"


def trapped_stream(device: str, t0: int, seconds: int, trapped_from: int, trapped_to: int) -> list[tuple[str, bytes]]:
    """One status a second; a passenger is trapped between the two marks."""
    out = []
    for i in range(seconds):
        trapped = trapped_from <= i < trapped_to
        out.append(
            (EL.format(device), elevator_payload(t0 + i * 1000, i + 1, occupied=trapped, door_zone=True, floor=3))
        )
    return out


def alarms(stack: Stack) -> list[Alarm]:
    with stack.db.session() as s:
        return list(s.scalars(select(Alarm).order_by(Alarm.id)))


def test_concurrent_raisers_leave_exactly_one_active_alarm(stack: Stack, tmp_path: Path):
    small_registry(stack.db, tmp_path / "reg.csv")
    dev = load_registry(stack.db)["E1"]
    spec = RuleSpec("elevator.trapped_passenger", "elevator", "trapped_passenger", Severity.critical)
    t = AlarmTransition("raised", spec, dev, 1_764_000_000_000, 1_764_000_020_000, "trapped", {}, Severity.critical)
    stores = [AlarmStore(stack.db) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    results: list[object] = []

    def raise_it(st: AlarmStore) -> None:
        barrier.wait()
        results.append(st.apply(t))

    threads = [threading.Thread(target=raise_it, args=(st,)) for st in stores]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(r is not None for r in results) == 1
    assert len(alarms(stack)) == 1
    with stack.db.session() as s:
        assert len(s.scalars(select(AlarmEvent)).all()) == 1


def _in_dbapi_execute(thread: threading.Thread) -> bool:
    """Whether ``thread`` is inside a database call (running or waiting for a lock)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "do_execute":
            return True
        frame = frame.f_back
    return False


def test_a_stale_raise_racing_a_clear_never_makes_a_second_alarm(stack: Stack, tmp_path: Path):
    """Two collectors on one device's stream (a share group, a hand-over): one clears the alarm
    while the other, a few messages behind, raises it from its older view. Whatever the
    interleaving, the stale raise must not become a second alarm for the same entrapment.

    The clear is held open at its commit until the raise is inside its first database call: the
    interleaving that made the check-then-insert race give two alarms."""
    small_registry(stack.db, tmp_path / "reg.csv")
    dev = load_registry(stack.db)["E1"]
    spec = RuleSpec("elevator.trapped_passenger", "elevator", "trapped_passenger", Severity.critical)
    t0 = 1_764_000_000_000
    store = AlarmStore(stack.db)
    assert store.apply(AlarmTransition("raised", spec, dev, t0, t0 + 20_000, "trapped", {}, Severity.critical))
    clear = AlarmTransition("cleared", spec, dev, t0, t0 + 40_000, "", {}, Severity.critical)
    stale = AlarmTransition("raised", spec, dev, t0 + 1_000, t0 + 21_000, "trapped", {}, Severity.critical)
    clearing = threading.Event()
    results: dict[str, object] = {}
    raiser = threading.Thread(target=lambda: results.__setitem__("raise", AlarmStore(stack.db).apply(stale)))

    def hold_commit(session: object) -> None:
        if threading.current_thread().name == "clearer" and not clearing.is_set():
            clearing.set()
            raiser.start()
            wait_until(lambda: _in_dbapi_execute(raiser) or not raiser.is_alive(), 20, "the raise in the database")

    clearer = threading.Thread(target=lambda: results.__setitem__("clear", store.apply(clear)), name="clearer")
    event.listen(Session, "before_commit", hold_commit)
    try:
        clearer.start()
        clearer.join(60)
        raiser.join(60)
    finally:
        event.remove(Session, "before_commit", hold_commit)
    assert clearing.is_set() and results["clear"] is not None
    assert results["raise"] is None
    assert [(a.active, a.onset_ts) for a in alarms(stack)] == [(False, t0)]


def test_a_stale_clear_leaves_a_newer_alarm_alone(stack: Stack, tmp_path: Path):
    """A clear from a view that ended before the active alarm began (a lagging collector) is stale."""
    small_registry(stack.db, tmp_path / "reg.csv")
    dev = load_registry(stack.db)["E1"]
    spec = RuleSpec("elevator.trapped_passenger", "elevator", "trapped_passenger", Severity.critical)
    t0 = 1_764_000_000_000
    store = AlarmStore(stack.db)
    assert store.apply(AlarmTransition("raised", spec, dev, t0 + 60_000, t0 + 80_000, "trapped", {}, Severity.critical))
    assert store.apply(AlarmTransition("cleared", spec, dev, t0, t0 + 45_000, "", {}, Severity.critical)) is None
    assert store.apply(AlarmTransition("severity_changed", spec, dev, t0, t0 + 46_000, "", {}, Severity.major)) is None
    assert [(a.active, a.severity) for a in alarms(stack)] == [(True, "critical")]
    assert store.apply(AlarmTransition("cleared", spec, dev, t0 + 60_000, t0 + 90_000, "", {}, Severity.critical))
    assert [a.active for a in alarms(stack)] == [False]


def test_operator_actions_are_relayed_and_a_manual_clear_re_raises_while_the_condition_holds(
    stack: Stack, tmp_path: Path
):
    small_registry(stack.db, tmp_path / "reg.csv")
    col = Collector(stack.settings, stack.db, stack.telemetry())
    col.start()
    listener = AlarmListener(stack.settings)
    try:
        assert col.connected.wait(10)
        t0 = now_ms() - 60_000
        publish_all(stack.settings, trapped_stream("E1", t0, 30, 2, 10_000))  # still trapped at the end
        wait_until(lambda: len(alarms(stack)) == 1, 45, "trapped alarm raised")
        a = alarms(stack)[0]
        tel = stack.telemetry()
        with TestClient(create_app(stack.settings, db=stack.db, telemetry=tel)) as api:
            assert api.post(f"/alarms/{a.id}/ack", json={"actor": "li"}).json()["acknowledged"] is True
            r = api.post(f"/alarms/{a.id}/ack", json={"actor": "li"})
            assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
            api.post(f"/alarms/{a.id}/comments", json={"actor": "li", "text": "dispatching"}).raise_for_status()
            assert (
                api.post(f"/alarms/{a.id}/assign", json={"actor": "li", "assignee": "wang"}).json()["assignee"]
                == "wang"
            )
            assert api.post(f"/alarms/{a.id}/clear", json={"actor": "li", "reason": "test"}).json()["active"] is False
            assert api.post("/alarms/999999/ack", json={"actor": "li"}).status_code == 404
            # the condition still holds: a new alarm is raised by the engine
            wait_until(lambda: len(alarms(stack)) == 2, 45, "re-raised after the manual clear")
            events = [e["event"] for e in api.get(f"/alarms/{a.id}").json()["events"]]
            assert events == ["raised", "acknowledged", "comment", "assigned", "cleared"]
        tel.close()
        wait_until(
            lambda: listener.events("E1") == ["raised", "acknowledged", "comment", "assigned", "cleared", "raised"],
            10,
            "every transition published, in order",
        )
        assert [m["actor"] for m in listener.got][:5] == ["rules", "li", "li", "li", "li"]
        schema = orjson.loads((REPO / "core/contract/schemas/alarm.json").read_bytes())
        for m in listener.got:
            jsonschema.validate(m, schema)  # what goes out is what the contract says
        second = alarms(stack)[1]
        assert second.active and second.onset_ts == a.onset_ts
        # the passenger gets out: the new alarm clears
        publish_all(stack.settings, trapped_stream("E1", t0 + 30_000, 3, -1, -1)[1:])
        wait_until(lambda: not alarms(stack)[1].active, 45, "cleared when the doors open")
        # every transition is also an InfluxDB/SQLite point for board annotations
        wait_until(lambda: len(stack.seqs_of("alarm_event", "alarm_id")) >= 7, 15, "alarm_event points")
    finally:
        listener.close()
        col.stop()


def test_noisy_stream_with_duplicates_and_reordering_gives_the_same_alarms(stack: Stack, tmp_path: Path):
    small_registry(stack.db, tmp_path / "reg.csv")
    col = Collector(stack.settings, stack.db, stack.telemetry())
    col.start()
    try:
        assert col.connected.wait(10)
        t0 = now_ms() - 120_000
        clean = trapped_stream("E1", t0, 60, 5, 40)
        noisy = [(EL.format("E2"), p) for _, p in clean]
        rng = random.Random(3)
        noisy += rng.sample(noisy, 25)  # duplicates
        for i in range(0, len(noisy) - 3, 7):  # local reordering, as a flaky network does
            noisy[i], noisy[i + 2] = noisy[i + 2], noisy[i]
        publish_all(stack.settings, clean)
        publish_all(stack.settings, noisy)
        wait_until(lambda: sum(not a.active for a in alarms(stack)) == 2, 60, "both alarms cleared")
        by_dev = {a.device_id: (a.type, a.onset_ts, a.start_ts, a.end_ts) for a in alarms(stack)}
        assert by_dev["E1"] == by_dev["E2"]
        assert len(alarms(stack)) == 2
    finally:
        col.stop()


def test_offline_fires_on_the_timer_and_clears_when_the_device_speaks(stack: Stack, tmp_path: Path):
    small_registry(stack.db, tmp_path / "reg.csv")
    rules = tmp_path / "rules.toml"
    rules.write_text("[offline]\nkeepalive_s = 2\nfactor = 3\n")  # silent for 6 s = offline
    settings = stack.settings.model_copy(update={"rules_file": rules})
    col = Collector(settings, stack.db, stack.telemetry())
    col.start()
    try:
        assert col.connected.wait(10)
        publish_all(stack.settings, [(EL.format(d), elevator_payload(now_ms(), 1)) for d in ("E1", "E2")])
        publish_all(stack.settings, [("semon/v1/vessel/V1/online", b"0")])  # last will: at once
        wait_until(lambda: "V1" in {a.device_id for a in alarms(stack)}, 30, "last will raises")
        wait_until(lambda: {a.device_id for a in alarms(stack)} == {"V1", "E1", "E2"}, 30, "silent devices offline")
        by_device = {a.device_id: a for a in alarms(stack)}
        # V1's came from its last will, not from its timer; E1's and E2's from theirs.
        assert "last will" in by_device["V1"].message
        assert all("last will" not in by_device[d].message for d in ("E1", "E2"))
        assert all(a.type == "terminal_offline" and a.severity == "minor" for a in alarms(stack))
        publish_all(stack.settings, [(EL.format("E1"), elevator_payload(now_ms(), 2))])
        wait_until(lambda: not next(a for a in alarms(stack) if a.device_id == "E1").active, 5, "E1 back")
    finally:
        col.stop()


def _collector(stack: Stack, client_id: str, log: Path) -> subprocess.Popen[bytes]:
    s = stack.settings
    env = {
        **os.environ,
        "SEMON_MQTT_URL": s.mqtt_url,
        "SEMON_MQTT_CLIENT_ID": client_id,
        "SEMON_MQTT_SHARE_GROUP": "semon",
        "SEMON_INFLUX_URL": s.influx_url or "",
        "SEMON_DB_URL": s.db_url,
        "SEMON_DATA_DIR": str(log.parent / client_id),
        "SEMON_HEALTH_PORT": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "semon", "collect"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_two_collectors_on_one_shared_subscription_raise_no_duplicate_alarms(stack: Stack, tmp_path: Path):
    small_registry(stack.db, tmp_path / "reg.csv")
    logs = [tmp_path / "c1.log", tmp_path / "c2.log"]
    procs = [_collector(stack, f"semon-c{i}", logs[i]) for i in range(2)]
    try:
        wait_until(lambda: all("MQTT subscribed" in lg.read_text() for lg in logs if lg.exists()) and all(
            lg.exists() for lg in logs), 20, "both collectors connected")  # fmt: skip
        t0 = now_ms() - 120_000
        msgs = trapped_stream("E1", t0, 60, 5, 40) + trapped_stream("E2", t0, 60, 10, 50)
        # Mosquitto shares round-robin: both collectors see parts of each device's stream.
        publish_all(stack.settings, msgs)
        wait_until(lambda: sum(not a.active for a in alarms(stack)) >= 2, 30, "alarms raised and cleared")
        got = Counter((a.device_id, a.type) for a in alarms(stack))
        assert got == Counter({("E1", "trapped_passenger"): 1, ("E2", "trapped_passenger"): 1})
        wait_until(lambda: sorted(map(len, stack.seqs("elevator_status").values())) == [60, 60], 20, "all stored")
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
    texts = [lg.read_text() for lg in logs]
    assert all("Traceback" not in t for t in texts)
    shares = [
        sum(orjson.loads(x)["stats"]["received"] for x in t.splitlines() if '"collector stopped"' in x) for t in texts
    ]
    assert all(n > 0 for n in shares) and sum(shares) >= 120, shares


def test_engine_catalog_loads_from_settings_rules_file(tmp_path: Path):
    f = tmp_path / "r.toml"
    f.write_text('[rules."elevator.overspeed"]\nenabled = false\n')
    e = RuleEngine(Catalog(f))
    assert e.catalog.defs["elevator.overspeed"].enabled is False
