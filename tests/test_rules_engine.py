"""Rule engine semantics: durations in device time, hysteresis, ordering, timers."""

from __future__ import annotations

from semon.contract.messages import ElevatorStatus, VesselStatus
from semon.rules.builtin import Overpressure, TrappedPassenger
from semon.rules.engine import RuleEngine
from semon.store.registry import DeviceInfo

ELEV = DeviceInfo("E1", "elevator", "Tianhe", "F001", 1.75, 20, 1, None, None)
VES = DeviceInfo("V1", "vessel", "Tianhe", "F001", None, None, None, 1.6, 80.0)
T0 = 1_764_000_000_000


def elev(ts: int, seq: int, *, trapped: bool = False, **kw: object) -> ElevatorStatus:
    base = dict(
        ts=ts,
        seq=seq,
        mode="normal",
        running=not trapped,
        dir="stop" if trapped else "up",
        floor=5,
        door_zone=False,
        door="closed",
        occupied=True,
        speed=0.0 if trapped else 1.5,
        load=70.0,
        run_count=1,
        run_hours=1.0,
    )
    base.update(kw)
    return ElevatorStatus.model_validate(base, strict=False)


def vessel(ts: int, seq: int, p: float) -> VesselStatus:
    return VesselStatus(ts=ts, seq=seq, pressure=p, temperature=20.0)


def test_trapped_fires_after_20s_of_device_time_with_exact_times():
    e = RuleEngine([TrappedPassenger()])
    out = []
    for i in range(0, 26):
        out += e.evaluate(ELEV, elev(T0 + i * 1000, i + 1, trapped=i >= 3), wall_ms=0)
    assert [t.event for t in out] == ["raised"]
    assert out[0].onset_ts == T0 + 3000 and out[0].ts == T0 + 23_000
    assert "outside the door zone" in out[0].message
    out = e.evaluate(ELEV, elev(T0 + 30_000, 40, door="open"), wall_ms=0)
    assert [(t.event, t.ts) for t in out] == [("cleared", T0 + 30_000)]


def test_interrupted_condition_restarts_the_duration():
    e = RuleEngine([TrappedPassenger()])
    out = []
    for i in range(0, 40):
        # the doors open briefly at 15 s: the 20 s count starts again from 16 s
        out += e.evaluate(ELEV, elev(T0 + i * 1000, i + 1, trapped=True, door="open" if i == 15 else "closed"), 0)
    assert len(out) == 1 and out[0].onset_ts == T0 + 16_000 and out[0].ts == T0 + 36_000


def test_duplicates_and_late_messages_do_not_move_state_backwards():
    e = RuleEngine([TrappedPassenger()])
    msgs = [elev(T0 + i * 1000, i + 1, trapped=True) for i in range(25)]
    clean = []
    for m in msgs:
        clean += e.evaluate(ELEV, m, 0)
    e2 = RuleEngine([TrappedPassenger()])
    noisy = []
    stream = msgs[:5] + msgs[2:5] + msgs[6:10] + [msgs[5]] + msgs[10:] + msgs[-3:]
    for m in stream:
        noisy += e2.evaluate(ELEV, m, 0)
    assert [(t.event, t.onset_ts, t.ts) for t in noisy] == [(t.event, t.onset_ts, t.ts) for t in clean]
    assert e2.stale_skipped == 3 + 1 + 3


def test_timer_raises_when_device_goes_quiet():
    e = RuleEngine([TrappedPassenger()])
    wall = 5_000_000
    assert e.evaluate(ELEV, elev(T0, 1, trapped=True), wall) == []
    assert e.tick(wall + 19_000) == []
    out = e.tick(wall + 20_100)
    assert [t.event for t in out] == ["raised"] and out[0].ts == T0 + 20_000
    assert e.tick(wall + 30_000) == []


def test_overpressure_hysteresis_and_min_clear_time_no_flapping():
    e = RuleEngine([Overpressure()])
    out = []
    seq = 0
    # oscillate around the set pressure 1.6: 1.61, 1.59, 1.61 ... then drop below 95 %
    for i in range(30):
        seq += 1
        out += e.evaluate(VES, vessel(T0 + i * 500, seq, 1.61 if i % 2 == 0 else 1.59), 0)
    assert [t.event for t in out] == ["raised"]
    # one low sample then back up: shorter than the 2 s minimum clear time → still one alarm
    for p in (1.4, 1.61):
        seq += 1
        out += e.evaluate(VES, vessel(T0 + seq * 500, seq, p), 0)
    for _ in range(6):
        seq += 1
        out += e.evaluate(VES, vessel(T0 + seq * 500, seq, 1.4), 0)
    assert [t.event for t in out] == ["raised", "cleared"]


def test_inspection_mode_never_raises_trapped():
    e = RuleEngine([TrappedPassenger()])
    out = []
    for i in range(40):
        out += e.evaluate(ELEV, elev(T0 + i * 1000, i + 1, trapped=True, mode="inspection"), 0)
    assert out == []
