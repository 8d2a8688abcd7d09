"""Rule engine semantics over the data-driven catalog: durations in device time, ladders,
hysteresis, repetition, ordering, timers, terminal codes, offline, overrides, manual clear."""

from __future__ import annotations

from pathlib import Path

import pytest

from semon.contract.messages import DeviceEvent, ElevatorStatus, VesselStatus
from semon.domain import DeviceInfo
from semon.rules.catalog import Catalog, RulesConfigError
from semon.rules.engine import RuleEngine

ELEV = DeviceInfo("E1", "elevator", "Tianhe", "F001", 1.75, 20, 1)
VES = DeviceInfo("V1", "vessel", "Tianhe", "F001", set_pressure=1.6, design_temperature=80.0, design_pressure=1.76)
T0 = 1_764_000_000_000


def elev(ts: int, seq: int, *, trapped: bool = False, **kw: object) -> ElevatorStatus:
    base = dict(
        ts=ts, seq=seq, mode="normal", running=not trapped, dir="stop" if trapped else "up", floor=5,
        door_zone=False, door="closed", occupied=True, speed=0.0 if trapped else 1.5, load=70.0,
        run_count=1, run_hours=1.0,
    )  # fmt: skip
    base.update(kw)
    return ElevatorStatus.model_validate(base, strict=False)


def idle(ts: int, seq: int, **kw: object) -> ElevatorStatus:
    p = dict(running=False, dir="stop", speed=0.0, door_zone=True, occupied=False)
    p.update(kw)
    return elev(ts, seq, **p)


def vessel(ts: int, seq: int, p: float, **kw: object) -> VesselStatus:
    return VesselStatus.model_validate(dict(ts=ts, seq=seq, pressure=p, temperature=20.0 + seq % 7 * 0.1) | kw)


def run(engine: RuleEngine, device: DeviceInfo, msgs: list, wall: int = 0) -> list:
    out = []
    for m in msgs:
        out += engine.evaluate(device, m, wall)
    return out


def kinds(ts: list) -> list[tuple[str, str]]:
    return [(t.event, t.rule.alarm_type) for t in ts]


def test_trapped_fires_after_20s_of_device_time_with_exact_times():
    e = RuleEngine()
    out = run(e, ELEV, [elev(T0 + i * 1000, i + 1, trapped=i >= 3) for i in range(26)])
    assert kinds(out) == [("raised", "trapped_passenger")]
    assert out[0].onset_ts == T0 + 3000 and out[0].ts == T0 + 23_000 and out[0].severity == "critical"
    assert "outside the door zone" in out[0].message and out[0].details["where"] == "outside the door zone"
    out = e.evaluate(ELEV, elev(T0 + 30_000, 40, door="open", running=False, speed=0.0, door_zone=True), 0)
    assert [(t.event, t.ts) for t in out] == [("cleared", T0 + 30_000)]


def test_interrupted_condition_restarts_the_duration():
    e = RuleEngine()
    msgs = [elev(T0 + i * 1000, i + 1, trapped=True, door="open" if i == 15 else "closed") for i in range(40)]
    out = [t for t in run(e, ELEV, msgs) if t.rule.alarm_type == "trapped_passenger"]
    assert len(out) == 1 and out[0].onset_ts == T0 + 16_000 and out[0].ts == T0 + 36_000


def test_duplicates_and_late_messages_do_not_move_state_backwards():
    msgs = [elev(T0 + i * 1000, i + 1, trapped=True) for i in range(25)]
    clean = run(RuleEngine(), ELEV, msgs)
    e2 = RuleEngine()
    noisy = run(e2, ELEV, msgs[:5] + msgs[2:5] + msgs[6:10] + [msgs[5]] + msgs[10:] + msgs[-3:])
    assert [(t.event, t.onset_ts, t.ts) for t in noisy] == [(t.event, t.onset_ts, t.ts) for t in clean]
    assert e2.stale_skipped == 3 + 1 + 3


def test_timer_raises_when_device_goes_quiet():
    e = RuleEngine()
    wall = 5_000_000
    assert e.evaluate(ELEV, elev(T0, 1, trapped=True), wall) == []
    assert e.tick(wall + 19_000) == []
    out = e.tick(wall + 20_100)
    assert kinds(out) == [("raised", "trapped_passenger")] and out[0].ts == T0 + 20_000
    assert e.tick(wall + 30_000) == []


def test_overpressure_ladder_escalates_at_once_and_never_flaps():
    e = RuleEngine()
    seq = 0

    def feed(pressures: list[float]) -> list:
        nonlocal seq
        out = []
        for p in pressures:
            seq += 1
            out += e.evaluate(VES, vessel(T0 + seq * 500, seq, p), 0)
        return out

    # No maximum working pressure on record: 1.6 / 1.05 = 1.524 MPa. 1.45 is 90.6 % of set
    # pressure — normal operation, not an alarm (domain.md §5).
    assert feed([1.2, 1.3, 1.45, 1.52]) == []
    out = feed([1.53])  # above the maximum working pressure
    assert [(t.event, t.severity) for t in out] == [("raised", "major")]
    out = feed([1.61])  # ≥ set pressure: same alarm, escalated
    assert [(t.event, t.severity) for t in out] == [("severity_changed", "critical")]
    # bouncing around the set point: no storm
    assert feed([1.59, 1.61] * 10) == []
    # back on the major rung: de-escalated once it held for the minimum clear time
    out = feed([1.53] * 8)
    assert [(t.event, t.severity) for t in out] == [("severity_changed", "major")]
    # between 97 % of the maximum working pressure (1.478) and it: still active (hysteresis)
    assert feed([1.50] * 8) == []
    out = feed([1.3] * 6)
    assert [(t.event, t.rule.alarm_type) for t in out] == [("cleared", "overpressure")]


def test_valve_discharge_is_critical_even_below_set_pressure():
    out = run(RuleEngine(), VES, [vessel(T0, 1, 1.2, valve_discharge=True)])
    assert [(t.event, t.severity) for t in out] == [("raised", "critical")]


def test_gas_leak_ladder_and_level_band():
    e = RuleEngine()
    out = run(e, VES, [vessel(T0 + i * 1000, i + 1, 1.2, gas_lel=g) for i, g in enumerate([2, 30, 55, 55])])
    assert [(t.event, t.rule.alarm_type, t.severity) for t in out] == [
        ("raised", "gas_leak", "major"),
        ("severity_changed", "gas_leak", "critical"),
    ]
    out = run(
        e,
        VES,
        [vessel(T0 + 10_000 + i * 1000, 10 + i, 1.2, level=lv) for i, lv in enumerate([50, 90, 90, 90, 90, 90, 90])],
    )
    assert ("raised", "level_out_of_band") in kinds(out)


def test_pressure_rise_rate_from_history():
    e = RuleEngine()
    # 0.10 MPa per 30 s = 0.2 MPa/min > 5 % of 1.6 (0.08 MPa/min), below the 90 % rung throughout
    msgs = [vessel(T0 + i * 5000, i + 1, 1.0 + 0.1 * i / 6) for i in range(20)]
    out = run(e, VES, msgs)
    raised = [t for t in out if t.rule.alarm_type == "pressure_rise_rate"]
    assert len(raised) == 1 and raised[0].details["rate_mpa_per_min"] == pytest.approx(0.2, rel=0.01)


def test_stuck_pressure_sensor_while_temperature_moves():
    e = RuleEngine()
    msgs = [VesselStatus(ts=T0 + i * 60_000, seq=i + 1, pressure=1.2, temperature=20 + (i % 5)) for i in range(35)]
    out = run(e, VES, msgs)
    assert kinds(out) == [("raised", "sensor_stuck")] and out[0].ts == T0 + 30 * 60_000


def test_stuck_sensor_raises_on_time_between_sparse_reports():
    e = RuleEngine()
    wall = 50_000_000
    # reports every 7 min: none lands on the 30-min mark; the timer must raise it there
    for i in range(5):
        e.evaluate(
            VES, VesselStatus(ts=T0 + i * 420_000, seq=i + 1, pressure=1.2, temperature=20 + i), wall + i * 420_000
        )
    out = e.tick(wall + 1_800_500)
    assert kinds(out) == [("raised", "sensor_stuck")] and out[0].onset_ts == T0 and out[0].ts == T0 + 1_800_000


def test_inspection_mode_never_raises_trapped():
    out = run(RuleEngine(), ELEV, [elev(T0 + i * 1000, i + 1, trapped=True, mode="inspection") for i in range(40)])
    assert "trapped_passenger" not in {t.rule.alarm_type for t in out}


def test_repeated_door_cycling_counts_openings_without_a_trip():
    e = RuleEngine()
    msgs, seq, ts = [], 0, T0
    for _ in range(5):
        for door in ("opening", "open", "closing", "closed"):
            seq += 1
            ts += 2000
            msgs.append(idle(ts, seq, door=door))
    out = run(e, ELEV, msgs)
    assert kinds(out) == [("raised", "repeated_door_cycling")] and out[0].severity == "minor"
    # four cycles, a trip, four cycles: never five without a trip
    e2 = RuleEngine()
    msgs2 = []
    for c in range(8):
        if c == 4:
            seq += 1
            ts += 2000
            msgs2.append(elev(ts, seq))
        for door in ("opening", "closed"):
            seq += 1
            ts += 2000
            msgs2.append(idle(ts, seq, door=door))
    assert "repeated_door_cycling" not in {t.rule.alarm_type for t in run(e2, ELEV, msgs2)}


def test_run_time_limit_follows_the_shaft():
    # 20 landings × 3 m / 1.75 m/s × 1.5 + 10 s = 61.4 s
    e = RuleEngine()
    out = run(e, ELEV, [elev(T0 + i * 1000, i + 1, occupied=False, speed=0.3) for i in range(70)])
    runs = [t for t in out if t.rule.alarm_type == "run_time_anomaly"]
    assert len(runs) == 1 and runs[0].ts - runs[0].onset_ts == 61_429  # 61.4286 s to the nearest ms


def test_overspeed_uses_the_registry_rated_speed():
    out = run(RuleEngine(), ELEV, [elev(T0, 1, speed=2.0), elev(T0 + 100, 2, speed=2.2)])
    assert kinds(out) == [("raised", "overspeed")]  # 2.2 > 1.2 × 1.75 = 2.1; 2.0 is not


def test_terminal_codes_gbt_and_alternative_scheme():
    e = RuleEngine()
    ev = lambda ts, seq, code, active=True, scheme="gbt24476": DeviceEvent(  # noqa: E731
        ts=ts, seq=seq, code=code, active=active, scheme=scheme
    )
    out = e.evaluate_event(ELEV, ev(T0, 1, 1), 0)
    assert kinds(out) == [("raised", "safety_circuit_open")] and out[0].details["code"] == 1
    assert e.evaluate_event(ELEV, ev(T0 + 1, 2, 90), 0)[0].rule.alarm_type == "alarm_button"
    assert e.evaluate_event(ELEV, ev(T0 + 2, 3, 44), 0) == []  # fire return: a mode event, no alarm
    out = e.evaluate_event(ELEV, ev(T0 + 3, 4, 40), 0)  # back to normal clears every code alarm
    assert sorted(kinds(out)) == [("cleared", "alarm_button"), ("cleared", "safety_circuit_open")]
    out = e.evaluate_event(ELEV, ev(T0 + 4, 5, 13, scheme="platform_b"), 0)
    assert kinds(out) == [("raised", "overshoot_top")] and out[0].rule.id == "code.platform_b.13"
    assert e.evaluate_event(ELEV, ev(T0 + 4, 5, 14, scheme="platform_b"), 0) == []  # duplicate seq


def test_offline_on_timer_cleared_by_the_next_message_and_paused_while_disconnected():
    e = RuleEngine()
    wall = 10_000_000
    e.evaluate(ELEV, idle(T0, 1), wall)
    assert e.tick(wall + 179_000) == []
    out = e.tick(wall + 180_500)
    assert kinds(out) == [("raised", "terminal_offline")] and out[0].severity == "minor"
    assert out[0].onset_ts == T0 and out[0].ts == T0 + 180_000
    assert e.tick(wall + 400_000) == []  # raised once
    out = e.evaluate(ELEV, idle(T0 + 500_000, 2), wall + 500_000)
    assert kinds(out) == [("cleared", "terminal_offline")]
    e.pause_offline()
    assert e.tick(wall + 900_000) == []
    e.resume_offline(wall + 900_000)
    assert e.tick(wall + 1_000_000) == []  # fresh timeout after reconnecting
    # a last will raises at once
    out = e.online(ELEV, False, wall + 1_000_001)
    assert kinds(out) == [("raised", "terminal_offline")]


def test_offline_is_major_when_the_device_was_in_a_fault_state():
    e = RuleEngine()
    e.evaluate_event(ELEV, DeviceEvent(ts=T0, seq=1, code=1), 0)
    assert e.online(ELEV, False, 1000)[0].severity == "major"


def test_manual_clear_re_raises_when_the_condition_still_holds():
    e = RuleEngine()
    run(e, ELEV, [elev(T0 + i * 1000, i + 1, trapped=True) for i in range(22)])
    e.manual_clear("E1", "trapped_passenger")
    out = e.evaluate(ELEV, elev(T0 + 22_000, 23, trapped=True), 0)
    assert kinds(out) == [("raised", "trapped_passenger")]


def test_operator_overrides_per_kind_firm_and_device(tmp_path: Path):
    f = tmp_path / "rules.toml"
    f.write_text(
        """
[rules."elevator.trapped_passenger"]
trigger_for_s = 30
[[overrides]]
rule = "elevator.overspeed"
firm = "F002"
params = { overspeed_ratio = 1.3 }
[[overrides]]
rule = "elevator.trapped_passenger"
device = "E9"
enabled = false
"""
    )
    e = RuleEngine(Catalog(f))
    out = run(e, ELEV, [elev(T0 + i * 1000, i + 1, trapped=True) for i in range(32)])
    assert [t.ts - t.onset_ts for t in out if t.rule.alarm_type == "trapped_passenger"] == [30_000]
    f2 = DeviceInfo("E2", "elevator", "Tianhe", "F002", 1.75, 20, 1)
    assert kinds(run(e, f2, [elev(T0, 1, speed=2.2)])) == []  # 2.2 < 1.3 × 1.75 for firm F002
    e9 = DeviceInfo("E9", "elevator", "Tianhe", "F001", 1.75, 20, 1)
    assert "trapped_passenger" not in {
        t.rule.alarm_type for t in run(e, e9, [elev(T0 + i * 1000, i + 1, trapped=True) for i in range(40)])
    }
    # the registry's own per-device params are the most specific layer
    e3 = DeviceInfo(
        "E3",
        "elevator",
        "Tianhe",
        "F002",
        1.75,
        20,
        1,
        attributes={"rule_params": {"elevator.overspeed": {"overspeed_ratio": 1.1}}},
    )
    assert kinds(run(e, e3, [elev(T0, 1, speed=2.0)])) == [("raised", "overspeed")]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[rules."elevator.nope"]\nenabled = false', "names no rule"),
        ('[rules."elevator.overspeed"]\nparams = { speedy = 2 }', "unknown param"),
        (
            '[[overrides]]\nrule = "elevator.overspeed"\nparams = { overspeed_ratio = 1.3 }',
            "exactly one of kind, firm or device",
        ),
        ("[rules]\nx = 1", "rules.x"),
    ],
)
def test_bad_rules_files_are_refused_with_the_reason(tmp_path: Path, text: str, needle: str):
    f = tmp_path / "rules.toml"
    f.write_text(text)
    with pytest.raises(RulesConfigError, match=needle):
        Catalog(f)


@pytest.mark.parametrize(
    ("when", "needle"),
    [
        ("__import__('os').system('x')", "only abs, min, max, round may be called"),
        ("speed.real > 1", "Attribute is not allowed"),
        ("spede > 1", "unknown name 'spede'"),
        ("speed >", "cannot parse"),
    ],
)
def test_catalog_expressions_are_checked(tmp_path: Path, when: str, needle: str):
    cat = tmp_path / "catalog.toml"
    head = 'version = 1\n[[rule]]\nid = "x"\nkind = "elevator"\nalarm_type = "x"\nmodes = { "*" = "every mode" }\n'
    cat.write_text(head + f'levels = [{{ severity = "minor", when = "{when}" }}]\n')
    with pytest.raises(ValueError, match=needle):
        Catalog(catalog_file=cat)
