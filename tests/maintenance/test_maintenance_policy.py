"""The "3+2" planner, table-driven: every gate, every tier boundary, every reversion trigger.

Pure (no I/O): one elevator row per case through ``plan_frame`` with the packaged default policy
(domain.md §4.5), plus policy-file validation and due-date arithmetic.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from semon.rules.maintenance.inspection import inspection_frame
from semon.rules.maintenance.planner import plan_frame
from semon.rules.maintenance.policy import PolicyError, default_policy_path, load_policy, parse_policy

AS_OF = date(2026, 11, 26)
POLICY = load_policy(default_policy_path())

# An elevator that passes every gate with the highest score: commissioned today (25), firm
# level 5 (25), use unit level 5 (20), grade A credit 100 (15), health 100 (15) → 100.
BASE = dict(
    device_id="E1", firm_id="F1", use_unit_id="U1", commission_date=AS_OF, firm_tech_level=5,
    firm_credit_grade="A", firm_credit_score=100.0, use_unit_mgmt_level=5, inspection_due=date(2027, 6, 1),
    liability_insurance=1.0, online_ratio=1.0, entrapments=0, major_faults=0, blocking_alarms=0,
    offline_hours=0.0, health_index=100.0,
)  # fmt: skip

STD, D30, D90 = "standard_15", "on_demand_30", "on_demand_90"

# (case id, overrides, expected mode, substring the reasons must contain)
CASES = [
    ("all gates pass, score 100", {}, D90, "score 100.00: score ≥ 85 and credit grade A → on_demand_90"),
    # -- gate: firm credit grade not below B
    ("grade B passes the gate, not the 90-day tier", {"firm_credit_grade": "B"}, D30, "score ≥ 70 → on_demand_30"),
    ("grade C fails the gate", {"firm_credit_grade": "C"}, STD, "firm credit grade C is below B"),
    ("grade D fails the gate", {"firm_credit_grade": "D"}, STD, "firm credit grade D is below B"),
    ("grade unknown fails the gate", {"firm_credit_grade": None}, STD, "firm credit grade unknown"),
    # -- gate: IoT online ≥ 95 % of the last 30 days
    ("online exactly 95 % passes", {"online_ratio": 0.95}, D90, "→ on_demand_90"),
    ("online 94.99 % fails", {"online_ratio": 0.9499}, STD, "IoT terminal online 95.0 % of the last 30 days"),
    ("no online data fails", {"online_ratio": None}, STD, "无物联网数据 (no IoT data) for the last 30 days"),
    # -- gate: periodic inspection valid
    ("inspection valid through today passes", {"inspection_due": AS_OF}, D90, "→ on_demand_90"),
    ("inspection expired yesterday fails", {"inspection_due": date(2026, 11, 25)}, STD,
     "periodic inspection expired on 2026-11-25"),
    ("no inspection on record fails", {"inspection_due": None}, STD, "no valid periodic inspection on record"),
    # -- gate: no equipment-caused entrapment in the last 90 days
    ("one entrapment fails", {"entrapments": 1}, STD, "1 equipment-caused entrapment(s) in the last 90 days"),
    # -- gate: no open critical alarm
    ("open critical alarm fails", {"blocking_alarms": 1}, STD, "1 open critical alarm(s)"),
    # -- tier boundaries (score = 70 + credit points + health points here, see _score_case)
    ("score exactly 85 with grade A → 90 days", {"firm_credit_score": 100.0, "health_index": 0.0}, D90,
     "score 85.00: score ≥ 85 and credit grade A"),
    ("score 84.99 → 30 days", {"firm_credit_score": 100.0, "health_index": 0.0, "commission_date": date(2026, 11, 24)},
     D30, "score 84.99: score ≥ 70 → on_demand_30"),
    ("score ≥ 85 with grade B → 30 days", {"firm_credit_grade": "B"}, D30, "→ on_demand_30"),
    ("score exactly 70 → 30 days", {"firm_credit_score": 0.0, "health_index": 0.0}, D30,
     "score 70.00: score ≥ 70 → on_demand_30"),
    ("score 69.99 → 15 days", {"firm_credit_score": 0.0, "health_index": 0.0, "commission_date": date(2026, 11, 24)},
     STD, "score 69.99 below every on-demand tier → standard_15"),
    # -- reversion triggers visible to a plan run
    ("3 major faults in 30 days revert", {"major_faults": 3}, STD,
     "reversion: 3 major faults in the last 30 days (reversion at ≥ 3)"),
    ("2 major faults do not", {"major_faults": 2}, D90, "→ on_demand_90"),
    ("offline 24.1 h reverts", {"offline_hours": 24.1}, STD, "reversion: terminal offline for 24.1 h"),
    ("offline exactly 24 h does not", {"offline_hours": 24.0}, D90, "→ on_demand_90"),
]


def _plan(overrides: dict, policy=POLICY) -> pd.Series:
    row = {**BASE, **overrides}
    return plan_frame(pd.DataFrame([row]), policy, AS_OF).iloc[0]


@pytest.mark.parametrize(("overrides", "mode", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decision_table(overrides, mode, reason):
    p = _plan(overrides)
    assert p["mode"] == mode, p["reasons"]
    assert any(reason in r for r in p["reasons"]), p["reasons"]
    assert p["interval_days"] == {STD: 15, D30: 30, D90: 90}[mode]
    if mode == STD and "below every on-demand tier" not in reason:
        assert not p["eligible"] and p["reasons"][-1] == "→ standard_15 (15 days)"
    else:
        assert p["eligible"] and len(p["reasons"]) == 1  # passed every gate: the tier verdict only


def test_all_cases_in_one_vectorised_call_match_the_row_by_row_results():
    df = pd.DataFrame([{**BASE, **c[1], "device_id": f"E{i}"} for i, c in enumerate(CASES)])
    out = plan_frame(df, POLICY, AS_OF)
    assert list(out["mode"]) == [c[2] for c in CASES]


def test_failed_gates_and_fired_triggers_are_named_and_all_reasons_listed():
    p = _plan({"firm_credit_grade": "C", "online_ratio": 0.5, "major_faults": 5, "offline_hours": 48})
    assert p["failed_gates"] == ("credit_grade", "online")
    assert p["fired_triggers"] == ("major_faults", "offline")
    assert len(p["reasons"]) == 5  # two gates, two triggers, the verdict


def test_score_breakdown_adds_up_and_follows_the_weights():
    p = _plan({"commission_date": date(2019, 5, 26), "firm_tech_level": 3, "use_unit_mgmt_level": 2,
               "firm_credit_grade": "B", "firm_credit_score": 80.0, "health_index": 60.0})  # fmt: skip
    assert p["pts_age"] == pytest.approx(25 * (1 - 7.5 / 15), abs=0.05)
    assert p["pts_firm_tech_level"] == 12.5
    assert p["pts_use_unit_mgmt_level"] == 5.0
    assert p["pts_firm_credit"] == 6.0  # 15 × 0.5 (grade B) × 0.8
    assert p["pts_health"] == 9.0
    parts = [p[f"pts_{c}"] for c in ("age", "firm_tech_level", "use_unit_mgmt_level", "firm_credit", "health")]
    assert p["score"] == pytest.approx(sum(parts))


def test_age_component_reaches_zero_at_15_years_and_unknowns_score_nothing():
    assert _plan({"commission_date": date(2011, 11, 26)})["pts_age"] == 0.0
    p = _plan({"commission_date": None, "firm_tech_level": None, "health_index": None})
    assert p["pts_age"] == 0.0 and p["pts_firm_tech_level"] == 0.0 and p["pts_health"] == 0.0


def test_half_month_due_follows_the_interval_and_calendar_items_their_periods():
    # Last visit 2026-10-01 (quarterly, so it also covers half-month items), on 90 days since August.
    p = _plan({"last_quarterly": date(2026, 10, 1), "current_mode": D90, "mode_since": date(2026, 8, 1),
               "planned_since": date(2026, 1, 5)})  # fmt: skip
    assert p["half_month_due"] == pd.Timestamp("2026-12-30")  # 1 Oct + 90 days
    assert p["quarterly_due"] == pd.Timestamp("2027-03-31")  # done in Q4 → due by the end of Q1
    assert p["half_year_due"] == pd.Timestamp("2026-06-30")  # never done: first half of planning
    assert p["yearly_due"] == pd.Timestamp("2026-12-31")
    assert p["overdue_half_year"] and not p["overdue_quarterly"] and not p["overdue_half_month"]


def test_switch_to_a_shorter_cycle_is_due_from_the_switch_not_retroactively():
    # On 90 days, last visit 60 days ago; an entrapment puts it on 15 days today.
    p = _plan({"entrapments": 1, "last_half_month": date(2026, 9, 27), "current_mode": D90,
               "mode_since": date(2026, 6, 1)})  # fmt: skip
    assert p["mode"] == STD and p["mode_since"] == pd.Timestamp(AS_OF)
    assert p["half_month_due"] == pd.Timestamp(AS_OF) and not p["overdue_half_month"]


def test_changing_the_policy_file_changes_decisions_without_code(tmp_path: Path):
    text = default_policy_path().read_text()
    stricter = text.replace('version = "semon-default-1"', 'version = "strict-1"').replace(
        "min_score = 85", "min_score = 101"
    )
    with pytest.raises(PolicyError, match=r"tiers\.0\.min_score"):
        parse_policy(stricter)
    stricter = stricter.replace("min_score = 101", "min_score = 99").replace("min_online_ratio = 0.95",
                                                                             "min_online_ratio = 0.99")
    f = tmp_path / "strict.toml"
    f.write_text(stricter)
    strict = load_policy(f)
    assert strict.version == "strict-1" and strict.sha256 != POLICY.sha256
    assert _plan({"health_index": 90.0})["mode"] == D90
    assert _plan({"health_index": 90.0}, strict)["mode"] == D30  # 98.5 < 99
    assert _plan({"online_ratio": 0.97}, strict)["mode"] == STD


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("points = 25          # new", "points = 30          # new"), "component points must add up to 100"),
        (('min_credit_grade = "B"', 'min_credit_grade = "E"'), "min_credit_grade 'E' is not one of credit_grades"),
        (("min_online_ratio = 0.95", "min_online_ratio = 1.5"), "gates.min_online_ratio"),
        (("offline_hours = 24", "offline_hourz = 24"), "reversion.offline_hourz: Extra inputs are not permitted"),
        (("interval_days = 30 ", "interval_days = 10 "), "tier on_demand_30: interval_days is shorter"),
        (("schema = 1", "schema = 2"), "schema 2 is not supported"),
        (("[gates]", "[gates"), "not valid TOML"),
    ],
)
def test_invalid_policies_fail_with_the_key_and_the_reason(edit, message):
    text = default_policy_path().read_text()
    assert edit[0] in text
    with pytest.raises(PolicyError) as e:
        parse_policy(text.replace(edit[0], edit[1], 1), "my-policy.toml")
    assert message in str(e.value) and "my-policy.toml" in str(e.value)


def test_policy_from_environment(monkeypatch, tmp_path: Path):
    f = tmp_path / "p.toml"
    f.write_text(default_policy_path().read_text().replace('"semon-default-1"', '"from-env"'))
    monkeypatch.setenv("SEMON_MAINTENANCE_POLICY", str(f))
    assert load_policy().version == "from-env"
    monkeypatch.setenv("SEMON_MAINTENANCE_POLICY", str(tmp_path / "missing.toml"))
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy()


def test_default_policy_is_domain_4_5():
    g, sc = POLICY.gates, POLICY.score
    assert (g.min_credit_grade, g.min_online_ratio, g.online_window_days) == ("B", 0.95, 30)
    assert (g.max_equipment_entrapments, g.entrapment_window_days, g.blocking_alarm_severities) == (0, 90, ["critical"])
    assert [sc.age.points, sc.firm_tech_level.points, sc.use_unit_mgmt_level.points, sc.firm_credit.points,
            sc.health.points] == [25, 25, 20, 15, 15]  # fmt: skip
    assert [(t.mode, t.interval_days, t.min_score, t.credit_grades) for t in POLICY.tiers] == [
        ("on_demand_90", 90, 85, ["A"]), ("on_demand_30", 30, 70, None)
    ]
    r = POLICY.reversion
    assert (r.entrapment, r.major_faults, r.major_fault_window_days, r.offline_hours) == (True, 3, 30, 24)


INSPECTION_CASES = [
    # kind, facts, expected status, expected due
    ("elevator", {"inspection_valid_until": "2027-03-01"}, "ok", "2027-03-01"),
    ("elevator", {"inspection_valid_until": "2026-12-20"}, "due_soon", "2026-12-20"),
    ("elevator", {"inspection_valid_until": "2026-11-25"}, "overdue", "2026-11-25"),
    ("elevator", {"last_inspection_date": "2025-12-01"}, "due_soon", "2026-12-01"),
    ("elevator", {"commission_date": "2026-03-01"}, "ok", "2027-03-01"),
    # Never inspected: the first inspection was due a year after commissioning — overdue, not unknown.
    ("elevator", {"commission_date": "2020-03-01"}, "overdue", "2021-03-01"),
    ("elevator", {}, "unknown", None),  # no date at all: semon cannot know
    ("vessel", {"commission_date": "2024-02-29"}, "ok", "2027-02-28"),  # first within 3 years
    ("vessel", {"last_inspection_date": "2021-01-10", "safety_grade": 2}, "ok", "2027-01-10"),  # grade 1–2: 6 y
    ("vessel", {"last_inspection_date": "2023-11-01", "safety_grade": 3}, "overdue", "2026-11-01"),  # grade 3: 3 y
    ("vessel", {"last_inspection_date": "2021-01-10", "safety_grade": None}, "overdue", "2022-01-10"),  # strictest
]


@pytest.mark.parametrize(("kind", "facts", "status", "due"), INSPECTION_CASES)
def test_inspection_due_dates(kind, facts, status, due):
    df = pd.DataFrame([{"kind": kind, **facts}])
    r = inspection_frame(df, POLICY, AS_OF).iloc[0]
    assert r["inspection_status"] == status, r.to_dict()
    assert (None if pd.isna(r["inspection_due"]) else r["inspection_due"].date().isoformat()) == due


def test_an_unusable_policy_never_stops_the_collector(monkeypatch, tmp_path: Path):
    from semon.rules.maintenance.reversion import install_reversion

    bad = tmp_path / "bad.toml"
    bad.write_text("schema = 1\nversion = 'x'\n")
    monkeypatch.setenv("SEMON_MAINTENANCE_POLICY", str(bad))

    class FakeCollector:
        def __init__(self) -> None:
            self.transition_hooks: list = []

    fake = FakeCollector()
    assert install_reversion(fake) is None
    assert fake.transition_hooks == []
