"""Rule state stays small: what an idle device costs the engine (issue 17: ≤ 2 kB per device).

The figure itself is measured by ``bench/rule_state_memory.py`` (docs/benchmarks.md); these
tests pin the structure that makes it small, and the bench's own check on a small fleet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from semon.contract.messages import ElevatorStatus, VesselStatus
from semon.domain import DeviceInfo
from semon.rules.engine import NO_DERIVED, RuleEngine, field_names, status_env
from tests.rules.test_rules_engine import ELEV, T0, VES, elev, idle, kinds, vessel

ROOT = Path(__file__).resolve().parents[2]


def test_an_idle_device_holds_no_rule_state_objects():
    e = RuleEngine()
    for k in range(5):
        e.evaluate(ELEV, idle(T0 + k * 30_000, k + 1), T0 + k * 30_000)
    ds = e._devices[ELEV.id]
    assert ds.states and all(st is None for st in ds.states)
    assert ds.recent is None and ds.samples is None and ds.code_alarms is None
    assert ds.derived is NO_DERIVED


def test_a_rule_state_is_freed_when_its_alarm_has_cleared():
    e = RuleEngine()
    out = []
    ts = T0
    for k in range(40):  # a trapped passenger for 40 s: raised after the rule's 20 s
        ts = T0 + k * 1000
        out += e.evaluate(ELEV, elev(ts, k + 1, trapped=True, door_zone=True), ts)
    assert ("raised", "trapped_passenger") in kinds(out)
    seq = 41
    for k in range(1, 90):  # released; idle long enough for every clear time
        seq += 1
        out += e.evaluate(ELEV, idle(ts + k * 1000, seq), ts + k * 1000)
    out += e.tick(ts + 90_000)
    assert ("cleared", "trapped_passenger") in kinds(out)
    assert all(st is None for st in e._devices[ELEV.id].states)


def test_devices_with_the_same_rules_and_attributes_share_their_compiled_rules():
    e = RuleEngine()
    twin = DeviceInfo("E2", "elevator", "Yuexiu", "F002", 1.75, 20, 1)
    other = DeviceInfo("E3", "elevator", "Tianhe", "F001", 1.75, 12, 1)
    for d in (ELEV, twin, other):
        e.evaluate(d, idle(T0, 1), T0)
    rules = {d.id: e._devices[d.id].rules for d in (ELEV, twin, other)}
    assert rules["E1"] is rules["E2"]
    assert rules["E3"] is not rules["E1"] and rules["E3"].attrs["top_floor"] == 12


def test_the_kept_status_names_every_field_in_its_models_order():
    st = idle(T0, 1)
    jumped = st.model_copy(update={"ts": T0 + 5})
    v = vessel(T0, 1, 1.2)
    for model, msg in ((ElevatorStatus, st), (ElevatorStatus, jumped), (VesselStatus, v)):
        assert field_names(model) == tuple(msg.__dict__)
    e = RuleEngine()
    e.evaluate(VES, v, T0)
    assert status_env(e._devices[VES.id]) == v.__dict__


def test_the_memory_bench_finds_at_most_2_kb_per_device():
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "rule_state_memory.py"), "--devices", "5000"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["devices"] == 5000 and 0 < figures["bytes_per_device"] <= 2048
