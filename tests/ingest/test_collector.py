"""Collector behaviour on real brokers and stores: dead letters, acks, spool."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from semon.ingest.collector import Collector
from semon.store.models import DeadLetter
from tests.conftest import Stack
from tests.helpers import elevator_payload, now_ms, publish_all, small_registry, wait_until

EL = "semon/v1/elevator/{}/status"


def test_malformed_payloads_become_dead_letters_and_collector_keeps_running(stack: Stack, tmp_path: Path):
    small_registry(stack.db, tmp_path / "reg.csv")
    col = Collector(stack.settings, stack.db, stack.telemetry())
    col.start()
    try:
        assert col.connected.wait(10)
        t = now_ms()
        vessel_ok = b'{"ts": %d, "seq": 1, "pressure": 1.2, "temperature": 20.5}' % t
        cases: list[tuple[str, bytes, str | None]] = [
            (EL.format("E1"), elevator_payload(t, 1), None),
            (EL.format("E1"), b'{"ts": 1764000000000, "seq": 2, "mode": "norm', "bad_json"),
            (EL.format("E1"), elevator_payload(t + 1, 3, floor="3"), "schema"),
            (EL.format("E1"), elevator_payload(t + 2, 4, running=1), "schema"),
            ("semon/v1/vessel/V1/status", b'{"ts": %d, "seq": 2, "temperature": 20.5}' % t, "schema"),
            (EL.format("E404"), elevator_payload(t, 1), "unknown_device"),
            ("semon/v1/vessel/V1/status", b'{"ts": %d, "seq": 3, "pressure": NaN, "temperature": 1}' % t, "non_finite"),
            (
                "semon/v1/vessel/V1/status",
                b'{"ts": %d, "seq": 4, "pressure": 1e999, "temperature": 1}' % t,
                "non_finite",
            ),
            (
                "semon/v1/vessel/V1/status",
                b'{"ts": %d, "seq": 5, "pressure": Infinity, "temperature": 1}' % t,
                "non_finite",
            ),
            (EL.format("E2"), b"{" + b" " * 1_000_000 + b"}", "too_large"),
            (EL.format("E2"), elevator_payload(t + 86_400_000, 1), "future_ts"),
            ("semon/v1/vessel/E1/status", vessel_ok, "kind_mismatch"),
            ("semon/v1/elevator/E1/online", b"yes", "schema"),
            ("semon/v1/elevator/E1/event", b'{"ts": %d, "seq": 9, "code": "x"}' % t, "schema"),
            (EL.format("E2"), b"[]", "schema"),
            ("semon/v1/vessel/V1/status", vessel_ok, None),
            ("semon/v1/elevator/E1/online", b"1", None),
            ("semon/v1/elevator/E1/event", b'{"ts": %d, "seq": 10, "code": 90}' % t, None),
            (EL.format("E1"), elevator_payload(t + 5, 11), None),
        ]
        publish_all(stack.settings, [(tp, p) for tp, p, _ in cases])
        expected = Counter(r for *_, r in cases if r)
        wait_until(lambda: col.stats["acked"] >= len(cases), 30, "every message acknowledged")
        assert col.dead_by_reason == expected
        assert col.stats["accepted"] == len(cases) - sum(expected.values())
        with stack.db.session() as s:
            rows = s.scalars(select(DeadLetter)).all()
        assert Counter(r.reason for r in rows) == expected
        big = next(r for r in rows if r.reason == "too_large")
        assert big.payload_size == 1_000_002 and big.device_id == "E2"
        schema_rows = [r.detail for r in rows if r.reason == "schema"]
        assert any("floor" in d for d in schema_rows) and any(
            "pressure" in d and "required" in d.lower() for d in schema_rows
        )
        # the collector is still alive and storing
        publish_all(stack.settings, [(EL.format("E2"), elevator_payload(t + 10, 1))])
        wait_until(lambda: stack.seqs("elevator_status").get("E2") == [1], 15, "E2 stored after the junk")
        assert sorted(stack.seqs("elevator_status")["E1"]) == [1, 11]
        assert stack.seqs("vessel_status")["V1"] == [1]
        assert stack.seqs("device_event")["E1"] == [10]
    finally:
        col.stop()


@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_influx_outage_spools_acks_and_replays_in_order(stack: Stack, tmp_path: Path):
    small_registry(stack.db, tmp_path / "reg.csv")
    col = Collector(stack.settings, stack.db, stack.telemetry())
    col.start()
    try:
        assert col.connected.wait(10)
        t = now_ms() - 60_000
        publish_all(stack.settings, [(EL.format("E1"), elevator_payload(t + i, i)) for i in range(1, 201)])
        wait_until(lambda: col.stats["acked"] >= 200, 20, "first 200 acked")
        assert stack.influx is not None
        stack.influx.stop()
        publish_all(stack.settings, [(EL.format("E1"), elevator_payload(t + i, i)) for i in range(201, 1201)])
        # InfluxDB is down, yet everything is acknowledged: it sits in the durable spool.
        wait_until(lambda: col.stats["acked"] >= 1200, 30, "outage messages acked via spool")
        assert col.stats["spooled_batches"] >= 1 and len(col.spool) >= 1
        stack.influx.start()
        wait_until(lambda: len(col.spool) == 0, 60, "spool replayed")
        assert sorted(stack.seqs("elevator_status")["E1"]) == list(range(1, 1201))
    finally:
        col.stop()


def test_batches_written_out_of_order_are_acknowledged_in_arrival_order(tmp_path: Path):
    """Two writers may finish in either order; PUBACKs must still leave in the order the
    messages arrived (MQTT 3.1.1 §4.6), so a batch waits for every earlier one."""
    from semon.config import Settings
    from semon.ingest.collector import Batch
    from semon.store.db import Database
    from semon.store.telemetry_sqlite import SqliteTelemetryStore

    s = Settings(mqtt_url="mqtt://127.0.0.1:1", db_url=f"sqlite:///{tmp_path}/s.db", data_dir=tmp_path / "d")
    db = Database(s.db_url)
    col = Collector(s, db, SqliteTelemetryStore(tmp_path / "t.db"))
    sent: list[list[int]] = []
    col.client.ack_many = lambda mids: sent.append(list(mids))  # type: ignore[method-assign]
    gen = col.source.gen
    batches = [Batch(acks=[(gen, 3 * k + i + 1) for i in range(3)], seq=k) for k in range(4)]
    col._acknowledge(batches[1])
    col._acknowledge(batches[3])
    assert sent == []  # batch 0 is not durable yet: nothing may leave
    col._acknowledge(batches[0])
    assert sent == [[1, 2, 3], [4, 5, 6]]
    col._acknowledge(batches[2])
    assert sent == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]
    assert col.stats["acked"] == 12
    col.spool.close()
    col.alarm_sink.journal.close()
    db.dispose()
