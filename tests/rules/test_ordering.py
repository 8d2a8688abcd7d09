"""A device's clock and order cannot blind its rules (issue 20, point 1): the ordering gate
(rules/ordering.py) alone, and through the rule engine at the boundaries the acceptance names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from semon.ingest.collector import Collector
from semon.rules.engine import RuleEngine
from semon.rules.ordering import JUMP_MS, JUMP_OFF, REORDER_MS, WINDOW, Order, OrderGate
from tests.conftest import Stack
from tests.helpers import AlarmListener, elevator_payload, now_ms, publish_all, small_registry, wait_until
from tests.rules.test_rules_engine import ELEV, T0, elev, idle, kinds

EL = "semon/v1/elevator/{}/status"

DELAY = 150  # ms between a device taking a snapshot and the collector receiving it
TRAPPED_MS = 20_000  # elevator.trapped_passenger's trigger_for_s


def trapped_raises(out: list) -> list:
    return [t for t in out if t.event == "raised" and t.rule.alarm_type == "trapped_passenger"]


# -- the gate alone ---------------------------------------------------------------------------
def test_seq_orders_and_late_fills_a_gap_that_a_loss_does_not():
    g = OrderGate()
    assert g.admit("E", "status", T0, 10, T0).order is Order.NEW
    assert g.admit("E", "status", T0 + 3000, 13, T0 + 3000).order is Order.NEW  # 11, 12 missing
    assert g.gaps("E") == 2
    late = g.admit("E", "status", T0 + 1000, 11, T0 + 3100)
    assert late.order is Order.LATE and g.gaps("E") == 1  # filled: not a loss
    assert g.admit("E", "status", T0 + 1000, 11, T0 + 3200).order is Order.DUPLICATE
    assert g.admit("E", "status", T0 + 3000, 13, T0 + 3200).order is Order.DUPLICATE
    # Seq 12 leaves the window without arriving: lost for good, and counted once.
    g.admit("E", "status", T0 + 4000, 13 + WINDOW + 1, T0 + 4000)
    s = g.stream("E", "status")
    assert s.lost == 1 and s.open_gaps == WINDOW and g.gaps("E") == 1 + WINDOW  # the skipped ones still open
    tally = g.drain()
    assert (tally.late, tally.duplicate, tally.missing, tally.filled) == (1, 2, 2 + WINDOW, 1)
    assert g.drain().missing == 0


def test_a_message_too_late_for_rules_is_stored_only_but_still_fills_its_gap():
    g = OrderGate()
    g.admit("E", "status", T0, 1, T0)
    g.admit("E", "status", T0 + 10_000, 3, T0 + 10_000)
    a = g.admit("E", "status", T0 + 10_000 - REORDER_MS - 1, 2, T0 + 10_100)
    assert a.order is Order.STALE and g.gaps("E") == 0 and g.drain().stale == 1


def test_a_reboot_is_a_new_epoch_not_a_gap_and_not_a_duplicate():
    g = OrderGate()
    for i in range(500, 520):
        g.admit("E", "status", T0 + i * 1000, i, T0 + i * 1000 + DELAY)
    a = g.admit("E", "status", T0 + 530_000, 1, T0 + 530_000 + DELAY)
    assert a.order is Order.NEW and a.reset and g.gaps("E") == 0
    assert g.admit("E", "status", T0 + 531_000, 2, T0 + 531_000 + DELAY).order is Order.NEW
    assert g.gaps("E") == 0 and g.drain().resets == 1


def test_an_old_low_seq_is_a_redelivery_not_a_reboot():
    g = OrderGate()
    for i in range(1, 30):
        g.admit("E", "status", T0 + i * 1000, i, T0 + i * 1000 + DELAY)
    a = g.admit("E", "status", T0 + 1000, 1, T0 + 40_000)  # seq 1 again, with its old clock
    assert a.order is Order.DUPLICATE and not a.reset


def test_a_clock_jump_is_quarantined_and_a_real_clock_change_followed():
    g = OrderGate()
    skew = -7_000  # the device's clock runs 7 s behind ours: that is its estimate, not a jump
    for i in range(1, 6):
        assert not g.admit("E", "status", T0 + skew + i * 1000, i, T0 + i * 1000 + DELAY).jumped
    wall = T0 + 6000 + DELAY
    a = g.admit("E", "status", wall + 290_000, 6, wall)
    assert a.jumped and a.order is Order.NEW and a.ts == wall + skew - DELAY
    assert g.drain().jumps == 1
    # Back on its clock: nothing lost, nothing blinded.
    assert g.admit("E", "status", T0 + skew + 7000, 7, T0 + 7000 + DELAY).order is Order.NEW
    # Set forward for real (NTP after a boot): after a few agreeing messages the new clock holds.
    walls = [T0 + 8000 + i * 1000 for i in range(4)]
    flags = [g.admit("E", "status", w + 120_000, 8 + i, w).jumped for i, w in enumerate(walls)]
    assert flags == [True, True, False, False]


def test_a_backlog_is_not_a_jump():
    """Messages queued while the collector was down arrive together, their ts in the past."""
    g = OrderGate()
    for i in range(1, 6):
        g.admit("E", "status", T0 + i * 1000, i, T0 + i * 1000 + DELAY)
    back = T0 + 200_000
    assert not any(g.admit("E", "status", T0 + i * 1000, i, back + i).jumped for i in range(6, 200))


# -- through the engine -----------------------------------------------------------------------
def test_one_status_290_s_ahead_does_not_blind_the_device():
    """The fault run's case: the jump is counted and the real entrapment after it raised on time."""
    e = RuleEngine()
    out: list = []
    seq = 0

    def send(ts: int, *, wall: int | None = None, **kw: object) -> None:
        nonlocal seq
        seq += 1
        out.extend(e.evaluate(ELEV, elev(ts, seq, **kw), ts + DELAY if wall is None else wall))

    for i in range(10):
        send(T0 + i * 1000)
    send(T0 + 10_000 + 290_000, wall=T0 + 10_000 + DELAY)  # one status from the future
    onset = T0 + 11_000
    for i in range(30):
        send(onset + i * 1000, trapped=True)
    raised = trapped_raises(out)
    assert len(raised) == 1 and raised[0].onset_ts == onset and raised[0].ts == onset + TRAPPED_MS
    assert e.order.drain().jumps == 1 and JUMP_MS < 290_000


def test_a_jumped_status_neither_raises_early_nor_moves_the_timer_clock():
    e = RuleEngine()
    for i in range(5):
        e.evaluate(ELEV, elev(T0 + i * 1000, i + 1), T0 + i * 1000 + DELAY)
    e.evaluate(ELEV, elev(T0 + 5000, 6, trapped=True), T0 + 5000 + DELAY)
    # A trapped status dated 290 s ahead: evaluated at the estimated time, no alarm yet …
    assert trapped_raises(e.evaluate(ELEV, elev(T0 + 296_000, 7, trapped=True), T0 + 6000 + DELAY)) == []
    # … and the timers still run on the device's real clock: due at onset + 20 s, not before.
    assert trapped_raises(e.tick(T0 + 24_000 + DELAY)) == []
    assert [t.ts for t in trapped_raises(e.tick(T0 + 25_000 + DELAY))] == [T0 + 25_000]


def test_a_device_that_reboots_keeps_its_alarms():
    e = RuleEngine()
    out: list = []
    for i in range(40):  # a long-running terminal: its counter is high
        out += e.evaluate(ELEV, elev(T0 + i * 1000, 9000 + i), T0 + i * 1000 + DELAY)
    boot = T0 + 60_000  # it reboots: seq back to 1, its clock right
    for i in range(30):
        out += e.evaluate(ELEV, elev(boot + i * 1000, i + 1, trapped=True), boot + i * 1000 + DELAY)
    raised = trapped_raises(out)
    assert len(raised) == 1 and raised[0].ts == boot + TRAPPED_MS
    assert e.order.gaps(ELEV.id) == 0 and e.order.drain().resets == 1


def door_cycles(start: int, n: int, seq0: int) -> list[tuple[int, object]]:
    """``n`` door cycles of 8 s at one floor, no trip; each ``opening`` arrives 1.6 s late.

    Returns (arrival wall ms, status) in arrival order."""
    msgs: list[tuple[int, object]] = []
    seq = seq0
    for c in range(n):
        t = start + c * 8000
        for dt, door in ((0, "opening"), (1000, "open"), (4000, "closing"), (6000, "closed")):
            seq += 1
            late = 1600 if door == "opening" else 0
            msgs.append((t + dt + DELAY + late, idle(t + dt, seq, door=door, occupied=True)))
    return sorted(msgs, key=lambda m: m[0])


def test_six_door_cycles_with_every_opening_late_raise_one_alarm_and_no_trapped_delay():
    e = RuleEngine()
    out: list = []
    for i in range(3):
        out += e.evaluate(ELEV, idle(T0 + i * 1000, i + 1, door="closed"), T0 + i * 1000 + DELAY)
    start = T0 + 3000
    stream = door_cycles(start, 6, 3)
    assert stream[0][1].door == "open" and stream[1][1].door == "opening"  # reordered, as the fault run
    for wall, st in stream:
        out += e.evaluate(ELEV, st, wall)
    assert [k for k in kinds(out) if k[1] == "repeated_door_cycling"] == [("raised", "repeated_door_cycling")]
    # The last cycle's doors stay closed with the passenger inside: trapped at onset + 20 s, on
    # the very message that proves it — the reorder tolerance adds no delay.
    onset = start + 5 * 8000 + 6000
    assert trapped_raises(out) == []
    seq = 3 + 6 * 4
    for i in range(1, 25):
        seq += 1
        ts = onset + i * 1000
        got = e.evaluate(ELEV, elev(ts, seq, trapped=True, door_zone=True), ts + DELAY)
        out += got
        assert [t.ts for t in trapped_raises(got)] == ([onset + TRAPPED_MS] if ts == onset + TRAPPED_MS else [])
    assert len(trapped_raises(out)) == 1
    assert e.order.drain().late == 6


def test_late_break_between_holding_neighbours_is_an_edge():
    """opening, (closed arrives late), opening: two edges, not one."""
    e = RuleEngine()
    e.evaluate(ELEV, idle(T0, 1, door="closed"), T0)
    e.evaluate(ELEV, idle(T0 + 1000, 2, door="opening"), T0 + 1000)
    e.evaluate(ELEV, idle(T0 + 3000, 4, door="opening"), T0 + 3000)
    e.evaluate(ELEV, idle(T0 + 2000, 3, door="closed"), T0 + 3100)
    ds = e._devices[ELEV.id]
    i = next(i for i, c in enumerate(ds.rules.rules) if c.spec.alarm_type == "repeated_door_cycling")
    st = ds.states[i]
    assert st is not None and list(st.edges or []) == [T0 + 1000, T0 + 3000]


def test_late_edge_before_a_break_that_arrived_on_time_keeps_the_next_edge():
    """closed, (opening arrives late), closed, opening: both openings are edges.

    The engine remembers no neighbours while none of them held; when one holds, the message
    before it is put back as the non-holding neighbour a late message must see.
    """
    e = RuleEngine()
    e.evaluate(ELEV, idle(T0, 1, door="closed"), T0)
    e.evaluate(ELEV, idle(T0 + 2000, 3, door="closed"), T0 + 2000)
    e.evaluate(ELEV, idle(T0 + 3000, 4, door="opening"), T0 + 3000)
    e.evaluate(ELEV, idle(T0 + 1000, 2, door="opening"), T0 + 3100)
    ds = e._devices[ELEV.id]
    i = next(i for i, c in enumerate(ds.rules.rules) if c.spec.alarm_type == "repeated_door_cycling")
    st = ds.states[i]
    assert st is not None and list(st.edges or []) == [T0 + 1000, T0 + 3000]


# -- on the real broker -----------------------------------------------------------------------
Running = tuple[Collector, AlarmListener]


@pytest.fixture
def running(stack: Stack, tmp_path: Path) -> Iterator[Running]:
    """A collector on the real services with the small registry, and an alarm listener."""
    small_registry(stack.db, tmp_path / "reg.csv")
    col = Collector(stack.settings, stack.db, stack.telemetry())
    col.start()
    listener = AlarmListener(stack.settings)
    try:
        assert col.connected.wait(10)
        yield col, listener
    finally:
        listener.c.disconnect()
        col.stop()


def late_count() -> float:
    return REGISTRY.get_sample_value("semon_messages_out_of_order_total", {"order": "late"}) or 0.0


@pytest.mark.services
@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_collector_raises_a_real_entrapment_after_a_future_status(running: Running):
    """Real Mosquitto, InfluxDB, PostgreSQL: the fault run's sequence on E1, a control on E2."""
    col, listener = running
    jumps_before = REGISTRY.get_sample_value("semon_clock_jumps_total") or 0.0
    t = now_ms()
    msgs = [(EL.format(d), elevator_payload(t - 5000 + i * 1000, i + 1)) for d in ("E1", "E2") for i in range(5)]
    msgs.append((EL.format("E1"), elevator_payload(t + 290_000, 6)))  # one status from the future
    publish_all(col.settings, msgs)
    wait_until(lambda: col.stats["accepted"] >= len(msgs), 15, "the prelude evaluated")
    onset = now_ms()
    trapped = dict(occupied=True, door_zone=True)
    publish_all(col.settings, [(EL.format(d), elevator_payload(onset, 7, **trapped)) for d in ("E1", "E2")])
    started = time.monotonic()
    wait_until(
        lambda: {m["device_id"] for m in listener.got if m["type"] == "trapped_passenger"} == {"E1", "E2"},
        TRAPPED_MS / 1000 + 5, "both trapped alarms within the rule duration + 5 s",
    )  # fmt: skip
    assert time.monotonic() - started <= TRAPPED_MS / 1000 + 5
    for d in ("E1", "E2"):
        (raised,) = [m for m in listener.distinct(d) if m["type"] == "trapped_passenger"]
        assert raised["onset_ts"] == onset and raised["start_ts"] == onset + TRAPPED_MS  # not early either
    wait_until(lambda: col.stats["clock_jumps"] == 1, 5, "the jump counted")
    assert REGISTRY.get_sample_value("semon_clock_jumps_total") == jumps_before + 1


def test_a_restarted_collector_evaluates_redeliveries_and_counts_only_what_the_broker_dropped():
    g = OrderGate()
    g.restore("E", "status", 100, T0 + 100_000, 4, 1, 0)  # saved by the previous collector
    # It had evaluated 98–100 but not acknowledged them: the broker sends them again. This
    # process's rules have no state yet: they must see them (a trapped status sent once, say).
    assert [g.admit("E", "status", T0 + q * 1000, q, T0 + 200_000).order for q in (98, 99, 99, 100)] == [
        Order.NEW, Order.NEW, Order.DUPLICATE, Order.NEW,
    ]  # fmt: skip
    assert g.gaps("E") == 4 and g.stream("E", "status").saved_seq == 100
    assert g.admit("E", "status", T0 + 103_000, 103, T0 + 200_000).order is Order.NEW  # 101, 102 dropped
    assert g.gaps("E") == 6 and g.stream("E", "status").saved_seq == 103


def test_a_device_that_rebooted_while_the_collector_was_away_is_no_gap():
    g = OrderGate()
    g.restore("E", "status", 5000, T0, 0, 0, 0)
    a = g.admit("E", "status", T0 + 60_000, 2, T0 + 60_100)
    assert a.order is Order.NEW and a.reset and g.gaps("E") == 0
    assert g.admit("E", "status", T0 + 61_000, 4, T0 + 61_100).order is Order.NEW and g.gaps("E") == 1


def test_a_gap_leaving_the_window_one_message_at_a_time_is_lost_once():
    g = OrderGate()
    g.admit("E", "status", T0, 1, T0)
    g.admit("E", "status", T0 + 2, 3, T0 + 2)  # 2 missing
    for q in range(4, 4 + WINDOW):
        g.admit("E", "status", T0 + q, q, T0 + q)
    s = g.stream("E", "status")
    assert (s.lost, s.open_gaps, g.gaps("E")) == (1, 0, 1)
    assert g.admit("E", "status", T0 + 2, 2, T0 + 5000).order is Order.STALE  # too late to fill it
    assert g.gaps("E") == 1


@pytest.mark.services
@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_collector_counts_late_door_openings_and_does_not_delay_the_trapped_alarm(running: Running):
    """The reordered door stream of the fault run through the real broker and collector."""
    col, listener = running
    late_before = late_count()
    start = now_ms() - 120_000  # device time in the past: published at once, in arrival order
    stream = [idle(start - 3000 + i * 1000, i + 1, door="closed") for i in range(3)]
    stream += [st for _, st in door_cycles(start, 6, 3)]
    onset = start + 5 * 8000 + 6000  # the last cycle's doors stay closed, the passenger inside
    stream += [elev(onset + i * 1000, 27 + i, trapped=True, door_zone=True) for i in range(1, 25)]
    publish_all(col.settings, [(EL.format("E1"), st.model_dump_json().encode()) for st in stream])
    wait_until(lambda: col.stats["accepted"] >= len(stream), 20, "the stream evaluated")

    def of(kind: str) -> list[dict]:
        return [m for m in listener.distinct("E1") if m["type"] == kind and m["event"] == "raised"]

    wait_until(lambda: of("repeated_door_cycling") and of("trapped_passenger"), 10, "both alarms")
    assert len(of("repeated_door_cycling")) == 1
    (trapped,) = of("trapped_passenger")
    assert trapped["onset_ts"] == onset and trapped["start_ts"] == onset + TRAPPED_MS
    wait_until(lambda: late_count() - late_before == 6, 5, "the six late openings counted")


def test_no_jump_check_for_accelerated_device_time():
    """SEMON_CLOCK_JUMP_S=0: a simulation running device time 30× the wall clock is not jumping."""
    fast, normal = OrderGate(JUMP_OFF), OrderGate()
    flagged = {"off": 0, "on": 0}
    for i in range(1, 40):
        wall = T0 + i * 2100  # a keep-alive every 2.1 s of wall time = 63 s of device time
        flagged["off"] += fast.admit("E", "status", T0 + i * 63_000, i, wall).jumped
        flagged["on"] += normal.admit("E", "status", T0 + i * 63_000, i, wall).jumped
    assert flagged["off"] == 0 and flagged["on"] > 0  # the default would take it for jumps


@pytest.mark.services
@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_collector_keeps_the_alarms_of_a_device_that_rebooted(running: Running):
    """Seq back to 1 with a right clock, through the real broker: a new epoch, its entrapment
    raised on time, no gap, no duplicate."""
    col, listener = running
    t = now_ms() - 120_000  # device time in the past: published at once
    before = [elev(t + i * 1000, 9000 + i) for i in range(20)]
    boot = t + 30_000
    after = [elev(boot + i * 1000, i + 1, trapped=True, door_zone=True) for i in range(25)]
    publish_all(col.settings, [(EL.format("E1"), st.model_dump_json().encode()) for st in before + after])
    wait_until(lambda: [m for m in listener.distinct("E1") if m["type"] == "trapped_passenger"], 20, "trapped")
    (raised,) = [m for m in listener.distinct("E1") if m["type"] == "trapped_passenger"]
    assert raised["onset_ts"] == boot and raised["start_ts"] == boot + TRAPPED_MS
    stream = col.engine.order.stream("E1", "status")
    assert (stream.resets, col.engine.order.gaps("E1")) == (1, 0)
