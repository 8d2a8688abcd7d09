"""Maintenance against real stores (SQLite and PostgreSQL): facts import, planning runs and their
audit trail, live reversion triggers, records and rates, compliance alarms, API and CLI."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from semon.api.app import create_app
from semon.api.deps import get_now_ms
from semon.config import Settings
from semon.ingest.decode import Decoder, to_points
from semon.rules.alarms import AlarmStore
from semon.rules.base import RuleSpec, Severity
from semon.rules.maintenance.compliance import device_info, transition
from semon.rules.maintenance.facts import FactsError, import_facts, update_device_facts, update_firm
from semon.rules.maintenance.policy import load_policy
from semon.rules.maintenance.records import record_visit
from semon.rules.maintenance.reversion import Reversion
from semon.rules.maintenance.service import firm_rates, run_planning
from semon.store.db import Database
from semon.store.maintenance import DeviceFacts, MaintenanceDecision, MaintenancePlan, MaintenanceRecord
from semon.store.models import Alarm, Firm, UseUnit
from semon.store.registry import import_devices_csv, load_registry
from semon.store.telemetry import Point
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from semon.timeutil import local_date
from tests.helpers import REGISTRY_HEADER

POLICY = load_policy()
DAY_MS = 86_400_000
# The module's clock: history, facts, plans, records and API "now" all hang off this instant
# (2026-11-26T08:00:00Z), never off the machine's clock, so no result depends on the day it runs.
NOW = 1_795_680_000_000
TODAY = local_date(NOW)
GOOD = [f"E{i}" for i in range(1, 9)]  # healthy, monitored, on-demand candidates
FIRM = "F001"


def history_points(registry: dict, device_id: str, now_ms: int, days: int = 30, cycles_per_day: int = 24,
                   door_days: int = 9) -> list[Point]:  # fmt: skip
    """Telemetry as a healthy terminal would have sent it: a keep-alive every 4 minutes for ``days``
    days, and door cycles (open 2.5 s, close 3 s, one trip each) over the last ``door_days`` days.
    Points are made by the collector's own decoder, so field types match live data exactly."""
    dec = Decoder(registry, 65536, 300_000)
    topic = f"semon/v1/elevator/{device_id}/status"
    msgs: list[dict] = []
    start = now_ms - days * DAY_MS
    for ts in range(start + 60_000, now_ms - 120_000, 240_000):
        msgs.append({"ts": ts, "door": "closed"})
    gap = DAY_MS // cycles_per_day
    for ts in range(now_ms - door_days * DAY_MS, now_ms - 600_000, gap):
        for dt, door in ((0, "opening"), (2_500, "open"), (6_000, "closing"), (9_000, "closed")):
            msgs.append({"ts": ts + 30_000 + dt, "door": door, "trip": door == "closed"})
    msgs.sort(key=lambda m: m["ts"])
    points: list[Point] = []
    runs = 1000
    for seq, m in enumerate(msgs, start=1):
        runs += 1 if m.get("trip") else 0
        body = dict(ts=m["ts"], seq=seq, mode="normal", running=False, dir="stop", floor=1, door_zone=True,
                    door=m["door"], occupied=False, speed=0.0, load=0.0, run_count=runs, run_hours=100.0)  # fmt: skip
        res = dec.decode(topic, orjson.dumps(body), now_ms)
        points += to_points(res, 0)
    return points


def copy_history(tel: SqliteTelemetryStore, template: list[Point], devices: list[str]) -> None:
    """The same history for each device, straight into the embedded store's table (encoded once: fast)."""
    fields = [orjson.dumps(p.fields) for p in template]
    rows = [
        (p.measurement, d, p.time_ns, orjson.dumps({**p.tags, "device_id": d}), f)
        for d in devices for p, f in zip(template, fields, strict=True)
    ]  # fmt: skip
    tel._db.execute("BEGIN")
    tel._db.executemany("INSERT OR REPLACE INTO telemetry VALUES (?,?,?,?,?)", rows)
    tel._db.execute("COMMIT")


def write_registry(db: Database, path: Path) -> None:
    firm = f"{FIRM},Firm One,5,A,98,U0001,Unit,5"
    rows = [f"{d},311012345202000{i:03d},elevator,Tianhe,Road {i},23.1,113.3,{firm},2025-06-01,1.75,20,1,,,,"
            for i, d in enumerate([*GOOD, "E9"], start=1)]  # fmt: skip
    rows.append(f"V1,210012345201900777,vessel,Haizhu,Road 9,23.1,113.3,{firm},2019-05-01,,,,1.76,1.6,80,LPG")
    path.write_text(REGISTRY_HEADER + "\n" + "\n".join(rows) + "\n")
    import_devices_csv(db, path)


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """An embedded telemetry file with 30 days of healthy history for E1–E8, built once per module."""
    d = tmp_path_factory.mktemp("history")
    db = Database(f"sqlite:///{d}/reg.db")
    write_registry(db, d / "registry.csv")
    tel = SqliteTelemetryStore(d / "telemetry.db")
    copy_history(tel, history_points(load_registry(db), GOOD[0], NOW), GOOD)
    tel._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    tel.close()
    db.dispose()
    return d / "telemetry.db", NOW


@pytest.fixture(params=["sqlite", "postgres"])
def env(
    request: pytest.FixtureRequest, tmp_path: Path, history_file: tuple[Path, int]
) -> Iterator[tuple[Database, SqliteTelemetryStore, int]]:
    """A registry of 9 elevators and a vessel; E1–E8 with 30 days of healthy telemetry and good facts."""
    url = f"sqlite:///{tmp_path}/m.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    db = Database(url)
    write_registry(db, tmp_path / "registry.csv")
    shutil.copy(history_file[0], tmp_path / "telemetry.db")
    tel = SqliteTelemetryStore(tmp_path / "telemetry.db")
    for d in GOOD:
        update_device_facts(db, d, {"inspection_valid_until": TODAY + timedelta(days=200),
                                    "liability_insurance": True})  # fmt: skip
    yield db, tel, NOW  # the history ends at NOW: plan as of then
    tel.close()
    db.dispose()


def api_client(db: Database, tel: SqliteTelemetryStore, now_ms: int) -> TestClient:
    """The API on these stores, its clock stopped at ``now_ms``."""
    app = create_app(Settings(db_url=db.url, api_auth="open"), db=db, telemetry=tel)
    app.dependency_overrides[get_now_ms] = lambda: now_ms
    return TestClient(app)


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def plans(db: Database) -> dict[str, MaintenancePlan]:
    with db.session() as s:
        return {p.device_id: p for p in s.scalars(select(MaintenancePlan))}


def active_alarms(db: Database) -> set[tuple[str, str]]:
    with db.session() as s:
        return {(a.device_id, a.type) for a in s.scalars(select(Alarm).where(Alarm.active))}


def raise_alarm(db: Database, device: str, typ: str, severity: str, onset_ts: int, kind: str = "elevator") -> dict:
    spec = RuleSpec(id=f"test.{typ}", kind=kind, alarm_type=typ, severity=Severity(severity))
    stored = AlarmStore(db).apply(transition("raised", spec, device_info(device, kind, FIRM), onset_ts, onset_ts,
                                             f"{typ} on {device}", {}))  # fmt: skip
    return stored.message if hasattr(stored, "message") else stored


# ------------------------------------------------------------------------------ facts
@pytest.mark.parametrize("env", ["postgres"], indirect=True)  # the SQLite path is the same code
def test_facts_import_is_all_or_nothing_and_reads_csv_and_excel(env, tmp_path: Path):
    db, _, _ = env
    bad = tmp_path / "bad.csv"
    bad.write_text("device_id,commission_date,liability_insurance,firm_id,firm_credit_grade,safety_grade\n"
                   "E1,2024-13-01,yes,,,\nE404,2024-01-01,,,,\nE2,2024-01-01,maybe,,,\nV1,,,F001,B,7\n")  # fmt: skip
    with pytest.raises(FactsError) as e:
        import_facts(db, bad)
    msg = str(e.value)
    for needle in ("4 invalid row(s)", "line 2: commission_date", "line 3: device 'E404' is not in the registry",
                   "line 4: liability_insurance", "line 5: safety_grade: 7 is outside 1–5"):  # fmt: skip
        assert needle in msg, msg
    with db.session() as s:
        assert s.get(DeviceFacts, "E9") is None and s.get(Firm, FIRM).credit_grade == "A"

    df = pd.DataFrame({
        "device_id": ["E9", "V1", None], "commission_date": [date(2024, 3, 1), None, None],
        "inspection_valid_until": ["2027-01-31", None, None], "liability_insurance": ["是", None, None],
        "safety_grade": [None, 2, None], "last_inspection_date": [None, "2021-01-10", None],
        "use_unit_id": [None, None, "U0001"], "use_unit_mgmt_level": [None, None, 4],
    })  # fmt: skip
    df.to_excel(tmp_path / "facts.xlsx", index=False)
    assert import_facts(db, tmp_path / "facts.xlsx") == {"devices": 2, "firms": 0, "use_units": 1}
    csv = tmp_path / "firms.csv"
    csv.write_text("firm_id,firm_tech_level,firm_credit_grade,firm_credit_score\nF001,4,b,88.5\n")
    assert import_facts(db, csv) == {"devices": 0, "firms": 1, "use_units": 0}
    with db.session() as s:
        e9, v1 = s.get(DeviceFacts, "E9"), s.get(DeviceFacts, "V1")
        assert (e9.commission_date, e9.inspection_valid_until, e9.liability_insurance) == (
            date(2024, 3, 1), date(2027, 1, 31), True)
        assert (v1.safety_grade, v1.last_inspection_date) == (2, date(2021, 1, 10))
        f = s.get(Firm, FIRM)
        assert (f.tech_level, f.credit_grade, f.credit_score) == (4, "B", 88.5)
        assert s.get(UseUnit, "U0001").mgmt_level == 4


# --------------------------------------------------------------------------- planning
def test_planning_decides_from_facts_and_live_data_and_keeps_an_audit_trail(env):
    db, tel, now = env
    run = run_planning(db, tel, POLICY, at_ms=now)
    p = run.plan
    assert list(p.loc[GOOD, "mode"].unique()) == ["on_demand_90"], p.loc[GOOD, ["mode", "reasons"]]
    e1 = p.loc["E1"]
    assert e1["online_ratio"] >= 0.99 and e1["health_index"] >= 95, e1[["online_ratio", "health_index"]]
    assert e1["door_cycles_recent"] >= 20 and e1["trips_baseline_per_day"] == pytest.approx(24, abs=1.5)
    # E9: no telemetry, never inspected (commissioned 2025-06, first due 2026-06 passed unrecorded).
    assert p.loc["E9", "mode"] == "standard_15"
    assert p.loc["E9", "failed_gates"] == ("online", "inspection"), p.loc["E9", "reasons"]
    assert run.decisions_written == 9
    # V1 (in service since 2019-05-01, never inspected): its first inspection was due by 2022-05-01.
    assert run.inspections.set_index("device_id").loc["V1", "inspection_status"] == "overdue"

    # Nothing changed: no new decision. The firm drops to grade B: 90 → 30 days, with a new decision.
    assert run_planning(db, tel, POLICY, at_ms=now + 1000).decisions_written == 0
    update_firm(db, FIRM, {"firm_credit_grade": "B"})
    run2 = run_planning(db, tel, POLICY, at_ms=now + 60_000)
    assert run2.plan.loc["E1", "mode"] == "on_demand_30"
    with db.session() as s:
        hist = list(s.scalars(select(MaintenanceDecision).where(MaintenanceDecision.device_id == "E1")
                              .order_by(MaintenanceDecision.id)))  # fmt: skip
    assert [d.mode for d in hist] == ["on_demand_90", "on_demand_30"]
    first = hist[0]
    assert first.policy_version == POLICY.version and first.policy_sha256 == POLICY.sha256
    assert {g["gate"] for g in first.gates} == {"credit_grade", "online", "inspection", "entrapment", "open_alarm"}
    assert first.breakdown["total"] == pytest.approx(sum(v for k, v in first.breakdown.items() if k != "total"))
    ev = first.inputs["monitoring"]
    assert ev["online"]["ratio"] >= 0.99 and ev["health"]["door_drift"]["cycles"][0] >= 20  # [recent, baseline]
    assert first.inputs["registry"]["firm_credit_grade"] == "A"

    # "Why was E1 on 90 days then?" — the decision in force at a past instant.
    with api_client(db, tel, now + 120_000) as api:
        then = api.get("/devices/E1/maintenance", params={"at": str(now + 30_000)}).json()
        assert then["decision"]["mode"] == "on_demand_90" and "credit grade A" in then["decision"]["reasons"][0]
        cur = api.get("/devices/E1/maintenance").json()
        assert cur["plan"]["mode"] == "on_demand_30" and cur["decision"]["mode"] == "on_demand_30"
        assert cur["inspection"]["status"] == "ok"
        hist_api = api.get("/devices/E1/maintenance/decisions").json()
        assert [d["mode"] for d in hist_api] == ["on_demand_30", "on_demand_90"]
        listed = api.get("/maintenance/plans", params={"mode": "on_demand_30", "limit": 3}).json()
        assert listed["total"] == 8 and len(listed["items"]) == 3
        assert api.get("/maintenance/plans", params={"mode": "standard_15"}).json()["items"][0]["device_id"] == "E9"
        assert api.get("/maintenance/policy").json()["version"] == POLICY.version
        assert api.get("/devices/NOPE/maintenance").status_code == 404


# ---------------------------------------------------------------------------- reversion
def test_live_reversion_triggers(env):
    """Table of live triggers: which alarm transitions put an on-demand elevator back on 15 days."""
    db, tel, now = env
    run_planning(db, tel, POLICY, at_ms=now)
    assert {d: p.mode for d, p in plans(db).items() if d in GOOD} == dict.fromkeys(GOOD, "on_demand_90")
    sent: list[tuple[str, bytes]] = []
    rev = Reversion(db, POLICY, notify=lambda t, b: sent.append((t, b)), clock=lambda: now)
    h = 3_600_000
    for typ in ("safety_circuit_open", "overspeed"):
        raise_alarm(db, "E3", typ, "major", now - 5 * DAY_MS)  # two major faults earlier this month
    raise_alarm(db, "E4", "safety_circuit_open", "major", now - 40 * DAY_MS)  # outside the 30 days
    cases = [
        # device, alarm type, severity, event, kind → trigger expected (None: no reversion)
        ("E1", "trapped_passenger", "critical", "raised", "elevator", "entrapment"),
        ("E2", "trapped_passenger", "critical", "cleared", "elevator", None),
        ("E3", "power_lost", "major", "raised", "elevator", "major_faults"),  # third in 30 days
        ("E4", "power_lost", "major", "raised", "elevator", None),  # second in 30 days
        ("E5", "door_fault", "minor", "raised", "elevator", None),
        ("E6", "alarm_button", "major", "raised", "elevator", None),  # people press it: not a fault
        ("V1", "overpressure", "critical", "raised", "vessel", None),
    ]
    for dev, typ, sev, event, kind, expected in cases:
        msg = raise_alarm(db, dev, typ, sev, now, kind)
        msg = {**msg, "event": event}
        got = rev.on_transition(msg)
        assert (got.trigger if got else None) == expected, (dev, typ, got)
    # Offline: checked periodically; 25 h reverts, 23 h does not.
    raise_alarm(db, "E7", "terminal_offline", "minor", now - 25 * h)
    raise_alarm(db, "E8", "terminal_offline", "minor", now - 23 * h)
    assert [r.device_id for r in rev.check_offline(now)] == ["E7"]
    # A second trigger on an elevator already on 15 days changes nothing.
    assert rev.on_transition({**raise_alarm(db, "E1", "overspeed", "critical", now), "type": "trapped_passenger"}) \
        is None

    p = plans(db)
    reverted = {d for d in GOOD if p[d].mode == "standard_15"}
    assert reverted == {"E1", "E3", "E7"}
    assert all(p[d].reverted and p[d].interval_days == 15 for d in reverted)
    assert p["E1"].reasons[0].startswith("reversion: entrapment: trapped_passenger alarm")
    assert p["E3"].reasons[0].startswith("reversion: major_faults: 3 major faults in the last 30 days")
    assert p["E7"].reasons[0].startswith("reversion: offline: terminal offline for 25.0 h")
    assert p["E1"].half_month_due == local_date(now)  # due now, not in the past
    with db.session() as s:
        d = s.get(MaintenanceDecision, p["E1"].decision_id)
        assert d.trigger == "reversion" and d.inputs["previous_mode"] == "on_demand_90"
        assert d.inputs["trigger"]["alarm"]["type"] == "trapped_passenger"
    assert {(dev, typ) for dev, typ in active_alarms(db) if typ == "maintenance_reverted"} == {
        ("E1", "maintenance_reverted"), ("E3", "maintenance_reverted"), ("E7", "maintenance_reverted")}
    topics = sorted(t for t, _ in sent)
    assert topics == [f"semon/v1/alarms/{FIRM}/E1", f"semon/v1/alarms/{FIRM}/E3", f"semon/v1/alarms/{FIRM}/E7"]
    notice = orjson.loads(dict(sent)[f"semon/v1/alarms/{FIRM}/E1"])
    assert notice["type"] == "maintenance_reverted" and notice["details"]["previous_mode"] == "on_demand_90"
    assert notice["details"]["mode"] == "standard_15" and "entrapment" in notice["details"]["reason"]

    # The next plan run keeps E1 on 15 days (entrapment gate), E3 too (faults trigger); E7 came back
    # online (its offline alarm cleared) → on demand again, and its reversion notice clears.
    AlarmStore(db).apply(transition("cleared", RuleSpec("test.terminal_offline", "elevator", "terminal_offline",
                                                        Severity.minor), device_info("E7", "elevator", FIRM),
                                    now - 25 * h, now, "", {}))  # fmt: skip
    run = run_planning(db, tel, POLICY, at_ms=now + 1000)
    assert run.plan.loc["E1", "failed_gates"] == ("entrapment", "open_alarm")
    assert run.plan.loc["E3", "fired_triggers"] == ("major_faults",)
    assert run.plan.loc["E7", "mode"] == "on_demand_90"
    assert ("E7", "maintenance_reverted") not in active_alarms(db)
    assert plans(db)["E1"].reverted and not plans(db)["E7"].reverted


# ------------------------------------------------------------------ records and compliance
def test_records_recompute_due_dates_clear_overdue_alarms_and_feed_firm_rates(env):
    db, tel, now = env
    update_device_facts(db, "V1", {"last_inspection_date": date(2020, 1, 1), "safety_grade": 3})
    run_planning(db, tel, POLICY, at_ms=now)
    assert ("V1", "inspection_overdue") in active_alarms(db)
    # Three days later nobody has maintained E9 (due the day it was first planned).
    later = now + 3 * DAY_MS
    run = run_planning(db, tel, POLICY, at_ms=later)
    assert run.plan.loc["E9", "overdue_half_month"]
    assert ("E9", "maintenance_overdue_half_month") in active_alarms(db)
    assert not any(typ.startswith("maintenance_overdue") for dev, typ in active_alarms(db) if dev in GOOD)

    # The visits are done on the first plan day and entered three days later.
    today, entered = utc(now), utc(later)
    rec, published = record_visit(db, POLICY, device_id="E9", item_classes=["half_month"], performed_at=today,
                                  technician="Li Wei", paperless=True, now=entered)  # fmt: skip
    assert rec.item_class == "half_month" and rec.on_time  # due date (first plan day) is today
    assert [m["event"] for m in published] == ["cleared"]
    assert ("E9", "maintenance_overdue_half_month") not in active_alarms(db)
    assert plans(db)["E9"].half_month_due == today.date() + timedelta(days=15)
    # A late visit (E2's due date set back), a paper one, and a yearly visit covering every class.
    with db.session() as s:
        s.get(MaintenancePlan, "E2").half_month_due = today.date() - timedelta(days=2)
    late, _ = record_visit(db, POLICY, device_id="E2", item_classes=["half_month"], performed_at=today,
                           technician="Zhang", paperless=False, now=entered)  # fmt: skip
    assert not late.on_time
    y, _ = record_visit(db, POLICY, device_id="E3", item_classes=["yearly"], performed_at=today, technician="Wu",
                        paperless=True, now=entered)  # fmt: skip
    assert y.item_classes == ["half_month", "quarterly", "half_year", "yearly"]
    e3 = plans(db)["E3"]
    assert e3.half_month_due == today.date() + timedelta(days=e3.interval_days)
    assert e3.yearly_due == date(today.year + 1, 12, 31)
    rates = firm_rates(db, today.date()).loc[FIRM]
    assert (rates["records"], rates["on_time"], rates["paperless"], rates["elevators"]) == (3, 2, 2, 9)
    assert rates["on_time_rate"] == pytest.approx(2 / 3, abs=1e-4) and not rates["meets_paperless"]

    # The vessel gets inspected: the next run clears its overdue alarm.
    update_device_facts(db, "V1", {"last_inspection_date": today.date()})
    run_planning(db, tel, POLICY, at_ms=now + 1000)
    assert ("V1", "inspection_overdue") not in active_alarms(db)
    with pytest.raises(ValueError, match="unknown item class"):
        record_visit(db, POLICY, device_id="E1", item_classes=["weekly"], performed_at=today, technician="x",
                     paperless=True, now=entered)  # fmt: skip
    with pytest.raises(ValueError, match="maintenance records are for elevators"):
        record_visit(db, POLICY, device_id="V1", item_classes=["yearly"], performed_at=today, technician="x",
                     paperless=True, now=entered)  # fmt: skip


def test_api_facts_records_rates_inspections(env, tmp_path: Path):
    db, tel, now = env
    run_planning(db, tel, POLICY, at_ms=now)
    with api_client(db, tel, now + 60_000) as api:
        r = api.patch("/devices/E9/maintenance/facts", json={"commission_date": "2026-01-02",
                                                             "inspection_valid_until": "2027-01-01"})  # fmt: skip
        assert r.status_code == 200 and r.json()["commission_date"] == "2026-01-02"
        assert api.patch("/devices/E9/maintenance/facts", json={"colour": "red"}).status_code == 422
        assert api.patch("/devices/NOPE/maintenance/facts", json={}).status_code == 404
        r = api.patch(f"/maintenance/firms/{FIRM}", json={"credit_grade": "a", "credit_score": 97})
        assert r.json()["credit_grade"] == "A"
        assert api.patch("/maintenance/use-units/U0001", json={"mgmt_level": 4}).json()["mgmt_level"] == 4
        r = api.post("/maintenance/facts/import", content=b"device_id,liability_insurance\nE9,no\n",
                     headers={"content-type": "text/csv"})  # fmt: skip
        assert r.json() == {"devices": 1, "firms": 0, "use_units": 0}
        r = api.post("/maintenance/facts/import", content=b"device_id,liability_insurance\nE404,no\n",
                     headers={"content-type": "text/csv"})  # fmt: skip
        assert r.status_code == 400 and "E404" in r.json()["detail"]
        pd.DataFrame({"device_id": ["E8"], "commission_date": ["2020-02-02"]}).to_excel(tmp_path / "f.xlsx",
                                                                                        index=False)  # fmt: skip
        xlsx = (tmp_path / "f.xlsx").read_bytes()
        r = api.post("/maintenance/facts/import", content=xlsx,
                     headers={"content-type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
        assert r.json()["devices"] == 1
        r = api.post("/maintenance/records", json={"device_id": "E9", "item_classes": ["quarterly"],
                                                   "technician": "Li Wei", "paperless": True})  # fmt: skip
        assert r.status_code == 201 and r.json()["item_classes"] == ["half_month", "quarterly"]
        rid = r.json()["id"]
        assert api.get(f"/maintenance/records/{rid}").json()["device_id"] == "E9"
        assert api.get("/maintenance/records", params={"device_id": "E9"}).json()["total"] == 1
        assert api.post("/maintenance/records", json={"device_id": "E9", "item_classes": ["weekly"],
                                                      "technician": "x"}).status_code == 422  # fmt: skip
        assert api.post("/maintenance/records", json={"device_id": "NOPE", "item_classes": ["yearly"],
                                                      "technician": "x"}).status_code == 404  # fmt: skip
        firms = api.get("/maintenance/firms").json()
        assert firms[0]["firm_id"] == FIRM and firms[0]["records"] == 1 and firms[0]["paperless_rate"] == 1.0
        ins = api.get("/maintenance/inspections", params={"kind": "elevator", "status": "ok"}).json()
        assert {i["device_id"] for i in ins["items"]} == {*GOOD, "E9"}
        r = api.post("/maintenance/plans/run", json={"device_ids": ["E9"], "dry_run": True}).json()
        assert r["elevators"] == 1 and r["plans"][0]["device_id"] == "E9"
        r = api.post("/maintenance/plans/run").json()
        assert r["elevators"] == 9 and sum(r["modes"].values()) == 9 and r["as_of"] == TODAY.isoformat()
    # The day is the app's clock's, not the machine's: a year on, every inspection has run out.
    with api_client(db, tel, now + 365 * DAY_MS) as api:
        ins = api.get("/maintenance/inspections", params={"kind": "elevator", "status": "overdue"}).json()
        assert {i["device_id"] for i in ins["items"]} == {*GOOD, "E9"}


@pytest.mark.parametrize("env", ["postgres"], indirect=True)  # the SQLite path is the same code
def test_cli_plan_outputs_table_csv_and_excel(env, tmp_path: Path, monkeypatch):
    db, tel, now = env
    from semon.cli import app

    monkeypatch.setenv("SEMON_DB_URL", db.url)
    monkeypatch.setenv("SEMON_TELEMETRY_SQLITE_PATH", str(tel.path))
    monkeypatch.delenv("SEMON_INFLUX_URL", raising=False)
    runner = CliRunner()
    at = ["--at", str(now)]  # as of the end of the history, not the machine's today
    r = runner.invoke(app, ["maintenance", "plan", "--format", "csv", *at])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("device_id,", "E"))]
    assert lines[0].startswith("device_id,firm_id,district,mode,interval_days,score")
    assert sum(",on_demand_90," in ln for ln in lines) == 8 and len(lines) == 10
    out = tmp_path / "plan.xlsx"
    r = runner.invoke(app, ["maintenance", "plan", "--format", "xlsx", "--output", str(out), *at])
    assert r.exit_code == 0, r.output
    sheet = pd.read_excel(out, sheet_name=None)
    assert set(sheet) == {"plan", "summary", "policy"} and len(sheet["plan"]) == 9
    assert sheet["policy"].loc[0, "policy_version"] == POLICY.version
    assert pd.Timestamp(sheet["policy"].loc[0, "as_of"]).date() == local_date(now)
    r = runner.invoke(app, ["maintenance", "plan", "--format", "table", "--limit", "2", *at])
    assert r.exit_code == 0 and f"maintenance plan {local_date(now)}" in r.stdout and "on_demand_90" in r.output
    assert runner.invoke(app, ["maintenance", "plan", "--at", "yesterday"]).exit_code == 2
    r = runner.invoke(app, ["maintenance", "record", "E2", "--classes", "half_year", "--technician", "Chen",
                            "--at", utc(now).isoformat()])  # fmt: skip
    assert r.exit_code == 0 and "on time" in r.output
    r = runner.invoke(app, ["maintenance", "rates", *at])
    assert r.exit_code == 0 and "F001" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = 1\n")
    r = runner.invoke(app, ["maintenance", "policy", "--check", str(bad)])
    assert r.exit_code == 2 and "version: Field required" in r.output
    with db.session() as s:
        assert s.scalar(select(MaintenanceRecord.technician)) == "Chen"
