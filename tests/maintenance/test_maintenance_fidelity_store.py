"""Issue 13, "3+2" points 8, 9, 11 and 12 against real stores (SQLite and PostgreSQL): no IoT data
is unknown, a reversion found by a planning run is flagged and told like a live one, the evidence
names the alarms, due dates are local days, and the CLI's ``--as-of`` and rates table.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from semon.rules.alarms import AlarmStore
from semon.rules.base import RuleSpec, Severity
from semon.rules.maintenance.compliance import device_info, transition
from semon.rules.maintenance.records import record_visit
from semon.rules.maintenance.service import run_planning
from semon.store.maintenance import MaintenanceDecision
from semon.timeutil import local_day_start_ms
from tests.maintenance.test_maintenance_store import (  # noqa: F401  (fixtures)
    DAY_MS,
    FIRM,
    GOOD,
    POLICY,
    active_alarms,
    api_client,
    env,
    history_file,
    plans,
    raise_alarm,
)

NO_IOT = "无物联网数据 (no IoT data)"


# ------------------------------------------------------------------------- 8. no data is not 0 %
def test_an_elevator_without_monitoring_history_has_unknown_online_and_health(env):  # noqa: F811
    db, tel, now = env
    run = run_planning(db, tel, POLICY, at_ms=now)
    e9 = run.plan.loc["E9"]  # E9 has no telemetry at all
    assert math.isnan(e9["online_ratio"]) and math.isnan(e9["health_index"]), e9[["online_ratio", "health_index"]]
    assert e9["pts_health"] == 0
    assert f"{NO_IOT} for the last 30 days" in e9["reasons"]
    assert f"health: 0 of 15 points — {NO_IOT}: health index unknown" in e9["reasons"]
    e1 = run.plan.loc["E1"]  # E1 has 30 days of history: measured, not unknown
    assert e1["online_ratio"] >= 0.99 and e1["health_index"] >= 95
    with db.session() as s:
        d = s.scalar(select(MaintenanceDecision).where(MaintenanceDecision.device_id == "E9"))
        assert d.inputs["monitoring"]["online"]["ratio"] is None and d.inputs["monitoring"]["health"]["index"] is None
        assert d.inputs["zero_points"]["health"].endswith(f"{NO_IOT}: health index unknown")


# ------------------------------------------------------- 9. every reversion is flagged and told
def test_a_reversion_found_by_a_planning_run_is_flagged_and_told_like_a_live_one(env):  # noqa: F811
    db, tel, now = env
    run_planning(db, tel, POLICY, at_ms=now)
    assert {d: p.mode for d, p in plans(db).items() if d in GOOD} == dict.fromkeys(GOOD, "on_demand_90")
    # No collector runs: the alarms are in the store only. E1: 3 major faults (reverts); E2: 2 (does not).
    ids = [raise_alarm(db, "E1", typ, "major", now - k * DAY_MS)["alarm_id"]
           for k, typ in enumerate(("overspeed", "safety_circuit_open", "power_lost"), start=1)]  # fmt: skip
    for k, typ in enumerate(("overspeed", "safety_circuit_open"), start=1):
        raise_alarm(db, "E2", typ, "major", now - k * DAY_MS)
    trapped = raise_alarm(db, "E3", "trapped_passenger", "critical", now - 2 * DAY_MS)["alarm_id"]
    # Released long ago (not an open critical alarm): only the entrapment gate sees it.
    AlarmStore(db).apply(transition("cleared", RuleSpec("test.trapped_passenger", "elevator", "trapped_passenger",
                                                        Severity.critical), device_info("E3", "elevator", FIRM),
                                    now - 2 * DAY_MS, now - 2 * DAY_MS + 60_000, "", {}))  # fmt: skip
    sent: list[tuple[str, bytes]] = []
    run = run_planning(db, tel, POLICY, at_ms=now + 1000, notify=lambda t, b: sent.append((t, b)))

    p = plans(db)
    assert p["E1"].mode == "standard_15" and p["E1"].reverted
    assert p["E2"].mode == "on_demand_90" and not p["E2"].reverted
    assert p["E1"].reasons[0].startswith("reversion: major_faults: 3 major faults in the last 30 days")
    assert p["E1"].reasons[0].endswith("alarms " + ", ".join(map(str, sorted(ids))))
    assert p["E1"].half_month_due >= run.as_of  # due from the day it reverted, not retroactively
    with db.session() as s:
        d = s.get(MaintenanceDecision, p["E1"].decision_id)
        assert d.trigger == "reversion" and d.inputs["previous_mode"] == "on_demand_90"
        assert d.inputs["trigger"]["alarm"]["alarm_ids"] == sorted(ids)
    # An equipment-caused entrapment in the last 90 days (the entrapment gate) reverts E3 the same way.
    assert p["E3"].mode == "standard_15" and p["E3"].reverted
    assert p["E3"].reasons[0] == (f"reversion: entrapment: 1 equipment-caused entrapment(s) in the last 90 days, "
                                  f"alarm {trapped}")  # fmt: skip
    with db.session() as s:
        d3 = s.get(MaintenanceDecision, p["E3"].decision_id)
        assert d3.trigger == "reversion" and d3.inputs["trigger"]["alarm"]["alarm_ids"] == [trapped]
    reverted_alarms = {dev for dev, typ in active_alarms(db) if typ == "maintenance_reverted"}
    assert reverted_alarms == {"E1", "E3"}
    notices = [orjson.loads(b) for t, b in sent if orjson.loads(b)["type"] == "maintenance_reverted"]
    assert sorted((n["device_id"], n["event"]) for n in notices) == [("E1", "raised"), ("E3", "raised")]
    notices = [n for n in notices if n["device_id"] == "E1"]
    assert notices[0]["details"]["previous_mode"] == "on_demand_90" and notices[0]["details"]["mode"] == "standard_15"
    with api_client(db, tel, now + 2000) as api:
        listed = api.get("/maintenance/plans", params={"reverted": "true"}).json()
        assert [i["device_id"] for i in listed["items"]] == ["E1", "E3"]

    # The next run keeps it reverted and tells nothing new; its decision's evidence names the alarms.
    sent.clear()
    run_planning(db, tel, POLICY, at_ms=now + 3000, notify=lambda t, b: sent.append((t, b)))
    assert plans(db)["E1"].reverted and not [b for _, b in sent if b"maintenance_reverted" in b]
    with db.session() as s:
        last = s.scalars(select(MaintenanceDecision).where(MaintenanceDecision.device_id == "E1")
                         .order_by(MaintenanceDecision.id.desc())).first()  # fmt: skip
        assert last.trigger == "plan" and last.inputs["monitoring"]["major_fault_alarm_ids"] == sorted(ids)


# ----------------------------------------------------------------------------- 11. local days
@pytest.mark.parametrize("env", ["sqlite"], indirect=True)  # day arithmetic: the same code on both
def test_a_due_date_is_computed_in_local_days_across_midnight_utc(env):  # noqa: F811
    db, tel, now = env
    # Visited at 07:00 on 11 November in Guangzhou = 23:00 UTC on the 10th: a visit of the 11th.
    visited = datetime(2026, 11, 10, 23, tzinfo=UTC)
    record_visit(db, POLICY, device_id="E9", item_classes=["half_month"], performed_at=visited, technician="Li",
                 paperless=True, now=datetime.fromtimestamp(now / 1000, UTC))  # fmt: skip
    midnight = local_day_start_ms(datetime(2026, 11, 27).date())  # 00:00 on the 27th in Guangzhou
    assert midnight == int(datetime(2026, 11, 26, 16, tzinfo=UTC).timestamp() * 1000)
    # 23:59:59.999 local on the 26th (15:59 UTC): due that day (11th + 15), not overdue. In UTC days
    # the visit would be of the 10th, due the 25th, and overdue already.
    run = run_planning(db, tel, POLICY, at_ms=midnight - 1, device_ids=["E9"])
    e9 = run.plan.loc["E9"]
    assert e9["half_month_due"].date().isoformat() == "2026-11-26" and not e9["overdue_half_month"]
    assert ("E9", "maintenance_overdue_half_month") not in active_alarms(db)
    # One millisecond later it is the 27th in Guangzhou (still the 26th in UTC): overdue.
    run = run_planning(db, tel, POLICY, at_ms=midnight, device_ids=["E9"])
    assert run.as_of.isoformat() == "2026-11-27" and run.plan.loc["E9", "overdue_half_month"]
    msgs = [m for m in run.alarm_messages if m["type"] == "maintenance_overdue_half_month"]
    assert [m["device_id"] for m in msgs] == ["E9"] and msgs[0]["onset_ts"] == midnight


# ---------------------------------------------------------------------- 12. CLI: --as-of, rates
@pytest.mark.parametrize("env", ["sqlite"], indirect=True)
def test_cli_plan_as_of_a_local_day_and_rates_as_a_table(env, monkeypatch):  # noqa: F811
    db, tel, now = env
    from semon.cli import app

    monkeypatch.setenv("SEMON_DB_URL", db.url)
    monkeypatch.setenv("SEMON_TELEMETRY_SQLITE_PATH", str(tel.path))
    monkeypatch.delenv("SEMON_INFLUX_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # Rich folds a table to the terminal's width
    runner = CliRunner()
    r = runner.invoke(app, ["maintenance", "plan", "--dry-run", "--as-of", "2026-11-20"])
    assert r.exit_code == 0, r.output
    assert "maintenance plan 2026-11-20" in r.stdout
    r = runner.invoke(app, ["maintenance", "plan", "--dry-run", "--as-of", "2026-11-20", "--at", str(now)])
    assert r.exit_code == 2 and "give --at or --as-of, not both" in r.output
    r = runner.invoke(app, ["maintenance", "plan", "--dry-run", "--as-of", "20/11/2026"])
    assert r.exit_code == 2 and "is not a date (YYYY-MM-DD)" in r.output

    visited = datetime.fromtimestamp((now - DAY_MS) / 1000, UTC)
    record_visit(db, POLICY, device_id="E1", item_classes=["half_month"], performed_at=visited, technician="Li",
                 paperless=False, now=datetime.fromtimestamp(now / 1000, UTC))  # fmt: skip
    r = runner.invoke(app, ["maintenance", "rates", "--as-of", "2026-11-26"])
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "firm maintenance rates, year to 2026-11-26" in out
    for col in ("firm_id", "elevators", "records", "on_time_rate", "paperless_rate", "meets_size"):
        assert col in out
    row = next(ln for ln in out.splitlines() if FIRM in ln)
    # One visit, on time (E1 had no plan yet) and on paper: 100.0 % on time, 0.0 % paperless, 9 < 400.
    assert "100.0 %" in row and "0.0 %" in row and row.count("no") >= 2, row
