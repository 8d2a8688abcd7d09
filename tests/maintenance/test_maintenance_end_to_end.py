"""End to end on real Mosquitto + InfluxDB + PostgreSQL: an elevator on 90-day maintenance gets a
passenger trapped in the simulator → within seconds it is on 15 days with the reason, and its
maintenance firm receives the notice on ``semon/v1/alarms/{firm_id}/{device_id}``."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from semon.ingest.collector import Collector
from semon.rules.maintenance.facts import update_device_facts, update_firm, update_use_unit
from semon.rules.maintenance.policy import load_policy
from semon.rules.maintenance.reversion import install_reversion
from semon.rules.maintenance.service import run_planning
from semon.simulators.fleet import build_fleet
from semon.simulators.run import SimulationConfig, run_simulation
from semon.store.influx import InfluxStore
from semon.store.maintenance import MaintenanceDecision, MaintenancePlan
from semon.store.models import Alarm
from semon.store.registry import import_devices_csv, load_registry
from semon.timeutil import local_date
from tests.conftest import Stack
from tests.helpers import wait_until
from tests.maintenance.test_maintenance_store import history_points

ELEVATORS, VESSELS, SEED = 10, 2, 11
TARGET = "E000005"
POLICY = load_policy()


class FirmListener:
    """The maintenance firm's system: subscribed to its own alarm topics only."""

    def __init__(self, stack: Stack, firm_id: str) -> None:
        host, port = stack.settings.mqtt_endpoint()
        self.messages: list[tuple[str, dict]] = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-firm", protocol=mqtt.MQTTv311)
        self.c.on_message = lambda _c, _u, m: self.messages.append((m.topic, orjson.loads(m.payload)))
        ready = threading.Event()
        self.c.on_subscribe = lambda *_: ready.set()
        self.c.connect(host, port)
        self.c.subscribe(f"semon/v1/alarms/{firm_id}/#", qos=1)
        self.c.loop_start()
        assert ready.wait(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_entrapment_reverts_a_90_day_elevator_within_seconds(stack: Stack, tmp_path: Path):
    fleet = build_fleet(ELEVATORS, VESSELS, SEED)
    fleet.write_registry_csv(tmp_path / "registry.csv")
    import_devices_csv(stack.db, tmp_path / "registry.csv")
    spec = fleet.by_id[TARGET]
    firm = spec.firm.firm_id
    # Live: the simulator publishes now, so this test plans at the real clock, and every date it
    # sets is relative to that one instant (the registry's fixed install years only score the
    # other elevators, which fail the online gate whatever the day).
    now = int(time.time() * 1000)
    today = local_date(now)
    # Registry facts that earn the top tier, and 30 days of healthy history in InfluxDB.
    update_firm(stack.db, firm, {"firm_tech_level": 5, "firm_credit_grade": "A", "firm_credit_score": 98.0})
    update_use_unit(stack.db, spec.use_unit.unit_id, {"use_unit_mgmt_level": 5})
    update_device_facts(stack.db, TARGET, {"commission_date": today - timedelta(days=200),
                                           "inspection_valid_until": today + timedelta(days=160),
                                           "liability_insurance": True})  # fmt: skip
    influx = stack.telemetry()
    assert isinstance(influx, InfluxStore)
    influx.ensure_database()
    influx.write(history_points(load_registry(stack.db), TARGET, now))

    run = run_planning(stack.db, influx, POLICY, at_ms=now)
    target = run.plan.loc[TARGET]
    assert target["mode"] == "on_demand_90", target["reasons"]
    assert target["online_ratio"] > 0.99 and target["health_index"] > 90  # computed by InfluxQL from the history
    assert (run.plan.drop(index=TARGET)["mode"] == "standard_15").all()  # no history: online gate fails
    board = {r["mode"]: r for r in influx.rows(
        'SELECT sum("devices") AS n, sum("due_soon_half_month") AS soon FROM "maintenance_plan" '
        'WHERE "kind" = \'elevator\' GROUP BY "mode"')}  # fmt: skip
    assert {m: r["n"] for m, r in board.items()} == {"on_demand_90": 1, "on_demand_30": 0, "standard_15": ELEVATORS - 1}
    assert board["standard_15"]["soon"] == ELEVATORS - 1  # first planned today: due today

    collector = Collector(stack.settings, stack.db, influx)
    worker = install_reversion(collector, POLICY)
    assert worker is not None
    collector.start()
    listener = FirmListener(stack, firm)
    host, port = stack.settings.mqtt_endpoint()
    sim = threading.Thread(target=run_simulation, args=(SimulationConfig(
        host=host, port=port, elevators=ELEVATORS, vessels=VESSELS, rate=40.0, duration_s=16.0, speed=2.0,
        faults=[f"trapped:{TARGET}@2s+24s"], seed=SEED, client_id="test-sim-maint"),))  # fmt: skip
    try:
        assert collector.connected.wait(10)
        sim.start()

        def plan() -> MaintenancePlan:
            with stack.db.session() as s:
                return s.get(MaintenancePlan, TARGET)

        wait_until(lambda: plan().mode == "standard_15", 40, f"{TARGET} back on 15 days")
        p = plan()
        assert p.interval_days == 15 and p.reverted
        assert p.reasons[0].startswith("reversion: entrapment: trapped_passenger alarm")
        with stack.db.session() as s:
            trapped = s.scalars(select(Alarm).where(Alarm.device_id == TARGET, Alarm.type == "trapped_passenger")).one()
            decision = s.get(MaintenanceDecision, p.decision_id)
        assert decision.trigger == "reversion" and decision.inputs["trigger"]["alarm"]["alarm_id"] == trapped.id
        lag = (decision.decided_at - trapped.created_at).total_seconds()
        assert 0 <= lag < 5, lag  # "within seconds" of the alarm being stored
        print(f"reverted {lag:.3f} s after the trapped-passenger alarm was stored")

        topic = f"semon/v1/alarms/{firm}/{TARGET}"
        wait_until(lambda: any(m["type"] == "maintenance_reverted" for _, m in listener.messages), 10,
                   "the firm's reversion notice")  # fmt: skip
        notices = [(t, m) for t, m in listener.messages if m["type"] == "maintenance_reverted"]
        assert len(notices) == 1
        t, m = notices[0]
        assert t == topic and m["event"] == "raised" and m["firm_id"] == firm
        assert m["details"]["previous_mode"] == "on_demand_90" and m["details"]["mode"] == "standard_15"
        assert "entrapment" in m["details"]["reason"] and m["details"]["cause_alarm_id"] == trapped.id
        assert any(m2["type"] == "trapped_passenger" for t2, m2 in listener.messages if t2 == topic)
    finally:
        sim.join(60)
        listener.close()
        collector.stop()
        worker.stop()
        influx.close()
    # The next planning run keeps it on 15 days, now because of the entrapment gate.
    again = run_planning(stack.db, stack.telemetry(), POLICY)
    assert again.plan.loc[TARGET, "mode"] == "standard_15"
    assert "entrapment" in again.plan.loc[TARGET, "failed_gates"]
