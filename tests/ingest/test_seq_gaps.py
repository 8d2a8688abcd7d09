"""Lost messages are seen (issue 20, point 4): a broker at its per-client queue limit drops
messages it already acknowledged to the terminals; semon counts them per device, exactly, shows
them in the device's API view and the board feed, and raises the platform alarm — and a device
reboot in the same run is not a gap."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from semon.api.board import device_detail
from semon.config import Settings
from semon.ingest.collector import Collector
from semon.ingest.seq_gaps import GapWatch
from semon.rules.ordering import OrderGate
from semon.store import open_telemetry
from semon.store.db import Database
from semon.store.models import Alarm
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from tests.helpers import ApiServer, elevator_payload, now_ms, publish_all, small_registry, wait_until
from tests.services import Influx, Mosquitto, free_port

EL = "semon/v1/elevator/{}/status"
QUEUE = 10  # the test broker's per-client queue (and in-flight) limit


def gaps_metric() -> float:
    missing = REGISTRY.get_sample_value("semon_seq_gaps_total", {"outcome": "missing"}) or 0.0
    return missing - (REGISTRY.get_sample_value("semon_seq_gaps_total", {"outcome": "filled"}) or 0.0)


def missing_within(stored: list[int]) -> int:
    """Seqs between the first and the last stored one that were not stored."""
    return max(stored) - min(stored) + 1 - len(set(stored))


# -- the watch alone --------------------------------------------------------------------------
def test_platform_alarm_past_the_threshold_within_the_window_and_cleared_after():
    g = OrderGate()
    w = GapWatch(g, count=5, window_s=60)
    t = 1_764_000_000_000
    g.admit("E1", "status", t, 1, t)
    assert w.rows(t) and w.check(t) == []
    g.admit("E1", "status", t + 1000, 5, t + 1000)  # 3 lost: under the threshold
    w.rows(t + 1000)
    assert w.check(t + 1000) == []
    g.admit("E1", "status", t + 2000, 8, t + 2000)  # 2 more: 5 within the window
    rows = w.rows(t + 2000)
    assert [r["gaps"] for r in rows] == [5]
    (raised,) = w.check(t + 2000)
    assert raised.event == "raised" and raised.device.id == "semon-platform" and "E1 (5)" in raised.message
    assert w.check(t + 3000) == []  # raised once
    g.admit("E1", "status", t + 70_000, 9, t + 70_000)
    w.rows(t + 70_000)
    (cleared,) = w.check(t + 70_000)  # the losses left the window
    assert cleared.event == "cleared"


def test_gaps_a_device_had_before_are_a_baseline_not_news():
    g = OrderGate()
    g.restore("E1", "status", 100, 1_764_000_000_000, 50, 0, 0)
    w = GapWatch(g, count=5, window_s=60)
    g.admit("E1", "status", 1_764_000_001_000, 101, 1_764_000_001_000)
    w.rows(1_764_000_001_000)
    assert w.check(1_764_000_001_000) == [] and g.gaps("E1") == 50


# -- the acceptance run -----------------------------------------------------------------------
@pytest.mark.services
def test_broker_queue_drops_are_counted_exactly_and_raise_the_platform_alarm(
    tmp_path: Path, influx: Influx, pg_url: str
):
    mq = Mosquitto(tmp_path / "mq")
    conf = mq.conf.read_text()
    conf = re.sub(r"(?m)^max_queued_messages .*$", f"max_queued_messages {QUEUE}", conf)
    conf = re.sub(r"(?m)^max_inflight_messages .*$", f"max_inflight_messages {QUEUE}", conf)
    mq.conf.write_text(conf)
    mq.start()
    try:
        s = Settings(
            mqtt_url=mq.url, influx_url=influx.url, influx_db="semon", db_url=pg_url, data_dir=tmp_path / "data",
            mqtt_client_id=f"semon-gaps-{free_port()}", api_auth="open", seq_gap_alarm_count=5,
            seq_gap_alarm_window_s=600, batch_max_age_s=0.2,
        )  # fmt: skip
        db = Database(pg_url)
        small_registry(db, tmp_path / "reg.csv")
        run_outage(s, db)
    finally:
        mq.stop()


def stored_seqs(s: Settings, device: str) -> list[int]:
    """``seq`` of every stored status of a device (a reboot's seqs appear once per epoch)."""
    t = open_telemetry(s)
    try:
        assert not isinstance(t, SqliteTelemetryStore)
        rows = t.rows(f'SELECT "seq", device_id FROM "elevator_status" WHERE device_id = \'{device}\'')
        return [int(r["seq"]) for r in rows]
    finally:
        t.close()


def run_outage(s: Settings, db: Database) -> None:
    """Collector up; E2 reboots; collector stopped while both terminals publish 30 statuses
    each at QoS 1 (the broker queues QUEUE for it and drops the rest); collector started again."""
    before = gaps_metric()
    t0 = now_ms() - 120_000  # device time: two minutes of history, 1 s apart, all in the past
    ts = iter(range(t0, t0 + 120_000, 1000))
    col = Collector(s, db, open_telemetry(s))
    col.start()
    try:
        assert col.connected.wait(10)
        first = [(EL.format(d), elevator_payload(next(ts), q)) for q in range(1, 6) for d in ("E1", "E2")]
        first += [(EL.format("E2"), elevator_payload(next(ts), q)) for q in range(1, 4)]  # rebooted: 1 again
        publish_all(s, first)
        wait_until(lambda: len(stored_seqs(s, "E2")) == 8 and len(stored_seqs(s, "E1")) == 5, 20, "phase A stored")
    finally:
        col.stop()
    # The collector is away: its persistent session queues QUEUE messages, the broker drops the
    # rest — after acknowledging every one of them to the terminals.
    outage = [(EL.format(d), elevator_payload(next(ts), q0 + i)) for i in range(30) for d, q0 in (("E1", 6), ("E2", 4))]
    assert publish_all(s, outage) == 60
    col = Collector(s, db, open_telemetry(s))
    col.start()
    api = ApiServer(s, db, open_telemetry(s))
    try:
        assert col.connected.wait(10)
        wait_until(lambda: col.stats["accepted"] >= 1, 20, "the queued backlog delivered")
        # One more status each after the outage: what the broker dropped lies below it.
        publish_all(
            s, [(EL.format("E1"), elevator_payload(next(ts), 36)), (EL.format("E2"), elevator_payload(next(ts), 34))]
        )
        wait_until(lambda: 36 in stored_seqs(s, "E1") and 34 in stored_seqs(s, "E2"), 20, "the last statuses stored")
        e1 = stored_seqs(s, "E1")
        e2_epoch2 = list((Counter(stored_seqs(s, "E2")) - Counter(range(1, 6))).elements())
        lost = {"E1": missing_within(e1), "E2": missing_within(e2_epoch2)}
        assert len(e1) + len(e2_epoch2) - 5 - 3 - 2 <= 2 * QUEUE  # the broker did drop: the run proves something
        assert lost["E1"] > 0 and lost["E2"] > 0 and sum(lost.values()) == 60 - (len(e1) - 6 + len(e2_epoch2) - 4)
        wait_until(lambda: col.engine.order.gaps("E1") == lost["E1"], 10, "E1's gaps counted")
        assert {d: col.engine.order.gaps(d) for d in lost} == lost  # exactly; the reboot is not a gap
        assert col.engine.order.stream("E2", "status").resets == 1
        wait_until(lambda: gaps_metric() - before == sum(lost.values()), 10, "semon_seq_gaps_total")
        # Durable with the batch, shown in the device's API view and in the board's feed.
        with api:
            for d, n in lost.items():
                wait_until(lambda d=d, n=n: httpx.get(f"{api.url}/devices/{d}").json()["seq_gaps"] == n,
                           10, f"{d}'s gaps in GET /devices/{d}")  # fmt: skip
                assert device_detail(db, open_telemetry(s), d)["device"]["seq_gaps"] == n

        def platform_alarm() -> list[Any]:
            with db.session() as ss:
                return list(
                    ss.scalars(select(Alarm).where(Alarm.device_id == "semon-platform", Alarm.type == "message_loss"))
                )

        wait_until(lambda: len(platform_alarm()) == 1, 10, "the platform alarm message_loss")
        (a,) = platform_alarm()
        assert a.active and "E1" in a.message and "E2" in a.message
    finally:
        col.stop()
