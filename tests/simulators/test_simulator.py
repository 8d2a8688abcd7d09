"""Fleet simulator: device models, fault specs and injection, ground truth, fleet / registry, and
one run against a real Mosquitto (skipped without the binary unless SEMON_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import collections
import csv
import itertools
import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from semon.contract.messages import ElevatorStatus, VesselStatus
from semon.simulators.elevator import Elevator, Phase, floor_labels
from semon.simulators.engine import FleetEngine
from semon.simulators.faults import FAULT_TYPES, parse_fault_spec, parse_fault_specs
from semon.simulators.fleet import MEDIA, REGISTRY_COLUMNS, build_fleet
from semon.simulators.run import SimulationConfig, run_simulation
from semon.simulators.truth import TruthRecord, TruthWriter
from semon.simulators.vessel import Vessel

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR_MS = 3_600_000
MODELS = {"elevator": ElevatorStatus, "vessel": VesselStatus}


def trapped_like(s: dict) -> bool:
    """The trapped-passenger rule's condition (rules/builtin.py)."""
    return not s["running"] and s["speed"] < 0.05 and s["door"] == "closed" and s["occupied"]


def validate(kind: str, status: dict) -> None:
    """As the collector does: JSON in, strict contract model."""
    MODELS[kind].model_validate_json(orjson.dumps(status))


def run_engine(engine: FleetEngine, duration_ms: int) -> dict[int, list[dict]]:
    """Step ``engine`` for ``duration_ms`` of device time; published statuses per device index."""
    out: dict[int, list[dict]] = collections.defaultdict(list)
    for _ in range(duration_ms // engine.step_ms):
        for i, s in engine.step():
            out[i].append(s)
    return out


def longest_run(statuses: list[dict], cond: object) -> int:
    """Longest time (ms) ``cond`` holds in a published stream, first ts holding -> first ts not."""
    longest, since = 0, None
    for s in statuses:
        if cond(s):  # type: ignore[operator]
            since = s["ts"] if since is None else since
            longest = max(longest, s["ts"] - since)
        elif since is not None:
            longest = max(longest, s["ts"] - since)
            since = None
    return longest


# --------------------------------------------------------------------------- device models
@pytest.mark.parametrize(("bottom", "floors", "rated"), [(1, 6, 1.0), (-2, 40, 2.5), (-1, 20, 1.75), (1, 12, 1.5)])
def test_elevator_two_hours_of_normal_operation_stay_healthy(bottom, floors, rated):
    labels = floor_labels(bottom, floors)
    e = Elevator("E1", labels, rated, random.Random(floors), START_MS, mean_call_gap_ms=20_000)
    now, since, worst, floors_seen, statuses = START_MS, None, 0, set(), []
    while now < START_MS + 2 * HOUR_MS:
        now += 100
        e.advance(now)
        s = e.status(now, 1)
        if trapped_like(s):
            since = now if since is None else since
            worst = max(worst, now - since)
        else:
            since = None
        assert s["running"] or s["door_zone"], "stopped outside the door zone"
        assert not s["running"] or s["door"] == "closed", "moving with doors not closed"
        assert 0 <= s["speed"] <= rated
        assert (s["dir"] == "stop") is (not s["running"])
        assert s["floor"] in labels
        floors_seen.add(s["floor"])
        if now % 60_000 == 0:
            statuses.append(s)
    assert worst < 10_000
    assert e.run_count > 50 and 0.1 < e.run_hours < 2.0
    assert len(floors_seen) > len(labels) // 2
    for s in statuses:
        validate("elevator", s)


def test_floor_labels_skip_zero():
    assert floor_labels(-2, 5) == [-2, -1, 1, 2, 3]
    assert floor_labels(1, 3) == [1, 2, 3]


def test_elevator_door_cycle_and_travel_profile():
    e = Elevator("E1", floor_labels(1, 20), 1.75, random.Random(3), 0, mean_call_gap_ms=5_000)
    phases, speeds = [], []
    for t in range(100, 120_000, 100):
        e.advance(t)
        if not phases or phases[-1] != e.phase:
            phases.append(e.phase)
        if e.running:
            speeds.append(e.speed)
    # A full boarding cycle appears in order: opening -> open -> closing -> start -> travel.
    cycle = [Phase.OPENING, Phase.OPEN_EXCHANGE, Phase.OPEN_HOLD, Phase.CLOSING, Phase.START, Phase.TRAVEL]
    text = ",".join(p.name for p in phases)
    assert ",".join(p.name for p in cycle) in text
    assert max(speeds) == pytest.approx(1.75) and min(speeds) < 0.5  # ramps up and down


def test_vessels_stay_in_normal_bands_over_any_gaps():
    rng = random.Random(5)
    for name, medium in MEDIA.items():
        # a realistic working pressure: set 1.6 MPa = 1.08 × a maximum working pressure of 1.48
        v = Vessel(
            "V1", 1.6, 30.0, rng, 0, liquefied=medium.liquefied, flammable=medium.flammable, working_pressure=1.48
        )
        t, seen = 0, []
        for _ in range(3000):
            t += rng.choice((100, 2000, 60_000, HOUR_MS))
            v.advance(t)
            s = v.status(t, 1)
            seen.append(s["pressure"])
            assert 0.80 * 1.48 - 1e-9 <= s["pressure"] <= 0.98 * 1.48 + 1e-9, name  # below the maximum
            assert (s["level"] is None) is (not medium.liquefied)
            assert s["level"] is None or 20 <= s["level"] <= 80
            assert (s["gas_lel"] is None) is (not medium.flammable)
            assert s["gas_lel"] is None or 0 <= s["gas_lel"] <= 3
            assert s["valve_discharge"] is False
            assert abs(s["temperature"] - 30.0) < 8
        assert max(seen) > 0.85 * 1.6, "working pressure is realistic: above the old 85 %-of-set ceiling"


def test_fleet_stream_two_hours_valid_and_alarm_free():
    fleet = build_fleet(24, 12, seed=11)
    engine = FleetEngine(fleet, start_ms=START_MS, report_interval_ms=10_000)
    streams = run_engine(engine, 2 * HOUR_MS)
    assert engine.messages == sum(map(len, streams.values())) > 2 * 36 * 720  # periodic + changes
    for i, statuses in streams.items():
        kind, spec = engine.kinds[i], fleet.devices[i]
        assert [s["seq"] for s in statuses] == list(range(1, len(statuses) + 1))
        ts = [s["ts"] for s in statuses]
        assert all(b > a for a, b in itertools.pairwise(ts)), "ts strictly increasing"
        assert max(b - a for a, b in itertools.pairwise(ts)) <= 10_000, "periodic reports"
        for s in statuses[::7]:
            validate(kind, s)
        if kind == "elevator":
            assert longest_run(statuses, trapped_like) < 10_000
            assert all(s["running"] or s["door_zone"] for s in statuses)
            assert all(s["speed"] <= spec.elevator.rated_speed for s in statuses)
        else:
            sp, design_t = spec.vessel.set_pressure, spec.vessel.design_temperature
            assert max(s["pressure"] for s in statuses) <= spec.vessel.working_pressure < sp
            assert max(s["temperature"] for s in statuses) < design_t - 10
            assert not any(s["valve_discharge"] for s in statuses)


# ------------------------------------------------------------------------------ fault specs
@pytest.mark.parametrize(
    ("text", "fault", "device", "onset", "duration"),
    [
        ("trapped:E000003@30s", "trapped", "E000003", 30_000, 40_000),
        ("overpressure:V000002@40s+20s", "overpressure", "V000002", 40_000, 20_000),
        ("trapped:E000001@1.5m+2500ms", "trapped", "E000001", 90_000, 2_500),
        ("trapped:E000001@750ms+1m", "trapped", "E000001", 750, 60_000),
        (" trapped:E000002@12 ", "trapped", "E000002", 12_000, 40_000),
    ],
)
def test_fault_spec_parses(text, fault, device, onset, duration):
    spec = parse_fault_spec(text, build_fleet(3, 2))
    assert (spec.fault, spec.device_id, spec.onset_ms, spec.duration_ms) == (fault, device, onset, duration)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected TYPE:DEVICE@ONSET"),
        ("trapped", "expected TYPE:DEVICE@ONSET"),
        ("trapped:E000003", "expected TYPE:DEVICE@ONSET"),
        ("trapped:E000003@", "expected TYPE:DEVICE@ONSET"),
        ("trapped:E000003@30x", "bad onset '30x'"),
        ("trapped:E000003@30s+h", "bad duration 'h'"),
        ("meltdown:E000003@30s", r"unknown fault type 'meltdown' \(known: alarm_button, .*, valve_discharge\)"),
        ("trapped:E000099@30s", r"E000099 is not in the fleet \(elevators E000001..E000003, vessels"),
        ("trapped:V000001@30s", "applies to elevators, but V000001 is a vessel"),
        ("overpressure:E000001@30s", "applies to vessels, but E000001 is a elevator"),
        ("trapped:E000001@30s+1s", "duration must be at least 2s"),
    ],
)
def test_bad_fault_specs_are_explained(text, message):
    with pytest.raises(ValueError, match=message):
        parse_fault_spec(text, build_fleet(3, 2))


def test_overlapping_faults_on_one_device_are_rejected():
    fleet = build_fleet(3, 2)
    with pytest.raises(ValueError, match="overlap"):
        parse_fault_specs(["trapped:E000001@30s+20s", "trapped:E000001@55s"], fleet)
    specs = parse_fault_specs(["trapped:E000001@90s", "trapped:E000001@30s+20s", "trapped:E000002@31s"], fleet)
    assert [(s.device_id, s.onset_ms) for s in specs] == [("E000001", 30_000), ("E000002", 31_000), ("E000001", 90_000)]


def test_every_fault_type_declares_kind_and_alarm():
    assert {"trapped", "overpressure"} <= set(FAULT_TYPES)
    for cls in FAULT_TYPES.values():
        assert cls.kinds and cls.kinds <= {"elevator", "vessel"} and cls.alarm_type
        assert cls.severity in ("critical", "major", "minor")


# ---------------------------------------------------------------------- injection and truth
def _inject_when(engine: FleetEngine, i: int, cond: object, text: str) -> dict[int, list[dict]]:
    """Step until device ``i`` satisfies ``cond``, then inject ``text`` (``{at}`` = now) there."""
    streams: dict[int, list[dict]] = collections.defaultdict(list)
    for _ in range(200_000):
        if cond(engine.models[i]):  # type: ignore[operator]
            engine.add_fault(parse_fault_spec(text.format(at=f"{engine.elapsed_ms}ms"), engine.fleet))
            return streams
        for j, s in engine.step():
            streams[j].append(s)
    raise AssertionError("condition never met")


def _check_episode(statuses: list[dict], rec: TruthRecord, fault_start: int, fault_end: int, cond: object) -> None:
    """The record's onset / end are the first published ts showing / no longer showing ``cond``."""
    inside = [s for s in statuses if rec.onset_ts <= s["ts"] < rec.end_ts]
    assert inside and all(cond(s) for s in inside)  # type: ignore[operator]
    before = [s for s in statuses if s["ts"] < rec.onset_ts]
    assert before and not cond(before[-1])  # type: ignore[operator]
    first_after = next(s for s in statuses if s["ts"] >= rec.end_ts)
    assert first_after["ts"] == rec.end_ts and not cond(first_after)  # type: ignore[operator]
    assert rec.onset_ts <= fault_start + 2_500 and fault_end <= rec.end_ts <= fault_end + 2_500


@pytest.mark.parametrize("where", ["travelling", "at_landing"])
def test_trapped_fault_visible_in_stream_and_truth(where):
    fleet = build_fleet(4, 1, seed=3)
    engine = FleetEngine(fleet, start_ms=START_MS, report_interval_ms=5_000)
    if where == "travelling":

        def cond(m):
            return m.running and m.speed > 0.5
    else:

        def cond(m):
            return m.phase is Phase.IDLE and engine.elapsed_ms > 5_000

    streams = _inject_when(engine, 1, cond, "trapped:E000002@{at}+30s")
    t0 = engine.now_ms
    more = run_engine(engine, 60_000)
    for j, ss in more.items():
        streams[j].extend(ss)
    [rec] = engine.finish()
    assert (rec.device_id, rec.kind, rec.fault) == ("E000002", "elevator", "trapped")
    assert rec.alarm_type == "trapped_passenger"
    statuses = streams[1]
    _check_episode(statuses, rec, t0, t0 + 30_000, trapped_like)
    assert rec.onset_ts == t0  # the car stops at once
    trapped = [s for s in statuses if rec.onset_ts <= s["ts"] < rec.end_ts]
    assert len(trapped) >= 6, "periodic reports continue while trapped"
    door_zone = where == "at_landing"
    assert all(s["door_zone"] is door_zone and s["dir"] == "stop" and s["speed"] == 0 for s in trapped)
    assert rec.details["door_zone"] is door_zone
    # Released: doors open, the passenger leaves, normal service resumes.
    after = [s for s in statuses if s["ts"] >= rec.end_ts]
    assert any(s["door"] == "open" for s in after) and any(not s["occupied"] for s in after)
    assert longest_run(after, trapped_like) < 10_000
    for s in statuses:
        validate("elevator", s)


def test_overpressure_fault_ramps_holds_and_recovers():
    fleet = build_fleet(1, 3, seed=5)
    specs = parse_fault_specs(["overpressure:V000002@20s+15s"], fleet)
    engine = FleetEngine(fleet, start_ms=START_MS, report_interval_ms=10_000, faults=specs)
    streams = run_engine(engine, 60_000)
    [rec] = engine.finish()
    sp = fleet.by_id["V000002"].vessel.set_pressure
    statuses = streams[2]
    assert (rec.device_id, rec.alarm_type, rec.details["set_pressure"]) == ("V000002", "overpressure", sp)

    def over(s):
        return s["pressure"] >= sp

    _check_episode(statuses, rec, START_MS + 20_000, START_MS + 35_000, over)
    assert 1_000 <= rec.onset_ts - (START_MS + 20_000) <= 2_000, "≈ 2 s ramp"
    peak = max(s["pressure"] for s in statuses)
    assert 1.04 * sp <= peak <= 1.06 * sp
    wp = fleet.by_id["V000002"].vessel.working_pressure
    assert all(s["pressure"] <= wp for s in statuses if s["ts"] < START_MS + 20_000)
    assert all(s["pressure"] <= wp for s in statuses if s["ts"] >= START_MS + 37_500), "back within ≈ 2 s"
    for s in statuses:
        validate("vessel", s)


def test_fault_still_active_at_the_end_has_no_end_ts():
    fleet = build_fleet(2, 1)
    engine = FleetEngine(
        fleet, start_ms=START_MS, report_interval_ms=5_000, faults=parse_fault_specs(["trapped:E000001@5s+2m"], fleet)
    )
    run_engine(engine, 20_000)
    [rec] = engine.finish()
    assert rec.onset_ts is not None and rec.end_ts is None


def test_truth_writer_writes_one_json_line_per_fault(tmp_path):
    recs = [
        TruthRecord("E000001", "elevator", "trapped", "trapped_passenger", 1, 2, {"door_zone": False}),
        TruthRecord("V000001", "vessel", "overpressure", "overpressure", 3, None, {}),
    ]
    with TruthWriter(tmp_path / "t" / "truth.jsonl") as w:
        for r in recs:
            w.write(r)
    lines = [orjson.loads(x) for x in (tmp_path / "t" / "truth.jsonl").read_bytes().splitlines()]
    keys = ["device_id", "kind", "fault", "alarm_type", "severity", "onset_ts", "end_ts", "implied", "details"]
    assert [list(x) for x in lines] == [keys, keys]
    assert lines[1]["end_ts"] is None and lines[0]["details"] == {"door_zone": False}


# ------------------------------------------------------------------------- fleet and registry
def test_fleet_is_reproducible_from_its_seed():
    a, b, c = build_fleet(60, 25, seed=7), build_fleet(60, 25, seed=7), build_fleet(60, 25, seed=8)
    assert a.devices == b.devices and a.firms == b.firms and a.use_units == b.use_units
    assert a.devices != c.devices
    ea = FleetEngine(a, start_ms=START_MS, report_interval_ms=3_000)
    eb = FleetEngine(b, start_ms=START_MS, report_interval_ms=3_000)
    assert run_engine(ea, 300_000) == run_engine(eb, 300_000)


def test_fleet_contents_are_plausible():
    fleet = build_fleet(200, 100, seed=2)
    ids = [d.device_id for d in fleet]
    assert ids[:2] == ["E000001", "E000002"] and ids[200] == "V000001" and ids[-1] == "V000100"
    assert len(fleet.firms) == 15 and all(re.fullmatch(r"F\d{3}", f.firm_id) for f in fleet.firms)
    assert {f.credit_grade for f in fleet.firms} <= {"A", "B", "C"}
    assert all(1 <= f.tech_level <= 5 and 0 <= f.credit_score <= 100 for f in fleet.firms)
    codes = [d.equipment_code for d in fleet]
    assert len(set(codes)) == len(codes)
    for d in fleet:
        assert re.fullmatch(r"\d{4}[A-Z0-9]{5}\d{4}\d{5}", d.equipment_code), d.equipment_code
        assert d.equipment_code[9:13] <= str(d.install_date.year)
        assert 22.7 < d.lat < 23.7 and 113.1 < d.lon < 114.0 and d.address.isascii()
        assert date(2000, 1, 1) <= d.install_date <= date(2024, 12, 31)
        if d.kind == "elevator":
            e = d.elevator
            assert d.equipment_code.startswith("3110") and d.vessel is None
            assert e.rated_speed in (1.0, 1.5, 1.75, 2.5) and 6 <= e.floors <= 40 and e.bottom_floor in (1, -1, -2)
        else:
            v = d.vessel
            assert d.equipment_code[:4] in ("2100", "2150") and d.elevator is None
            assert v.working_pressure < v.set_pressure <= v.design_pressure and v.medium in MEDIA
    assert len({d.district for d in fleet}) >= 8
    assert fleet.by_id["V000001"].kind == "vessel" and len(fleet.firms) == 15
    assert len(build_fleet(3, 0).firms) == 2  # minimum two firms


def test_registry_csv_has_the_import_columns(tmp_path):
    fleet = build_fleet(5, 3, seed=4)
    path = fleet.write_registry_csv(tmp_path / "sub" / "registry.csv")
    with path.open(newline="", encoding="utf-8") as f:
        header = f.readline().strip()
        f.seek(0)
        rows = list(csv.DictReader(f))
    expected = (
        "id,equipment_code,kind,district,address,lat,lon,firm_id,firm_name,firm_tech_level,firm_credit_grade,"
        "firm_credit_score,use_unit_id,use_unit_name,use_unit_mgmt_level,install_date,rated_speed,floors,"
        "bottom_floor,design_pressure,set_pressure,design_temperature,medium,max_working_pressure"
    )
    assert header == ",".join(REGISTRY_COLUMNS) == expected
    assert [r["id"] for r in rows] == [d.device_id for d in fleet]
    for r, d in zip(rows, fleet, strict=True):
        assert date.fromisoformat(r["install_date"]) == d.install_date and len(r["equipment_code"]) == 18
        elevator_cols = (r["rated_speed"], r["floors"], r["bottom_floor"])
        vessel_cols = (r["design_pressure"], r["set_pressure"], r["design_temperature"], r["medium"])
        if d.kind == "elevator":
            assert all(elevator_cols) and not any(vessel_cols)
            assert float(r["rated_speed"]) == d.elevator.rated_speed and int(r["floors"]) == d.elevator.floors
        else:
            assert all(vessel_cols) and not any(elevator_cols)
            assert float(r["set_pressure"]) == d.vessel.set_pressure
            assert float(r["max_working_pressure"]) == d.vessel.working_pressure < d.vessel.set_pressure
        assert r["firm_credit_grade"] in "ABC" and r["use_unit_id"].startswith("U")


# ----------------------------------------------------------------------- against Mosquitto
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sim_broker(tmp_path: Path) -> Iterator[int]:
    """A private Mosquitto 2.x on a free port; yields the port."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        if os.environ.get("SEMON_REQUIRE_SERVICES") == "1":
            pytest.fail("mosquitto binary not found and SEMON_REQUIRE_SERVICES=1")
        pytest.skip("mosquitto binary not found (apt-get install mosquitto)")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    # max_inflight_messages 0 = no limit on QoS 1 messages in flight to the subscriber;
    # max_queued_messages: queue for a slow subscriber rather than drop (default 1000 drops).
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_inflight_messages 0\nmax_queued_messages 1000000\nmax_queued_bytes 0\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n"
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not start: {(tmp_path / 'mosquitto.log').read_text()}")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


class Recorder:
    """QoS 1 subscriber to every device topic, keeping the payloads per device and channel."""

    def __init__(self, port: int) -> None:
        self.got: dict[tuple[str, str], list[bytes]] = collections.defaultdict(list)
        self.kinds: dict[str, str] = {}
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sim-recorder", protocol=mqtt.MQTTv311)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *_: subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("semon/v1/+/+/+", qos=1)
        self.c.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        _, _, kind, device, channel = m.topic.split("/")
        with self.lock:
            self.got[(device, channel)].append(m.payload)
            self.kinds[device] = kind

    def count(self, channel: str) -> int:
        with self.lock:
            return sum(len(v) for (_, ch), v in self.got.items() if ch == channel)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.mark.services
def test_run_simulation_publishes_every_message_once(sim_broker, tmp_path):
    rec = Recorder(sim_broker)
    try:
        cfg = SimulationConfig(
            port=sim_broker, elevators=20, vessels=10, rate=300, duration_s=4, speed=5, seed=3,
            faults=["trapped:E000002@3s+6s", "overpressure:V000001@4s+5s"], client_id="test-sim",
            truth_path=tmp_path / "truth.jsonl", registry_path=tmp_path / "registry.csv",
        )  # fmt: skip
        res = run_simulation(cfg)
        deadline = time.monotonic() + 15
        while rec.count("status") < res.total_messages and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # nothing more may arrive
    finally:
        rec.close()
    assert res.all_acked and res.online_messages == 30
    assert res.total_messages == sum(res.per_device.values()) >= 0.9 * cfg.rate * cfg.duration_s
    assert res.achieved_rate > 0.9 * cfg.rate and 3.9 < res.elapsed_s < 6
    got = {d: len(v) for (d, ch), v in rec.got.items() if ch == "status"}
    assert got == {d: n for d, n in res.per_device.items() if n}, "received count per device = published"
    for (device, channel), payloads in rec.got.items():
        if channel == "online":
            assert payloads == [b"1"]
            continue
        statuses = [orjson.loads(p) for p in payloads]
        assert [s["seq"] for s in statuses] == list(range(1, len(statuses) + 1))
        assert all(b["ts"] > a["ts"] for a, b in itertools.pairwise(statuses))
        for p in payloads:  # no dead letters: every payload passes the strict contract model
            MODELS[rec.kinds[device]].model_validate_json(p)
    # Ground truth: both faults, complete, in the file and in the result alike.
    assert {(f.device_id, f.alarm_type) for f in res.faults} == {
        ("E000002", "trapped_passenger"),
        ("V000001", "overpressure"),
    }
    assert all(f.onset_ts and f.end_ts and f.end_ts - f.onset_ts > 3_000 for f in res.faults), res.faults
    lines = [orjson.loads(x) for x in (tmp_path / "truth.jsonl").read_bytes().splitlines()]
    assert sorted(lines, key=lambda x: x["device_id"]) == sorted(
        (f.as_dict() for f in res.faults), key=lambda x: x["device_id"]
    )
    assert (tmp_path / "registry.csv").read_text().count("\n") == 31
    # speed 5 with a known duration: device time ends near now instead of 16 s in the future.
    assert abs(res.end_ms - time.time() * 1000) < 5_000


@pytest.mark.services
def test_run_simulation_stops_on_event_from_another_thread(sim_broker):
    stop = threading.Event()
    out = []
    cfg = SimulationConfig(port=sim_broker, elevators=5, vessels=5, rate=50, stop_event=stop, client_id="test-stop")
    t = threading.Thread(target=lambda: out.append(run_simulation(cfg)))
    t.start()
    time.sleep(1.0)
    stop.set()
    t.join(10)
    assert not t.is_alive() and out[0].all_acked and out[0].total_messages >= 40
    assert 0.9 < out[0].elapsed_s < 2.0


def test_run_simulation_rejects_bad_input_before_connecting():
    with pytest.raises(ValueError, match="unknown fault type"):
        run_simulation(SimulationConfig(port=1, faults=["boom:E000001@1s"]))
    with pytest.raises(ValueError, match="at least one device"):
        run_simulation(SimulationConfig(port=1, elevators=0, vessels=0))
    with pytest.raises(ConnectionError, match="cannot reach MQTT broker"):
        run_simulation(SimulationConfig(port=_free_port(), duration_s=1))
