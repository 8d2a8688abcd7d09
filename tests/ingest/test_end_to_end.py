"""One simulated fleet all the way through: broker → collector → stores → alarms → API.

Runs on real Mosquitto + InfluxDB + PostgreSQL and on the embedded defaults (amqtt + SQLite);
on the real services also with the collector SIGKILLed mid-run and restarted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from semon.api.app import create_app
from semon.ingest.collector import Collector
from semon.rules.catalog import Catalog
from semon.simulators.fleet import build_fleet
from semon.simulators.run import SimulationConfig, SimulationResult, run_simulation
from semon.store.models import Alarm, AlarmEvent, DeadLetter
from semon.store.registry import import_devices_csv
from tests.conftest import Stack
from tests.helpers import AlarmListener, wait_until

ELEVATORS, VESSELS, SEED = 100, 20, 7
# Device time runs 2× wall time; faults start after the collector restart of the kill test.
SPEED, DURATION_S, RATE = 2.0, 24.0, 440.0
FAULTS = ["trapped:E000005@16s+30s", "overpressure:V000003@20s+14s"]
DURATION_MS = {
    r.alarm_type: int(float(r.trigger_for_s) * 1000)
    for r in Catalog().defs.values()
    if r.alarm_type in ("trapped_passenger", "overpressure")
}


def prepare(stack: Stack, tmp_path: Path) -> None:
    reg = tmp_path / "registry.csv"
    build_fleet(ELEVATORS, VESSELS, SEED).write_registry_csv(reg)
    import_devices_csv(stack.db, reg)


def simulate(stack: Stack, tmp_path: Path) -> SimulationResult:
    host, port = stack.settings.mqtt_endpoint()
    return run_simulation(
        SimulationConfig(
            host=host,
            port=port,
            elevators=ELEVATORS,
            vessels=VESSELS,
            rate=RATE,
            duration_s=DURATION_S,
            faults=FAULTS,
            seed=SEED,
            speed=SPEED,
            truth_path=tmp_path / "truth.jsonl",
            client_id="test-sim",
            device_time_bound=True,  # the same volume and faults on a loaded machine
        )
    )


def check_exactly_once(stack: Stack, res: SimulationResult) -> None:
    """Every published status message is stored once: per device, the seqs 1..N, no repeats."""
    assert res.all_acked
    assert res.total_messages >= 10_000 and len(res.per_device) >= 100

    def stored() -> dict[str, list[int]]:
        return {**stack.seqs("elevator_status"), **stack.seqs("vessel_status")}

    expected = {d: list(range(1, n + 1)) for d, n in res.per_device.items()}
    try:
        wait_until(lambda: sum(map(len, stored().values())) >= res.total_messages, 90, "every message stored")
    finally:
        got = {d: sorted(s) for d, s in stored().items()}
        missing = {d: len(expected[d]) - len(got.get(d, [])) for d in expected if got.get(d) != expected[d]}
        assert not missing, f"devices whose stored seqs differ from those published: {dict(list(missing.items())[:10])}"
    assert sum(len(s) for s in got.values()) == res.total_messages


def check_alarms(stack: Stack, res: SimulationResult, listener: AlarmListener) -> None:
    """Each injected fault raised exactly one alarm, in time, cleared after the fault ended."""
    truth = {(r.device_id, r.alarm_type): r for r in res.faults}
    assert len(truth) == len(FAULTS) and all(r.onset_ts and r.end_ts for r in truth.values())

    def alarms() -> list[Alarm]:
        with stack.db.session() as s:
            return list(s.scalars(select(Alarm)))

    # Alarms a fault legitimately causes besides its own (a steep overpressure ramp also trips
    # the pressure-rise-rate rule) are listed by the simulator as implied.
    implied = {(r.device_id, t) for r in res.faults for t in r.implied}

    def expected() -> list[Alarm]:
        return [a for a in alarms() if (a.device_id, a.type) not in implied]

    wait_until(lambda: sum(not a.active for a in expected()) >= len(truth), 30, "alarms cleared")
    expected_events = {(d, t, e) for d, t in truth for e in ("raised", "cleared")}
    got = expected()
    assert Counter((a.device_id, a.type) for a in got) == Counter(truth.keys()), [(a.device_id, a.type) for a in got]
    extra = [(a.device_id, a.type) for a in alarms() if a.id not in {g.id for g in got}]
    assert all(x in implied for x in extra), extra
    for a in got:
        t = truth[(a.device_id, a.type)]
        # When the expected (critical) severity was reached: at raising, or by escalation of
        # the same alarm (overpressure passes its "above the maximum working pressure" major rung on the way up).
        with stack.db.session() as s:
            reached = s.scalar(
                select(func.min(AlarmEvent.ts)).where(
                    AlarmEvent.alarm_id == a.id,
                    AlarmEvent.severity == "critical",
                    AlarmEvent.event.in_(("raised", "severity_changed")),
                )
            )
        assert reached is not None, f"{a.type} never reached critical"
        latency = reached - t.onset_ts
        # raised once the rule's configured duration has held, + at most 5 s (device time)
        assert 0 <= latency - DURATION_MS[a.type] <= 5_000, (a.type, latency)
        assert not a.active and a.end_ts is not None and a.end_ts >= t.end_ts - 1_000
        assert a.severity == "critical" and a.firm_id
    def published() -> Counter[tuple[str, str, str]]:
        return Counter(
            (m["device_id"], m["type"], m["event"])
            for m in listener.got
            if m["event"] in ("raised", "cleared") and (m["device_id"], m["type"]) in truth
        )

    wait_until(lambda: set(published()) >= expected_events, 10, "published")
    assert published() == Counter(expected_events)
    with stack.db.session() as s:
        assert s.scalars(select(DeadLetter)).first() is None, "the simulator sends only valid messages"


def check_api(stack: Stack) -> None:
    """The API returns both alarms and the devices' telemetry."""
    tel = stack.telemetry()
    try:
        with TestClient(create_app(stack.settings, db=stack.db, telemetry=tel)) as api:
            body = api.get("/alarms", params={"state": "cleared"}).json()
            assert {(a["device_id"], a["type"]) for a in body["items"]} == {
                ("E000005", "trapped_passenger"),
                ("V000003", "overpressure"),
            }
            assert api.get("/alarms", params={"type": "trapped_passenger"}).json()["total"] == 1
            latest = api.get("/devices/V000003/latest").json()
            assert latest["kind"] == "vessel" and "pressure" in latest["values"]
            now = int(time.time() * 1000)
            r = api.get("/devices/E000005/telemetry", params={"start": now - 3_600_000, "end": now + 1})
            assert r.status_code == 200 and len(r.json()["points"]) > 10
    finally:
        tel.close()


def test_fleet_end_to_end(stack: Stack, tmp_path: Path):
    prepare(stack, tmp_path)
    collector = Collector(stack.settings, stack.db, stack.telemetry())
    collector.start()
    listener = AlarmListener(stack.settings)
    try:
        assert collector.connected.wait(10)
        res = simulate(stack, tmp_path)
        check_exactly_once(stack, res)
        check_alarms(stack, res, listener)
        check_api(stack)
        assert collector.stats["dead_letters"] == 0
    finally:
        listener.close()
        collector.stop()


def _collector_process(stack: Stack, log: Path) -> subprocess.Popen[bytes]:
    s = stack.settings
    env = {
        **os.environ,
        "SEMON_MQTT_URL": s.mqtt_url,
        "SEMON_MQTT_CLIENT_ID": s.mqtt_client_id,
        "SEMON_INFLUX_URL": s.influx_url or "",
        "SEMON_INFLUX_DB": s.influx_db,
        "SEMON_DB_URL": s.db_url,
        "SEMON_DATA_DIR": str(s.data_dir),
        "SEMON_HEALTH_PORT": "0",
    }
    cmd = [sys.executable, "-m", "semon", "collect"]
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_collector_sigkill_mid_run_loses_nothing(stack: Stack, tmp_path: Path):
    prepare(stack, tmp_path)
    log = tmp_path / "collector.log"
    proc = _collector_process(stack, log)
    listener = AlarmListener(stack.settings)
    result: list[SimulationResult] = []
    sim = threading.Thread(target=lambda: result.append(simulate(stack, tmp_path)))
    try:
        # Publish only once the collector holds its persistent session: what is sent before the
        # first subscription reaches nobody (that is MQTT, not a loss by semon).
        wait_until(lambda: "MQTT connected" in log.read_text(), 60, "collector connected")
        time.sleep(1)  # the SUBACK follows the connect
        sim.start()
        time.sleep(4)
        proc.send_signal(signal.SIGKILL)  # mid-run: no chance to flush or ack
        proc.wait(10)
        time.sleep(2)  # the broker keeps queueing for the persistent session meanwhile
        proc = _collector_process(stack, log)
        sim.join(120)
        assert result, "simulation did not finish"
        check_exactly_once(stack, result[0])
        check_alarms(stack, result[0], listener)
    finally:
        listener.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    text = log.read_text()
    assert "Traceback" not in text
    assert "session present: True" in text, "the restarted collector must resume its persistent session"
