"""docs/rules.md is generated from the catalog; scoring counts what it should."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from semon.rules.catalog import Catalog
from semon.rules.docs import MODES_BEGIN, MODES_END, render
from semon.rules.engine import RuleEngine
from semon.rules.scoring import load_truth, score, totals
from semon.store.db import Database
from semon.store.models import Alarm, AlarmEvent
from tests.helpers import small_registry
from tests.services import REPO

T0 = 1_764_000_000_000


def test_docs_catalog_table_is_generated_from_the_catalog():
    doc = (REPO / "docs/rules.md").read_text()
    assert render(doc) == doc, "docs/rules.md is stale: run python -m semon.rules.docs"
    assert "`vessel.gas_leak`" in doc and "| gbt24476 | 90 | alarm_button |" in doc
    # the rule × mode matrix, generated too: one row per elevator rule, a reason in every cell
    matrix = doc.partition(MODES_BEGIN)[2].partition(MODES_END)[0]
    rows = [ln for ln in matrix.splitlines() if ln.startswith("| `elevator.")]
    assert len(rows) == sum(r.kind == "elevator" for r in Catalog().defs.values())
    assert "| `elevator.run_time_anomaly` | ✔" in matrix and all(ln.count("✔") + ln.count("✘") == 8 for ln in rows)


def test_docs_state_the_offline_limit_the_engine_uses():
    engine = RuleEngine()
    off = engine.catalog.offline
    figure = f"{off.factor:g} × keep-alive of {off.keepalive_s:g} s = {engine.offline_timeout_ms // 1000} s"
    for name in ("rules.md", "protocol.md"):
        assert figure in " ".join((REPO / "docs" / name).read_text().split()), name


def _alarm(db: Database, dev: str, typ: str, onset: int, start: int, end: int | None, sev: str, steps=()) -> None:
    now = datetime.now(UTC)
    with db.session() as s:
        a = Alarm(device_id=dev, kind="elevator" if dev.startswith("E") else "vessel", firm_id="F001", type=typ,
                  rule_id=f"x.{typ}", severity=sev, active=end is None, acknowledged=False, onset_ts=onset,
                  start_ts=start, end_ts=end, created_at=now, updated_at=now, message="", details={})  # fmt: skip
        s.add(a)
        s.flush()
        for ts, sv, ev in (
            [(start, steps[0] if steps else sev, "raised"), *steps[1:]] if steps else [(start, sev, "raised")]
        ):
            s.add(AlarmEvent(alarm_id=a.id, event=ev, ts=ts, at=now, severity=sv, details={}))


def test_score_recall_precision_latency_and_implied(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path}/s.db")
    small_registry(db, tmp_path / "reg.csv")
    truth = tmp_path / "truth.jsonl"

    def rec(dev: str, typ: str, end: int, **kw: object) -> dict:
        return {"device_id": dev, "alarm_type": typ, "severity": "critical", "onset_ts": T0, "end_ts": T0 + end, **kw}

    recs = [
        rec("E1", "trapped_passenger", 60_000, implied=["stopped_outside_door_zone"]),
        rec("E2", "trapped_passenger", 60_000),
        rec("V1", "overpressure", 30_000),
        {"device_id": "E1", "kind": "elevator", "onset_ts": None, "alarm_type": "door_fault"},  # never visible: skipped
    ]
    truth.write_text("\n".join(json.dumps(r) for r in recs))
    _alarm(db, "E1", "trapped_passenger", T0, T0 + 20_000, T0 + 60_000, "critical")  # on time
    _alarm(db, "E1", "stopped_outside_door_zone", T0, T0 + 45_000, T0 + 60_000, "major")  # implied: fine
    _alarm(db, "E2", "trapped_passenger", T0, T0 + 23_000, T0 + 60_000, "critical")  # 2 s late
    # overpressure raised at the major rung first, critical 1 s later (what counts for latency)
    _alarm(db, "V1", "overpressure", T0 - 1000, T0 - 1000, T0 + 30_000, "critical",
           steps=("major", (T0 + 500, "critical", "severity_changed")))  # fmt: skip
    _alarm(db, "E2", "alarm_button", T0 + 100_000, T0 + 100_000, None, "major")  # nothing explains it
    sc = score(db, load_truth(truth))
    assert sc["trapped_passenger"].recall == 1.0 and sc["trapped_passenger"].late == 1
    assert sorted(sc["trapped_passenger"].latencies_ms) == [20_000, 23_000]
    assert sc["overpressure"].latencies_ms == [-1000]  # warned at the 90 % rung before set pressure
    assert sc["stopped_outside_door_zone"].precision == 1.0
    assert sc["alarm_button"].precision == 0.0 and sc["alarm_button"].false_positives == 1
    t = totals(sc)
    assert t["faults"] == 3 and t["detected"] == 3 and t["alarms"] == 5 and t["false_positives"] == 1
    db.dispose()


def test_a_standing_alarm_is_no_detection_with_negative_latency(tmp_path: Path):
    # The demo's negative p50: an overpressure alarm standing since the vessel's first message
    # (the old 90 % rung at normal working pressure) matched a fault injected ten minutes later.
    db = Database(f"sqlite:///{tmp_path}/s.db")
    small_registry(db, tmp_path / "reg.csv")
    truth = tmp_path / "truth.jsonl"
    recs = [
        {
            "device_id": "V1",
            "alarm_type": "overpressure",
            "severity": "critical",
            "onset_ts": T0,
            "end_ts": T0 + 30_000,
        },
        {"device_id": "E2", "alarm_type": "door_fault", "severity": "minor", "onset_ts": T0, "end_ts": T0 + 30_000},
        {
            "device_id": "E1",
            "alarm_type": "",
            "severity": None,
            "onset_ts": T0,
            "end_ts": T0 + 9_000,
        },  # expects nothing
    ]
    truth.write_text("\n".join(json.dumps(r) for r in recs))
    early = T0 - 600_000
    # V1: standing major, the fault's critical rung reached 2 s after the onset: detected, 2 s
    _alarm(db, "V1", "overpressure", early, early, T0 + 30_000, "critical",
           steps=("major", (T0 + 2000, "critical", "severity_changed")))  # fmt: skip
    # E2: a door fault standing all along: the injected one was never told apart from it
    _alarm(db, "E2", "door_fault", early, early, T0 + 30_000, "minor")
    _alarm(db, "E1", "run_time_anomaly", T0 + 1000, T0 + 1000, T0 + 5000, "major")  # raised where nothing may be
    loaded = load_truth(truth)
    assert [t.device_id for t in loaded] == ["V1", "E2"]
    sc = score(db, loaded)
    assert sc["overpressure"].latencies_ms == [2000] and sc["overpressure"].detected == 1
    assert sc["door_fault"].preexisting == 1 and sc["door_fault"].detected == 0 and not sc["door_fault"].latencies_ms
    assert sc["run_time_anomaly"].false_positives == 1
    assert totals(sc)["preexisting"] == 1


def test_implied_alarms_count_from_the_scheduled_start(tmp_path: Path):
    # A sensor glitch 60 s before the rise: its out-of-range alarm ended before the rise began.
    db = Database(f"sqlite:///{tmp_path}/s.db")
    small_registry(db, tmp_path / "reg.csv")
    truth = tmp_path / "truth.jsonl"
    rec = {
        "device_id": "V1", "alarm_type": "pressure_rise_rate", "severity": "major", "onset_ts": T0,
        "end_ts": T0 + 60_000, "implied": ["sensor_out_of_range"], "details": {"scheduled_ts": [T0 - 70_000, T0]},
    }  # fmt: skip
    truth.write_text(json.dumps(rec))
    _alarm(db, "V1", "sensor_out_of_range", T0 - 68_000, T0 - 66_000, T0 - 55_000, "minor")
    _alarm(db, "V1", "pressure_rise_rate", T0, T0 + 5000, T0 + 60_000, "major")
    _alarm(db, "V1", "sensor_out_of_range", T0 - 300_000, T0 - 298_000, T0 - 290_000, "minor")  # before: unexplained
    sc = score(db, load_truth(truth))
    assert sc["sensor_out_of_range"].alarms == 2 and sc["sensor_out_of_range"].false_positives == 1
    assert sc["pressure_rise_rate"].detected == 1
