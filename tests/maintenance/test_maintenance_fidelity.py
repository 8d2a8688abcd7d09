"""Issue 13, "3+2" points 7–12, pure parts (no I/O): overdue by law on the first planning, never
inspected is overdue, why a part scored 0, local days (SEMON_TIMEZONE) and the one time module.

The store-backed parts (no IoT data, reversions found by a planning run, evidence alarm ids, the
CLI) are in tests/maintenance/test_maintenance_fidelity_store.py; rescue causes and step times in
tests/rescue/test_rescue.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from pydantic import ValidationError

from semon.config import Settings
from semon.rules.maintenance.inspection import inspection_frame
from semon.rules.maintenance.planner import plan_frame
from semon.rules.maintenance.policy import default_policy_path, load_policy
from semon.timeutil import local_date, local_day_end_ms, local_day_start_ms, local_iso, now_ms, to_local
from tests.maintenance.test_maintenance_policy import AS_OF, BASE

POLICY = load_policy(default_policy_path())
STD_GATE_FAIL = {"firm_credit_grade": "C"}  # fails the credit gate: the standard 15-day cycle


def _plan(row: dict, as_of: date = AS_OF) -> pd.Series:
    return plan_frame(pd.DataFrame([{**BASE, **row}]), POLICY, as_of).iloc[0]


# ---------------------------------------------------------------- 7. overdue by law on the first plan
@pytest.mark.parametrize(("days_ago", "overdue"), [(14, False), (15, False), (16, True), (20, True)])
def test_first_planning_of_a_15_day_elevator_is_overdue_by_law(days_ago: int, overdue: bool):
    """"At least every 15 days" (TSG T5002): last visit + 15 days is the due day itself; a day later
    is overdue — on the very first planning too (no "due never before the mode began")."""
    p = _plan({**STD_GATE_FAIL, "last_half_month": AS_OF - timedelta(days=days_ago)})
    assert p["mode"] == "standard_15" and p["planned_since"].date() == AS_OF
    assert p["half_month_due"].date() == AS_OF - timedelta(days=days_ago) + timedelta(days=15)
    assert bool(p["overdue_half_month"]) is overdue


@pytest.mark.parametrize(("days_ago", "overdue"), [(90, False), (91, True), (200, True)])
def test_first_planning_of_a_90_day_elevator_is_overdue_past_90_days(days_ago: int, overdue: bool):
    p = _plan({"last_half_month": AS_OF - timedelta(days=days_ago)})
    assert p["mode"] == "on_demand_90"
    assert p["half_month_due"].date() == AS_OF - timedelta(days=days_ago) + timedelta(days=90)
    assert bool(p["overdue_half_month"]) is overdue


def test_a_reversion_is_still_due_from_the_day_it_began_not_retroactively():
    """90 → 15 days with the last visit 40 days ago: due today (the day the shorter cycle began)."""
    p = _plan({"major_faults": 3, "current_mode": "on_demand_90", "mode_since": AS_OF - timedelta(days=60),
               "planned_since": AS_OF - timedelta(days=60), "last_half_month": AS_OF - timedelta(days=40)})  # fmt: skip
    assert p["mode"] == "standard_15" and p["mode_since"].date() == AS_OF
    assert p["half_month_due"].date() == AS_OF and not p["overdue_half_month"]
    # The next day the mode is unchanged (began yesterday) and it is still due from then: overdue now.
    nxt = _plan({"major_faults": 3, "current_mode": "standard_15", "mode_since": AS_OF,
                 "planned_since": AS_OF - timedelta(days=60), "last_half_month": AS_OF - timedelta(days=40)},
                AS_OF + timedelta(days=1))  # fmt: skip
    assert nxt["half_month_due"].date() == AS_OF and nxt["overdue_half_month"]


def test_no_visit_on_record_is_due_the_day_planning_began():
    p = _plan(STD_GATE_FAIL)
    assert p["half_month_due"].date() == AS_OF and not p["overdue_half_month"]


# ------------------------------------------------------------------- 10. never inspected is overdue
def _inspection(kind: str, as_of: date, **facts) -> pd.Series:
    return inspection_frame(pd.DataFrame([{"kind": kind, **facts}]), POLICY, as_of).iloc[0]


@pytest.mark.parametrize(
    ("kind", "commissioned", "as_of", "status"),
    [
        # Vessel: first periodic inspection within 3 years of commissioning (TSG 21-2016).
        ("vessel", date(2022, 11, 26), date(2025, 11, 26), "due_soon"),  # exactly 3 years: the due day
        ("vessel", date(2022, 11, 26), date(2025, 11, 27), "overdue"),  # 3 years and a day
        ("vessel", date(2022, 11, 26), date(2026, 11, 26), "overdue"),  # four years in service
        # Elevator: yearly.
        ("elevator", date(2025, 11, 26), date(2026, 11, 26), "due_soon"),
        ("elevator", date(2025, 11, 26), date(2026, 11, 27), "overdue"),
    ],
)
def test_never_inspected_is_overdue_from_the_day_after_the_first_deadline(kind, commissioned, as_of, status):
    r = _inspection(kind, as_of, commission_date=commissioned)
    years = 3 if kind == "vessel" else 1
    assert r["inspection_status"] == status, r.to_dict()
    assert r["inspection_due"].date() == commissioned.replace(year=commissioned.year + years)
    if status == "overdue":
        assert r["inspection_basis"] == "first-inspection deadline passed with no inspection on record"


def test_without_any_date_the_inspection_is_unknown():
    assert _inspection("vessel", AS_OF)["inspection_status"] == "unknown"


def test_a_never_inspected_vessel_raises_the_overdue_inspection_compliance_alarm():
    from semon.rules.maintenance.compliance import wanted_alarms

    reg = pd.DataFrame([{"device_id": "V1", "kind": "vessel", "firm_id": "F1", "commission_date": date(2022, 11, 1)}])
    ins = pd.concat([reg, inspection_frame(reg, POLICY, AS_OF)], axis=1)
    (w,) = list(wanted_alarms(None, ins, POLICY))
    assert (w.spec.alarm_type, w.device.id, w.details["due"]) == ("inspection_overdue", "V1", "2025-11-01")
    # Overdue from local midnight after the due day (Asia/Shanghai: 16:00 UTC the day before).
    assert w.onset_ts == int(datetime(2025, 11, 1, 16, tzinfo=UTC).timestamp() * 1000)


# ------------------------------------------------------------------- 12. why a part scored 0 points
def test_a_part_that_scored_0_says_why():
    p = _plan({**STD_GATE_FAIL, "commission_date": None, "firm_id": None, "firm_tech_level": None,
               "firm_credit_score": None, "health_index": None})  # fmt: skip
    assert p["pts_age"] == 0 and p["pts_firm_tech_level"] == 0 and p["pts_firm_credit"] == 0
    reasons = list(p["reasons"])
    assert "age: 0 of 25 points — 投用日期未知 (commission date unknown)" in reasons
    assert "firm_tech_level: 0 of 25 points — 无维保单位记录 (no firm on record)" in reasons
    assert "firm_credit: 0 of 15 points — 无维保单位记录 (no firm on record)" in reasons
    assert "health: 0 of 15 points — 无物联网数据 (no IoT data): health index unknown" in reasons
    assert reasons[-1] == "→ standard_15 (15 days)"  # the verdict stays last
    # A component that is known says nothing extra.
    full = _plan({})
    assert not any("0 of" in r for r in full["reasons"])


def test_the_reversion_reason_names_the_alarms_behind_the_count():
    p = _plan({"major_faults": 3, "major_fault_ids": [11, 12, 19]})
    assert "reversion: 3 major faults in the last 30 days (reversion at ≥ 3), alarms 11, 12, 19" in p["reasons"]
    e = _plan({"entrapments": 1, "entrapment_ids": [7]})
    assert any(r.endswith("equipment-caused entrapment(s) in the last 90 days, alarm 7") for r in e["reasons"])


# ------------------------------------------------------------------------------- 11. local days
# 2026-11-25T23:00:00Z is 07:00 on 26 November in Guangzhou.
SEVEN_AM_GZ = int(datetime(2026, 11, 25, 23, tzinfo=UTC).timestamp() * 1000)


def test_at_seven_in_guangzhou_the_day_is_the_local_one():
    assert local_date(SEVEN_AM_GZ) == date(2026, 11, 26)  # default zone: Asia/Shanghai
    assert local_date(SEVEN_AM_GZ, "UTC") == date(2026, 11, 25)
    assert to_local(SEVEN_AM_GZ).hour == 7 and local_iso(SEVEN_AM_GZ) == "2026-11-26T07:00:00+08:00"
    start = local_day_start_ms(date(2026, 11, 26))
    assert start == int(datetime(2026, 11, 25, 16, tzinfo=UTC).timestamp() * 1000)
    assert local_day_end_ms(date(2026, 11, 26)) == start + 86_400_000 - 1
    assert local_date(start) == date(2026, 11, 26) and local_date(start - 1) == date(2026, 11, 25)
    assert abs(now_ms() - int(datetime.now(UTC).timestamp() * 1000)) < 60_000  # a real clock, in ms


def test_timezone_setting_is_an_iana_zone_with_a_clear_error():
    assert Settings().timezone == "Asia/Shanghai"
    assert Settings(timezone="Europe/Berlin").timezone == "Europe/Berlin"
    with pytest.raises(ValidationError, match="SEMON_TIMEZONE: 'Mars/Olympus' is not an IANA time zone"):
        Settings(timezone="Mars/Olympus")


def test_a_single_now_ms_definition():
    import semon.api.deps as deps
    import semon.ingest.source as src
    import semon.timeutil as tu

    assert deps.now_ms is tu.now_ms and src.now_ms is tu.now_ms
