"""Every fault type of the hazard catalog, checked against an independent reading of the catalog.

The first half is an *oracle*: the conditions of domain.md §4.3 / §5 with their default
thresholds and durations, written separately from ``semon.simulators.faults`` on purpose, so
the simulator's ground truth is checked against the catalog and not against itself. ``detect``
lists the alarms a rule engine with the defaults should raise on one device's message stream.
The second half runs the simulator in-process (``FleetEngine.iter_messages``): normal operation
meets no condition (with margins), each fault type shows exactly where its truth record says and
causes only its own alarm (plus the implied ones), and the mixed scenario scores 100 % / 100 %.
"""

from __future__ import annotations

import collections
import itertools
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from semon.contract.messages import DeviceEvent, ElevatorStatus, VesselStatus
from semon.simulators.engine import FleetEngine
from semon.simulators.faults import FAULT_TYPES, FaultSpec, overlaps, parse_fault_spec
from semon.simulators.fleet import MEDIA, DeviceSpec, Fleet, build_fleet
from semon.simulators.run import SimulationConfig, report_interval_ms, run_simulation
from semon.simulators.scenario import mixed_minimum_ms, mixed_scenario
from semon.simulators.truth import TruthRecord
from tests.simulators.test_simulator import Recorder, sim_broker  # noqa: F401 - the fixture is used by name

Msg = tuple[str, dict[str, Any]]  # (channel, payload) in publication order
Cond = Callable[[dict[str, Any]], bool]

OFFLINE_MS = 180_000  # 3 × 60 s keep-alive


@dataclass(frozen=True)
class Detection:
    """An alarm the stream calls for: its type, condition onset, and highest severity reached."""

    alarm_type: str
    onset_ts: int
    severity: str


def run_limit_ms(spec: DeviceSpec) -> int:
    """max(20 s, 1.5 × landings × 3 m / rated speed + 10 s)."""
    e = spec.elevator
    return round(max(20.0, 1.5 * e.floors * 3.0 / e.rated_speed + 10.0) * 1000)


def elevator_conditions(spec: DeviceSpec) -> dict[str, tuple[Cond, int, str]]:
    """Status conditions of the elevator catalog: alarm type -> (condition, duration ms, severity)."""
    e = spec.elevator
    top = e.labels[-1]

    def stopped(s: dict) -> bool:
        return not s["running"] and s["speed"] < 0.05

    # Service modes where a rule does not apply (domain.md §4.3): technician or firefighters in
    # control; a car out of service is parked by staff.
    no_trap, no_zone = ("inspection", "firefighter"), ("inspection", "firefighter", "out_of_service")
    return {
        "trapped_passenger": (
            lambda s: s["mode"] not in no_trap and stopped(s) and s["door"] == "closed" and s["occupied"],
            20_000,
            "critical",
        ),
        "door_open_while_moving": (lambda s: s["speed"] > 0.1 and s["door"] != "closed", 500, "critical"),
        "overspeed": (lambda s: s["speed"] > 1.2 * e.rated_speed, 0, "critical"),
        "overshoot_top": (lambda s: s["floor"] > top, 0, "critical"),
        "bottom_strike": (lambda s: s["floor"] < e.bottom_floor, 0, "critical"),
        "stopped_outside_door_zone": (
            lambda s: s["mode"] not in no_zone and stopped(s) and not s["door_zone"],
            45_000,
            "major",
        ),
        "safety_circuit_open": (lambda s: 1 in s["faults"], 0, "major"),
        "door_fault": (lambda s: 2 in s["faults"] or 3 in s["faults"], 0, "minor"),
        "alarm_button": (lambda s: s["alarm_button"], 0, "major"),
        "run_time_anomaly": (lambda s: s["running"] and s["mode"] != "inspection", run_limit_ms(spec), "major"),
        "power_lost": (lambda s: s["mode"] == "emergency_power", 0, "major"),
    }


def vessel_conditions(spec: DeviceSpec) -> dict[str, tuple[Cond, int, str]]:
    """Status conditions of the vessel catalog (rate and stuck need history: see ``detect``)."""
    v = spec.vessel
    medium = MEDIA[v.medium]
    out: dict[str, tuple[Cond, int, str]] = {
        "overpressure": (lambda s: s["pressure"] > v.working_pressure or s["valve_discharge"], 0, "major"),
        "over_temperature": (lambda s: s["temperature"] > v.design_temperature, 0, "major"),
        "sensor_out_of_range": (lambda s: s["pressure"] < 0, 0, "minor"),
    }
    if medium.liquefied:
        out["level_out_of_band"] = (lambda s: s["level"] > 85 or s["level"] < 10, 0, "major")
    if medium.flammable:
        out["gas_leak"] = (lambda s: s["gas_lel"] >= 25, 0, "major")
    return out


def intervals(statuses: Sequence[dict], cond: Cond) -> list[tuple[int, int | None]]:
    """Runs of ``cond`` in a status stream: (first ts holding, first ts not holding / None)."""
    out, since = [], None
    for s in statuses:
        if cond(s):
            if since is None:
                since = s["ts"]
        elif since is not None:
            out.append((since, s["ts"]))
            since = None
    if since is not None:
        out.append((since, None))
    return out


def rise_rates(statuses: Sequence[dict], set_pressure: float, window_ms: int = 30_000) -> list[tuple[int, float]]:
    """(ts, rise in × set pressure per minute) from the newest sample at least ``window_ms`` older;
    readings below 0 MPa are invalid (sensor out of range) and take no part."""
    out, hist = [], []
    j = -1
    for s in statuses:
        ts = s["ts"]
        if s["pressure"] < 0:
            continue
        while j + 1 < len(hist) and hist[j + 1][0] <= ts - window_ms:
            j += 1
        if j >= 0:
            t0, p0 = hist[j]
            out.append((ts, (s["pressure"] - p0) / (ts - t0) * 60_000 / set_pressure))
        hist.append((ts, s["pressure"]))
    return out


def door_cycling_onsets(statuses: Sequence[dict], count: int = 5, window_ms: int = 60_000) -> list[int]:
    """ts of each opening that completes ``count`` openings within ``window_ms`` with no run in between."""
    out: list[int] = []
    ops: deque[int] = deque()
    prev = "closed"
    for s in statuses:
        if s["running"]:
            ops.clear()
        elif s["door"] == "opening" and prev != "opening":
            ops.append(s["ts"])
            while ops and ops[0] <= s["ts"] - window_ms:
                ops.popleft()
            if len(ops) >= count:
                out.append(s["ts"])
        prev = s["door"]
    return out


def longest_frozen_ms(statuses: Sequence[dict], key: str = "pressure") -> tuple[int, int | None]:
    """Longest time a value stayed identical (first ts of the value -> last ts with it), and its start."""
    best, start, since, value = 0, None, None, None
    for s in statuses:
        if since is None or s[key] != value:
            since, value = s["ts"], s[key]
        if s["ts"] - since > best:
            best, start = s["ts"] - since, since
    return best, start


def detect(spec: DeviceSpec, messages: Sequence[Msg], end_ts: int | None = None) -> list[Detection]:
    """Alarms the default catalog raises on one device's messages (``end_ts``: when the stream stops)."""
    statuses = [p for ch, p in messages if ch == "status"]
    events = [p for ch, p in messages if ch == "event"]
    found: list[Detection] = []
    if spec.kind == "elevator":
        conds = elevator_conditions(spec)
    else:
        conds = vessel_conditions(spec)
    for alarm, (cond, duration, severity) in conds.items():
        for a, b in intervals(statuses, cond):
            stop = b if b is not None else end_ts if end_ts is not None else statuses[-1]["ts"]
            if stop - a >= duration:
                sev = severity
                if alarm == "overpressure":
                    sp = spec.vessel.set_pressure
                    span = [s for s in statuses if a <= s["ts"] < (b or stop + 1)]
                    if any(s["pressure"] >= sp or s["valve_discharge"] for s in span):
                        sev = "critical"
                if alarm == "gas_leak":
                    span = [s for s in statuses if a <= s["ts"] < (b or stop + 1)]
                    if any(s["gas_lel"] >= 50 for s in span):
                        sev = "critical"
                found.append(Detection(alarm, a, sev))
    if spec.kind == "elevator":
        for ts in door_cycling_onsets(statuses)[:1]:
            found.append(Detection("repeated_door_cycling", ts, "minor"))
        power = [e for e in events if e["code"] == 41 and e["active"]]
        found += [Detection("power_lost", e["ts"], "major") for e in power]
        codes = {1: ("safety_circuit_open", "major"), 2: ("door_fault", "minor"), 90: ("alarm_button", "major")}
        for e in events:
            if e["code"] in codes and e["active"]:
                alarm, sev = codes[e["code"]]
                if not any(d.alarm_type == alarm and d.onset_ts == e["ts"] for d in found):
                    found.append(Detection(alarm, e["ts"], sev))
    else:
        sp = spec.vessel.set_pressure
        rates = [ts for ts, r in rise_rates(statuses, sp) if r > 0.05]
        if rates:
            found.append(Detection("pressure_rise_rate", rates[0], "major"))
        frozen, start = longest_frozen_ms(statuses)
        if frozen >= 30 * 60_000:
            found.append(Detection("sensor_stuck", start, "minor"))
    # Offline: a silence longer than 3 keep-alives, or a last will.
    ts_all = [p["ts"] for _, p in messages]
    for a, b in itertools.pairwise(ts_all):
        if b - a > OFFLINE_MS:
            found.append(Detection("terminal_offline", a, "minor"))
    for ch, p in messages:
        if ch == "online" and not p["online"]:
            found.append(Detection("terminal_offline", p["ts"], "minor"))
    return found


# ================================================================================== tests
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR_MS = 3_600_000
KEEPALIVE_MS = 60_000
MODELS = {"elevator": ElevatorStatus, "vessel": VesselStatus}
CATALOG = {  # fault type -> (alarm type, severity), as the brief's catalog says
    "trapped": ("trapped_passenger", "critical"),
    "door_open_moving": ("door_open_while_moving", "critical"),
    "overspeed": ("overspeed", "critical"),
    "overshoot_top": ("overshoot_top", "critical"),
    "bottom_strike": ("bottom_strike", "critical"),
    "stuck_outside_zone": ("stopped_outside_door_zone", "major"),
    "safety_circuit": ("safety_circuit_open", "major"),
    "power_loss": ("power_lost", "major"),
    "door_fault": ("door_fault", "minor"),
    "door_cycling": ("repeated_door_cycling", "minor"),
    "alarm_button": ("alarm_button", "major"),
    "run_overtime": ("run_time_anomaly", "major"),
    "offline": ("terminal_offline", "minor"),
    "offline_lwt": ("terminal_offline", "minor"),
    "overpressure": ("overpressure", "critical"),
    "near_overpressure": ("overpressure", "major"),
    "valve_discharge": ("overpressure", "critical"),
    "overtemperature": ("over_temperature", "major"),
    "pressure_surge": ("pressure_rise_rate", "major"),
    "glitch_surge": ("pressure_rise_rate", "major"),
    "pressure_at_limit": ("overpressure", "critical"),
    "gas_at_threshold": ("gas_leak", "major"),
    "level_high": ("level_out_of_band", "major"),
    "level_low": ("level_out_of_band", "major"),
    "gas_leak": ("gas_leak", "major"),
    "gas_leak_severe": ("gas_leak", "critical"),
    "sensor_stuck": ("sensor_stuck", "minor"),
    "sensor_out_of_range": ("sensor_out_of_range", "minor"),
}


def run_streams(engine: FleetEngine, duration_ms: int) -> dict[str, list[Msg]]:
    """All messages per device id, in publication order (the in-process fast path)."""
    out: dict[str, list[Msg]] = collections.defaultdict(list)
    last = 0
    for _kind, device, channel, payload in engine.iter_messages(duration_ms):
        assert payload["ts"] >= last, "device-time order"
        last = payload["ts"]
        out[device].append((channel, payload))
    return out


def statuses_of(msgs: Sequence[Msg]) -> list[dict]:
    return [p for ch, p in msgs if ch == "status"]


def check_contract(kind: str, msgs: Sequence[Msg], every: int = 1) -> None:
    """Seqs 1..n per channel, ts strictly increasing per channel, payloads pass the strict models."""
    for channel, model in (("status", MODELS[kind]), ("event", DeviceEvent)):
        payloads = [p for ch, p in msgs if ch == channel]
        assert [p["seq"] for p in payloads] == list(range(1, len(payloads) + 1)), channel
        assert all(b["ts"] > a["ts"] for a, b in itertools.pairwise(payloads)), channel
        for p in payloads[::every]:
            model.model_validate_json(orjson.dumps(p))


# ---------------------------------------------------------------------- normal operation
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_normal_operation_never_meets_a_catalog_condition(seed):
    """Hours of normal operation, with margins: no catalog condition comes close to holding."""
    fleet = build_fleet(20, 16, seed=seed)
    engine = FleetEngine(fleet, start_ms=START_MS, report_interval_ms=KEEPALIVE_MS)
    hours = 2
    streams = run_streams(engine, hours * HOUR_MS)
    end = START_MS + hours * HOUR_MS
    assert engine.event_messages == 0 and engine.truth == []
    for spec in fleet.devices:
        msgs = streams[spec.device_id]
        assert detect(spec, msgs, end) == [], spec.device_id
        ss = statuses_of(msgs)
        check_contract(spec.kind, msgs, every=50)
        ts = [s["ts"] for s in ss]
        assert ts[0] - START_MS <= KEEPALIVE_MS and end - ts[-1] <= KEEPALIVE_MS
        assert max(b - a for a, b in itertools.pairwise(ts)) <= KEEPALIVE_MS, "keep-alive"
        if spec.kind == "elevator":
            conds = elevator_conditions(spec)
            e = spec.elevator
            assert all(e.bottom_floor <= s["floor"] <= e.labels[-1] and s["floor"] in e.labels for s in ss)
            assert max(s["speed"] for s in ss) <= e.rated_speed
            assert not any(s["faults"] or s["alarm_button"] or s["mode"] != "normal" for s in ss)
            for name, limit in (
                ("trapped_passenger", 2_000),
                ("stopped_outside_door_zone", 0),
                ("door_open_while_moving", 0),
                ("run_time_anomaly", run_limit_ms(spec) - 15_000),
            ):
                for a, b in intervals(ss, conds[name][0]):
                    assert (b or end) - a <= limit, (spec.device_id, name, a, b)
            # At most two openings between trips (arrival, then a call at the same landing).
            assert door_cycling_onsets(ss, count=3) == []
        else:
            v = spec.vessel
            assert max(s["pressure"] for s in ss) <= v.working_pressure  # normal working pressure
            assert min(s["pressure"] for s in ss) > 0
            assert max(r for _, r in rise_rates(ss, v.set_pressure)) < 0.025, "rate well under 5 %/min"
            assert max(s["temperature"] for s in ss) <= v.design_temperature - 10
            assert not any(s["valve_discharge"] for s in ss)
            levels = [s["level"] for s in ss if s["level"] is not None]
            assert not levels or (15 <= min(levels) and max(levels) <= 80)
            gas = [s["gas_lel"] for s in ss if s["gas_lel"] is not None]
            assert not gas or max(gas) < 5
            assert longest_frozen_ms(ss)[0] < 10 * 60_000, "pressure changes every few minutes"


# ------------------------------------------------------------------------- every fault type
def raw_condition(name: str, spec: DeviceSpec) -> Cond | None:
    """The rule condition a fault type must satisfy, without its duration (None: not a status test)."""
    if spec.kind == "elevator":
        c = {k: v[0] for k, v in elevator_conditions(spec).items()}
        return {
            "trapped": c["trapped_passenger"],
            "door_open_moving": c["door_open_while_moving"],
            "overspeed": c["overspeed"],
            "overshoot_top": c["overshoot_top"],
            "bottom_strike": c["bottom_strike"],
            "stuck_outside_zone": c["stopped_outside_door_zone"],
            "safety_circuit": c["safety_circuit_open"],
            "door_fault": c["door_fault"],
            "alarm_button": c["alarm_button"],
            "run_overtime": c["run_time_anomaly"],
        }.get(name)
    v = spec.vessel
    return {
        "overpressure": lambda s: s["pressure"] >= v.set_pressure,
        "near_overpressure": lambda s: s["pressure"] > v.working_pressure,
        "valve_discharge": lambda s: s["valve_discharge"],
        "overtemperature": lambda s: s["temperature"] > v.design_temperature,
        "level_high": lambda s: s["level"] > 85,
        "level_low": lambda s: s["level"] < 10,
        "gas_leak": lambda s: s["gas_lel"] >= 25,
        "gas_leak_severe": lambda s: s["gas_lel"] >= 25,
        "gas_at_threshold": lambda s: s["gas_lel"] >= 25,
        "pressure_at_limit": lambda s: s["pressure"] >= v.set_pressure,
        "sensor_out_of_range": lambda s: s["pressure"] < 0,
    }.get(name)


def check_truth_against_data(rec: TruthRecord, spec: DeviceSpec, fs: FaultSpec, msgs: Sequence[Msg]) -> None:
    """``onset_ts`` / ``end_ts`` are exactly where the catalog condition begins / ends in the published data."""
    ss = statuses_of(msgs)
    start, stop = START_MS + fs.onset_ms, START_MS + fs.end_ms
    cond = raw_condition(rec.fault, spec)
    if cond is not None:
        before = [s for s in ss if s["ts"] < rec.onset_ts]
        inside = [s for s in ss if rec.onset_ts <= s["ts"] < rec.end_ts]
        after = next(s for s in ss if s["ts"] >= rec.end_ts)
        assert inside and all(cond(s) for s in inside)
        assert not cond(before[-1]) and after["ts"] == rec.end_ts and not cond(after)
        assert start - 1_000 <= rec.onset_ts and rec.end_ts <= stop + FAULT_TYPES[rec.fault].settle_ms
        if rec.fault in ("door_open_moving", "overspeed"):  # one episode on one trip, then normal
            # ``hold`` long unless the trip is too short for it (a low building, a fast car), but
            # always beyond the rule's minimum (0.5 s door open while moving, 1 s overspeed).
            held = rec.end_ts - rec.onset_ts
            assert (500 if rec.fault == "door_open_moving" else 1_000) < held <= rec.details["hold"] + 1_000
        else:  # the condition lasts the whole fault window
            assert stop <= rec.end_ts
        if rec.fault == "run_overtime":
            assert rec.end_ts - rec.onset_ts > run_limit_ms(spec)
    elif rec.fault == "power_loss":
        evs = [(p["code"], p["active"], p["ts"]) for ch, p in msgs if ch == "event"]
        assert evs == [(41, True, rec.onset_ts), (40, True, rec.end_ts)] and rec.end_ts == stop
    elif rec.fault in ("offline", "offline_lwt"):
        ts = [p["ts"] for _, p in msgs]
        assert [t for t in ts if rec.onset_ts < t < rec.end_ts] == [] and rec.end_ts == stop
        assert rec.onset_ts in ts and start - KEEPALIVE_MS <= rec.onset_ts < stop
        if spec.kind == "elevator":  # silent only from an idle car: its last report says so
            last = [s for s in ss if s["ts"] <= rec.onset_ts][-1]
            assert not last["running"] and not last["occupied"] and last["door_zone"]
        flags = [(p["online"], p["ts"]) for ch, p in msgs if ch == "online"]
        assert flags == ([(False, rec.onset_ts), (True, stop)] if rec.fault == "offline_lwt" else [])
    elif rec.fault == "door_cycling":
        assert rec.onset_ts == door_cycling_onsets(ss)[0]
        opening = [s["ts"] for a, s in itertools.pairwise(ss) if s["door"] == "opening" and a["door"] != "opening"]
        last = max(t for t in opening if t < rec.end_ts)
        run = next((s["ts"] for s in ss if s["ts"] > last and s["running"]), None)
        assert rec.end_ts == min(last + 60_000, run or last + 60_000) and rec.details["openings"] >= 5
        assert last >= stop - 8_000, "cycling lasts the whole fault"
    elif rec.fault in ("pressure_surge", "glitch_surge"):
        rates = rise_rates(ss, spec.vessel.set_pressure)
        first = next(ts for ts, r in rates if r > 0.05)
        assert rec.onset_ts == first
        assert rec.end_ts == next(ts for ts, r in rates if ts > first and r <= 0.05)
        assert rec.end_ts - rec.onset_ts >= 60_000
        assert max(s["pressure"] for s in ss) < max(0.88 * spec.vessel.set_pressure, spec.vessel.working_pressure)
        during = [s["ts"] for s in ss if start <= s["ts"] <= stop]
        assert max(b - a for a, b in itertools.pairwise(during)) <= 5_000, "reports every 5 s"
    elif rec.fault == "sensor_stuck":
        frozen, since = longest_frozen_ms(ss)
        assert since == rec.onset_ts and frozen >= 30 * 60_000
        first_change = next(
            s["ts"] for s in ss if s["ts"] > rec.onset_ts and s["pressure"] != rec.details["frozen_pressure"]
        )
        assert rec.end_ts == first_change
        temps = {s["temperature"] for s in ss if rec.onset_ts <= s["ts"] < rec.end_ts}
        assert len(temps) > 10, "temperature keeps moving"
    else:
        raise AssertionError(f"no check for {rec.fault}")


FAULT_CASES = [(name, ()) for name in FAULT_TYPES] + [
    ("trapped", ("where=landing",)),
    ("trapped", ("where=between",)),
    ("gas_leak", ("peak=45",)),
    ("overspeed", ("factor=1.5", "hold=2s")),
]


@pytest.mark.parametrize(("name", "opts"), FAULT_CASES, ids=lambda x: ",".join(x) if isinstance(x, tuple) else x)
@pytest.mark.parametrize("seed", [1, 2])
def test_each_fault_type_shows_in_the_data_exactly_as_the_truth_says(name, opts, seed):
    fleet = build_fleet(6, 10, seed=seed)
    cls = FAULT_TYPES[name]
    device = [d for d in fleet.devices if cls.check_device(d) is None][seed]
    args = dict(o.split("=") for o in opts)
    dur = cls.scenario_duration_ms(device, args)
    onset = 90_000 + 7_300 * seed  # the car / vessel is somewhere in its cycle
    fs = parse_fault_spec(f"{name}:{device.device_id}@{onset}ms+{dur}ms" + "".join("," + o for o in opts), fleet)
    engine = FleetEngine(fleet, start_ms=START_MS, report_interval_ms=KEEPALIVE_MS, faults=[fs])
    total = onset + dur + cls.settle_ms + 180_000
    streams = run_streams(engine, total)
    [rec] = engine.finish()
    alarm, severity = CATALOG[name]
    if name == "gas_leak" and args:
        severity = "major"
    assert (rec.device_id, rec.kind, rec.fault, rec.alarm_type, rec.severity) == (
        device.device_id, device.kind, name, alarm, severity,
    )  # fmt: skip
    assert rec.onset_ts is not None and rec.end_ts is not None and rec.onset_ts < rec.end_ts
    msgs = streams[device.device_id]
    check_contract(device.kind, msgs)
    check_truth_against_data(rec, device, fs, msgs)
    # What a rule engine with the catalog defaults raises: this alarm, at the truth's onset, and
    # otherwise only the implied ones; nothing at all on the other devices.
    found = detect(device, msgs, START_MS + total)
    assert {d.alarm_type for d in found} <= {alarm, *rec.implied}, (found, rec.implied)
    mine = [d for d in found if d.alarm_type == alarm]
    assert (mine and max(d.severity for d in mine) == severity) or severity in {d.severity for d in mine}
    if alarm == "overpressure":
        assert mine[0].onset_ts <= rec.onset_ts  # the 90 % rung shows first
    else:
        assert mine[0].onset_ts == rec.onset_ts
    for other in fleet.devices:
        if other is not device:
            assert detect(other, streams[other.device_id], START_MS + total) == [], other.device_id


def test_trap_variants_stop_where_asked():
    fleet = build_fleet(4, 0, seed=5)
    specs = [
        parse_fault_spec("trapped:E000001@60s+60s,where=landing", fleet),
        parse_fault_spec("trapped:E000002@60s+100s,where=between", fleet),
    ]
    engine = FleetEngine(fleet, start_ms=START_MS, report_interval_ms=KEEPALIVE_MS, faults=specs)
    run_streams(engine, 400_000)
    recs = {r.device_id: r for r in engine.finish() + engine.truth}
    assert recs["E000001"].details["door_zone"] is True and recs["E000001"].implied == ()
    between = recs["E000002"]
    assert between.details["door_zone"] is False and between.implied == ("stopped_outside_door_zone",)
    assert between.end_ts - between.onset_ts >= 45_000


# -------------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gas_leak:V000001@1s", "needs a flammable medium"),
        ("level_high:V000001@1s", "needs a liquefied medium"),
        ("gas_leak:V000002@1s,peak=50", r"ambiguous between major and critical"),
        ("gas_leak:V000002@1s,pressure=3", r"unknown option 'pressure=3' for gas_leak \(options: peak\)"),
        ("trapped:E000001@1s,where=roof", "option where=roof: expected one of any, landing, between"),
        ("door_open_moving:E000001@1s,hold=9s", r"expected a time in \[2s, 5s\]"),
        ("sensor_stuck:V000002@1s+20m", "duration must be at least 1860s"),
        ("run_overtime:E000001@1s+30s", r"needs at least \d+s \(run limit \+ 15s\)"),
        ("offline:X1@1s", "not in the fleet"),
    ],
)
def test_fault_options_and_devices_are_validated(text, message):
    fleet = _media_fleet()
    with pytest.raises(ValueError, match=message):
        parse_fault_spec(text, fleet)


def _media_fleet() -> Fleet:
    """A fleet whose V000001 holds nitrogen (not flammable, not liquefied) and V000002 LPG."""
    for seed in range(1, 200):
        fleet = build_fleet(2, 2, seed=seed)
        if [d.vessel.medium for d in fleet.devices[2:]] == ["nitrogen", "LPG"]:
            return fleet
    raise AssertionError("no such fleet")


def test_fault_options_and_defaults_parse():
    fleet = _media_fleet()
    s = parse_fault_spec("gas_leak_severe:V000002@2m,peak=70", fleet)
    assert (s.onset_ms, s.duration_ms, s.params) == (
        120_000,
        FAULT_TYPES["gas_leak_severe"].default_duration_ms,
        (("peak", "70"),),
    )
    assert parse_fault_spec("offline:V000001@10s", fleet).duration_ms == 240_000
    assert parse_fault_spec("offline:E000001@10s+3m", fleet).duration_ms == 180_000
    assert parse_fault_spec("sensor_stuck:V000001@0s", fleet).duration_ms == 40 * 60_000


# ---------------------------------------------------------------------------- the scenario
def test_mixed_scenario_is_seeded_spread_and_respects_devices():
    fleet = build_fleet(200, 60, seed=4)
    horizon = 4 * HOUR_MS
    a = mixed_scenario(fleet, horizon_ms=horizon, per_type=3, seed=9)
    assert a == mixed_scenario(fleet, horizon_ms=horizon, per_type=3, seed=9)
    assert a != mixed_scenario(fleet, horizon_ms=horizon, per_type=3, seed=10)
    by_type = collections.Counter(s.fault for s in a)
    assert by_type == {name: 3 for name in FAULT_TYPES}
    for s in a:
        cls = FAULT_TYPES[s.fault]
        assert cls.check_device(fleet.by_id[s.device_id]) is None
        assert 120_000 <= s.onset_ms and s.end_ms + cls.settle_ms <= horizon - 300_000
    for x, y in itertools.combinations(a, 2):
        assert x.device_id != y.device_id or not overlaps(x, y)
    # Spread: each type's faults start in different thirds of the usable time.
    for name in FAULT_TYPES:
        onsets = sorted(s.onset_ms for s in a if s.fault == name)
        assert onsets[0] < onsets[1] < onsets[2] and onsets[2] - onsets[0] > horizon / 3
    assert {dict(s.params).get("where") for s in a if s.fault == "trapped"} == {"landing", "between"}
    assert {fleet.by_id[s.device_id].kind for s in a if s.fault == "offline"} == {"elevator", "vessel"}
    with pytest.raises(ValueError, match=r"needs at least \d+\.\d min of device time"):
        mixed_scenario(fleet, horizon_ms=30 * 60_000)
    assert mixed_minimum_ms(fleet, ["trapped"]) < 10 * 60_000


def test_mixed_scenario_run_recall_and_precision_in_process():
    """Every injected fault is visible where the truth says; every catalog alarm is explained by one."""
    fleet = build_fleet(60, 30, seed=6)
    horizon = mixed_minimum_ms(fleet) + 10 * 60_000
    specs = mixed_scenario(fleet, horizon_ms=horizon, per_type=1, seed=2)
    engine = FleetEngine(fleet, start_ms=START_MS, report_interval_ms=KEEPALIVE_MS, faults=specs)
    t0 = time.perf_counter()
    streams = run_streams(engine, horizon)
    elapsed = time.perf_counter() - t0
    truth = engine.finish() and engine.truth
    assert len(truth) == len(specs) == len(FAULT_TYPES)
    by_device = collections.defaultdict(list)
    for r in truth:
        assert r.onset_ts is not None and r.end_ts is not None, r
        assert (r.alarm_type, r.severity) == CATALOG[r.fault]
        by_device[r.device_id].append(r)
    end = START_MS + horizon
    for spec in fleet.devices:
        found = detect(spec, streams[spec.device_id], end)
        recs = by_device.get(spec.device_id, [])
        for d in found:  # precision: explained by a fault on this device (implied ones: within its window)
            assert any(
                (d.alarm_type == r.alarm_type and r.onset_ts - 1_000 <= d.onset_ts <= r.end_ts)
                or (d.alarm_type in r.implied and r.details["scheduled_ts"][0] <= d.onset_ts <= r.end_ts + 60_000)
                for r in recs
            ), (spec.device_id, d, recs)
        for r in recs:  # recall: the fault's own alarm at its onset
            assert any(d.alarm_type == r.alarm_type and d.onset_ts <= r.onset_ts for d in found), (r, found)
    assert elapsed < 30


# ------------------------------------------------------------------------ engine and run
def test_events_have_their_own_seq_and_come_before_the_status():
    fleet = build_fleet(3, 1, seed=2)
    specs = [
        parse_fault_spec("alarm_button:E000001@10s+20s", fleet),
        parse_fault_spec("safety_circuit:E000002@10s+200s", fleet),
        parse_fault_spec("safety_circuit:E000002@5m+30s", fleet),
    ]
    engine = FleetEngine(fleet, start_ms=START_MS, report_interval_ms=KEEPALIVE_MS, faults=specs)
    msgs = []
    for _ in range(400_000 // 100):
        msgs += engine.step_messages()
    e1 = [(ch, p) for i, ch, p in msgs if i == 0]
    k = next(j for j, (ch, _) in enumerate(e1) if ch == "event")
    assert e1[k][1]["code"] == 90 and e1[k + 1][0] == "status" and e1[k + 1][1]["alarm_button"]
    assert e1[k][1]["ts"] == e1[k + 1][1]["ts"]
    ev2 = [p for i, ch, p in msgs if i == 1 and ch == "event"]
    assert [(p["seq"], p["code"], p["active"]) for p in ev2] == [
        (1, 1, True),
        (2, 1, False),
        (3, 1, True),
        (4, 1, False),
    ]
    assert engine.last_event_seq() == {"E000001": 1, "E000002": 4, "E000003": 0, "V000001": 0}
    assert engine.event_messages == 5
    assert engine.step() is not None  # statuses only (events of the step dropped)


def test_report_interval_is_keepalive_unless_rate_asks_for_more():
    assert report_interval_ms(1200, 0, 60, 60) == 60_000  # keep-alive only
    assert report_interval_ms(1200, 50, 60, 60) == 60_000  # rate would be 1440 s: keep-alive wins
    assert report_interval_ms(30, 300, 1, 60) == 100  # rate asks for more
    assert report_interval_ms(30, 300, 5, 2) == 500


def test_truth_record_json_fields():
    r = TruthRecord("E1", "elevator", "trapped", "trapped_passenger", 1, 2, {"door_zone": False}, "critical",
                    ("stopped_outside_door_zone",))  # fmt: skip
    d = orjson.loads(orjson.dumps(r.as_dict()))
    assert list(d) == [
        "device_id",
        "kind",
        "fault",
        "alarm_type",
        "severity",
        "onset_ts",
        "end_ts",
        "implied",
        "details",
    ]
    assert d["implied"] == ["stopped_outside_door_zone"] and d["severity"] == "critical"


def test_run_simulation_rejects_bad_scenarios_before_connecting():
    with pytest.raises(ValueError, match="needs a duration"):
        run_simulation(SimulationConfig(port=1, scenario="mixed"))
    with pytest.raises(ValueError, match="unknown scenario"):
        run_simulation(SimulationConfig(port=1, scenario="chaos", duration_s=10))
    with pytest.raises(ValueError, match="min of device time"):
        run_simulation(SimulationConfig(port=1, scenario="mixed", duration_s=10, speed=1))


@pytest.mark.services
def test_run_simulation_publishes_events_and_last_wills(sim_broker, tmp_path):  # noqa: F811
    rec = Recorder(sim_broker)
    try:
        cfg = SimulationConfig(
            port=sim_broker, elevators=4, vessels=2, rate=0, keepalive_s=10, duration_s=3, speed=20, seed=3,
            faults=["alarm_button:E000001@5s+10s", "safety_circuit:E000002@5s+20s", "offline_lwt:V000001@5s+30s",
                    "door_fault:E000003@20s+15s"],
            client_id="test-sim-events", truth_path=tmp_path / "truth.jsonl",
        )  # fmt: skip
        res = run_simulation(cfg)
        deadline = time.monotonic() + 15
        while rec.count("event") < res.total_events and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        rec.close()
    assert res.all_acked and res.total_events == sum(res.per_device_events.values()) == 5
    got = {d: [orjson.loads(p) for p in v] for (d, ch), v in rec.got.items() if ch == "event"}
    assert {d: len(v) for d, v in got.items()} == {d: n for d, n in res.per_device_events.items() if n}
    for evs in got.values():
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
        for e in evs:
            DeviceEvent.model_validate(e)
    assert rec.got[("V000001", "online")] == [b"1", b"0", b"1"] and res.online_messages == 6 + 2
    statuses = [orjson.loads(p) for p in rec.got[("V000001", "status")]]
    assert len(statuses) == res.per_device["V000001"]
    lines = [orjson.loads(x) for x in (tmp_path / "truth.jsonl").read_bytes().splitlines()]
    assert {x["fault"] for x in lines} == {"alarm_button", "safety_circuit", "offline_lwt", "door_fault"}
    assert all(x["onset_ts"] and x["end_ts"] for x in lines)
    assert sorted(res.fault_specs) == sorted(cfg.faults)
    assert re.fullmatch(r"[a-z_]+:\w+@.*", res.fault_specs[0])


@pytest.mark.services
def test_cli_simulate_scenario_options(sim_broker, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from semon.cli import app

    truth = tmp_path / "truth.jsonl"
    args = [
        "simulate", "--mqtt-url", f"mqtt://127.0.0.1:{sim_broker}", "--elevators", "30", "--vessels", "20",
        "--duration", "4", "--speed", "225", "--rate", "0", "--keepalive", "60", "--scenario", "mixed",
        "--per-type", "1", "--scenario-types", "alarm_button,gas_leak", "--fault", "safety_circuit:E000001@1m+2m",
        "--truth", str(truth), "--device-time",  # every scheduled fault happens, however loaded the machine
    ]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert re.search(r"published [\d,]+ status and [1-9][\d,]* event messages from 50 devices", r.output)
    faults = sorted(orjson.loads(x)["fault"] for x in truth.read_bytes().splitlines())
    assert faults == ["alarm_button", "gas_leak", "safety_circuit"]
    bad = CliRunner().invoke(app, [*args[:3], "--scenario", "mixed", "--duration", "1", "--speed", "1"])
    assert bad.exit_code == 2 and "min of device time" in bad.output
