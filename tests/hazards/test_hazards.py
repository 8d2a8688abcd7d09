"""Dual prevention: a hazard walked from an alarm-proposed candidate to closure through the API,
one that goes overdue and escalates, risk grades at their boundaries, the inspection draw and
the plan's indicators checked against an independent computation over a generated city."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from semon.api.app import create_app
from semon.api.deps import get_now_ms
from semon.config import Settings
from semon.rules.hazards import service as hs
from semon.rules.hazards.draw import draw, quotas
from semon.rules.hazards.indicators import AccidentRow, HazardRow, Unit, indicators
from semon.rules.hazards.risk import RiskInputs, default_risk_policy, grade, grade_of_score
from semon.store.db import Database
from semon.store.hazards import Hazard
from semon.store.keys import create_key
from semon.store.models import Alarm
from semon.store.registry import import_devices_csv
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from tests.helpers import REGISTRY_HEADER

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 10:00 in Guangzhou
TZ = "Asia/Shanghai"
ROWS = (
    "EA,311012345202000001,elevator,Tianhe,A road 1,23.1,113.3,FA,Firm A,4,A,92,UA,Unit A,3,2012-01-01,1.75,20,1,,,,",
    "EB,311012345202000002,elevator,Yuexiu,B road 2,23.1,113.3,FB,Firm B,3,B,80,UB,Unit B,3,2019-01-01,1.0,8,1,,,,",
)


@pytest.fixture(params=["sqlite", "postgres"])
def city(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, Database, dict[str, str]]]:
    url = f"sqlite:///{tmp_path}/h.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    db = Database(url)
    reg = tmp_path / "reg.csv"
    reg.write_text(REGISTRY_HEADER + "\n" + "\n".join(ROWS) + "\n")
    import_devices_csv(db, reg)
    tel = SqliteTelemetryStore(tmp_path / "tel.db")
    tokens = {
        "regulator": create_key(db, "city-inspector", "regulator")[1],
        "firm_a": create_key(db, "fa-desk", "firm", firm_id="FA")[1],
        "firm_b": create_key(db, "fb-desk", "firm", firm_id="FB")[1],
    }
    app = create_app(Settings(db_url=url, api_rate_per_s=1000, api_rate_burst=1000, dispatcher_enabled=False),
                     db=db, telemetry=tel)  # fmt: skip
    clock = {"now": NOW}
    app.dependency_overrides[get_now_ms] = lambda: int(clock["now"].timestamp() * 1000)
    with TestClient(app) as c:
        c.clock = clock  # type: ignore[attr-defined]
        yield c, db, tokens
    tel.close()
    db.dispose()


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _alarm(db: Database, device: str, firm: str, type_: str, at: datetime) -> int:
    with db.session() as s:
        a = Alarm(device_id=device, kind="elevator", firm_id=firm, type=type_, rule_id=f"elevator.{type_}",
                  severity="critical", active=False, acknowledged=False, onset_ts=int(at.timestamp() * 1000),
                  start_ts=int(at.timestamp() * 1000), created_at=at, updated_at=at, message="moving, door open",
                  details={})  # fmt: skip
        s.add(a)
        s.commit()
        return a.id


def test_a_major_hazard_from_an_alarm_to_closure(city):
    client, db, tok = city
    alarm = _alarm(db, "EA", "FA", "door_open_while_moving", NOW - timedelta(minutes=5))
    [hid] = hs.propose_from_alarms(db, NOW)
    assert hs.propose_from_alarms(db, NOW) == []  # idempotent: the alarm is behind a hazard now
    second = _alarm(db, "EA", "FA", "door_open_while_moving", NOW - timedelta(minutes=1))
    assert hs.propose_from_alarms(db, NOW) == [hid]  # linked to the same candidate, not a second one

    h = client.get(f"/hazards/{hid}", headers=_h(tok["firm_a"])).json()
    assert (h["status"], h["code"], h["hazard_class"], h["alarm_ids"]) == (
        "candidate", "EL-M-DOORLOCK-BYPASS", "major", [alarm, second])  # fmt: skip
    assert h["name_zh"].startswith("层门或轿门门锁") and h["deadline"] is None

    # Firm B sees nothing of it, whatever it tries.
    assert client.get("/hazards", headers=_h(tok["firm_b"])).json()["items"] == []
    for path in (f"/hazards/{hid}", f"/hazards/{hid}/confirm"):
        method = "GET" if path.endswith(str(hid)) else "POST"
        assert client.request(method, path, json={}, headers=_h(tok["firm_b"])).status_code == 404

    r = client.post(f"/hazards/{hid}/confirm", json={"assignee": "李明"}, headers=_h(tok["firm_a"]))
    assert r.status_code == 200, r.text
    # Confirmed on 2026-11-26 (local): a major hazard has 15 days.
    assert r.json()["status"] == "open" and r.json()["deadline"] == "2026-12-11"
    assert client.post(f"/hazards/{hid}/rectify", json={}, headers=_h(tok["firm_a"])).status_code == 422  # no note
    photo = b"\xff\xd8\xff\xe0 fake jpeg"
    r = client.post(f"/hazards/{hid}/evidence?filename=after.jpg", content=photo,
                    headers={**_h(tok["firm_a"]), "Content-Type": "image/jpeg"})  # fmt: skip
    assert r.status_code == 201 and r.json()["size"] == len(photo)
    ev = r.json()["id"]
    client.clock["now"] = NOW + timedelta(days=3)
    r = client.post(f"/hazards/{hid}/rectify", json={"note": "短接线已拆除，门锁回路恢复"}, headers=_h(tok["firm_a"]))
    assert r.status_code == 200 and r.json()["status"] == "rectified"
    assert client.post(f"/hazards/{hid}/verify", json={}, headers=_h(tok["firm_a"])).status_code == 403
    client.clock["now"] = NOW + timedelta(days=4)
    r = client.post(f"/hazards/{hid}/verify", json={"note": "现场复核"}, headers=_h(tok["regulator"]))
    assert r.status_code == 200
    done = r.json()
    assert done["status"] == "closed" and done["closed_by"] == "city-inspector"
    assert [(s["step"], s["actor"]) for s in done["steps"]] == [
        ("proposed", "rules"), ("linked", "rules"), ("confirm", "fa-desk"), ("evidence", "fa-desk"),
        ("rectify", "fa-desk"), ("verify", "city-inspector"),
    ]  # fmt: skip
    assert done["steps"][-1]["details"]["on_time"] is True
    assert done["steps"][4]["details"]["evidence"] == [ev]
    got = client.get(f"/hazards/{hid}/evidence/{ev}", headers=_h(tok["firm_a"]))
    assert got.content == photo and got.headers["content-type"] == "image/jpeg"
    assert client.post(f"/hazards/{hid}/rectify", json={"note": "x"}, headers=_h(tok["firm_a"])).status_code == 409


def test_an_overdue_major_hazard_escalates_and_raises_a_compliance_alarm(city):
    client, db, tok = city
    r = client.post("/hazards", json={"device_id": "EA", "code": "EL-M-ANTIPINCH-FAILED", "source": "inspection"},
                    headers=_h(tok["regulator"]))  # fmt: skip
    assert r.status_code == 201, r.text
    hid, deadline = r.json()["id"], date.fromisoformat(r.json()["deadline"])
    assert deadline == date(2026, 12, 11)

    def active() -> list[Alarm]:
        with db.session() as s:
            return list(s.scalars(select(Alarm).where(Alarm.type == hs.OVERDUE_TYPE, Alarm.active)))

    # The deadline day itself is still in time — until local midnight (16:00 UTC).
    last_minute = datetime(2026, 12, 11, 15, 59, tzinfo=UTC)
    assert hs.escalate_overdue(db, last_minute, TZ) == [] and active() == []
    next_day = datetime(2026, 12, 11, 16, 0, tzinfo=UTC)
    out = hs.escalate_overdue(db, next_day, TZ)
    assert [m["type"] for m in out] == [hs.OVERDUE_TYPE]
    [a] = active()
    assert a.device_id == "EA" and a.details["hazard_ids"] == [hid] and "重大隐患逾期" in a.message
    assert hs.escalate_overdue(db, next_day + timedelta(hours=1), TZ) == []  # one alarm, not one per run
    client.clock["now"] = next_day
    listed = client.get("/hazards?overdue=true", headers=_h(tok["regulator"])).json()["items"]
    assert [h["id"] for h in listed] == [hid] and listed[0]["escalated_at"] is not None
    steps = client.get(f"/hazards/{hid}", headers=_h(tok["firm_a"])).json()["steps"]
    assert [s["step"] for s in steps] == ["found", "escalated"]
    # Fixed and verified: the compliance alarm clears.
    client.post(f"/hazards/{hid}/rectify", json={"note": "防夹装置更换"}, headers=_h(tok["firm_a"]))
    client.post(f"/hazards/{hid}/verify", json={}, headers=_h(tok["regulator"]))
    hs.escalate_overdue(db, next_day + timedelta(days=1), TZ)
    assert active() == []


def test_risk_grades_follow_the_documented_formula_at_their_boundaries():
    p = default_risk_policy()
    for score, want in ((0, "A"), (24.99, "A"), (25, "B"), (49.99, "B"), (50, "C"), (74.99, "C"), (75, "D"),
                        (100, "D")):  # fmt: skip
        assert grade_of_score(score, p) == want, score
    as_of = date(2026, 12, 1)
    # Each row: inputs → the score worked out by hand from docs/hazards.md.
    table = [
        # new, clean, firm A, valid inspection, every visit on time: 0.
        (RiskInputs("a", "elevator", as_of, inspection="valid", visits=24, visits_on_time=24, credit_grade="A",
                    firm_id="F"), 0.0, "A"),
        # 10 years (10 pts) + 1 open general (5) + 1 recent (2) + grade B (3) + half on time (5) = 25 → B.
        (RiskInputs("b", "elevator", date(2016, 12, 1), open_general=1, recent_hazards=1, inspection="valid",
                    visits=2, visits_on_time=1, credit_grade="B", firm_id="F"), 25.0, "B"),
        # unknown age (10) + no firm (10) + no inspection data (8) + no visit (10) = 38 → B.
        (RiskInputs("c", "elevator", None), 38.0, "B"),
        # open major (25) alone on a clean device: 25 → B, floored to C.
        (RiskInputs("d", "elevator", as_of, open_major=1, inspection="valid", visits=1, visits_on_time=1,
                    credit_grade="A", firm_id="F"), 25.0, "C"),
        # 30 years (20, capped) + 2 entrapments (10) + 20 faults (10, capped) + overdue (15) + C (7)
        # + no visit (10) + 3 major open (35, capped) = 107 → 100 → D.
        (RiskInputs("e", "elevator", date(1996, 1, 1), open_major=3, faults=20, entrapments=2,
                    inspection="overdue", credit_grade="C", firm_id="F"), 100.0, "D"),
        # a vessel has no maintenance factor: 0 → A.
        (RiskInputs("f", "vessel", as_of, inspection="valid", credit_grade="A", firm_id="F"), 0.0, "A"),
    ]  # fmt: skip
    for x, score, want in table:
        g = grade(x, as_of, p)
        assert (g.score, g.grade) == (score, want), (x.device_id, g.as_dict())
        assert all(f.reason_zh and f.reason_en for f in g.breakdown)
    assert grade(table[3][0], as_of, p).floor == "open_major_hazard"
    reasons = {f.factor: f.reason_en for f in grade(table[2][0], as_of, p).breakdown}
    assert reasons["age"] == "commission date unknown" and reasons["credit"] == "no firm on record"


def test_the_inspection_draw_is_reproducible_and_weighted_as_documented():
    weights = dict(default_risk_policy().grades.draw_weights)
    rng = random.Random(7)
    fleet = [(f"d{i:05d}", rng.choices("ABCD", weights=(60, 25, 10, 5))[0]) for i in range(40_000)]
    a = draw(fleet, 2000, "2026-Q4", weights)
    assert a.devices == draw(list(reversed(fleet)), 2000, "2026-Q4", weights).devices  # order of input irrelevant
    assert a.devices != draw(fleet, 2000, "2026-Q3", weights).devices
    assert len(a.devices) == len(set(a.devices)) == 2000
    counts = {g: sum(1 for _, x in fleet if x == g) for g in "ABCD"}
    # Rates proportional to weights: drawn_g = n · c_g·w_g / Σ c·w, within one of rounding.
    norm = sum(counts[g] * weights[g] for g in "ABCD")
    for s in a.strata:
        assert abs(s.drawn - 2000 * counts[s.grade] * weights[s.grade] / norm) < 1, s
    rate = {s.grade: s.rate for s in a.strata}
    assert rate["D"] / rate["A"] == pytest.approx(8, rel=0.02)
    # A grade too small for its share is drawn entirely; the rest shares the remainder.
    assert quotas({"A": 1000, "D": 20}, {"A": 1, "D": 8}, 200) == {"A": 180, "D": 20}
    assert quotas({"A": 1000, "D": 10}, {"A": 1, "D": 8}, 100) == {"A": 93, "D": 7}  # 92.6 / 7.4
    assert quotas({"A": 3, "B": 0}, {"A": 1, "B": 2}, 10) == {"A": 3, "B": 0}


def test_indicators_over_a_generated_city_match_an_independent_computation():
    rng = random.Random(11)
    districts = ["天河", "越秀", "海珠", "荔湾", "白云", "黄埔", "番禺", "花都", "南沙", "从化", "增城"]
    units = [Unit(f"u{i}", rng.choice(districts), f"F{rng.randrange(40)}") for i in range(12_000)]
    start, end, as_of = date(2026, 1, 1), date(2027, 1, 1), date(2026, 12, 15)
    hazards, accidents = [], []
    for _ in range(3_000):  # a year of hazards, some before the period
        u = rng.choice(units)
        found = date(2025, 12, 1) + timedelta(days=rng.randrange(380))
        cls = "major" if rng.random() < 0.2 else "general"
        deadline = found + timedelta(days=15 if cls == "major" else 30)
        status = rng.choice(["candidate", "rejected", "open", "rectified", "closed", "closed", "closed"])
        closed = found + timedelta(days=rng.randrange(40)) if status == "closed" else None
        hazards.append(HazardRow(u.device_id, cls, status, found, deadline, closed))
    for _ in range(30):
        day = date(2025, 12, 20) + timedelta(days=rng.randrange(380))
        accidents.append(AccidentRow(rng.choice(units).device_id, day, rng.choice([0, 0, 1])))
    grades = {u.device_id: rng.choice("ABCD") for u in units}
    got = {r["group"]: r for r in indicators(units, hazards, accidents, grades, start, end, as_of, "district")}

    # Independently: walk each district's devices and count by hand.
    where = {u.device_id: u.district for u in units}
    want: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for u in units:
        want[u.district]["units"] += 1
        want[u.district]["grade_" + grades[u.device_id]] += 1
    for h in hazards:
        if h.status in ("candidate", "rejected") or not (start <= h.found_on < end):
            continue
        w = want[where[h.device_id]]
        w["hazards"] += 1
        if h.hazard_class == "major":
            w["major"] += 1
            if h.closed_on is not None and h.closed_on <= as_of:
                w["closed"] += 1
                w["on_time"] += h.closed_on <= h.deadline
            elif h.deadline < as_of:
                w["overdue"] += 1
    for a in accidents:
        if start <= a.occurred_on < end:
            want[where[a.device_id]]["accidents"] += 1
            want[where[a.device_id]]["deaths"] += a.deaths
    assert set(got) == set(want)
    for d, w in want.items():
        g = got[d]
        assert g["units"] == w["units"] and g["hazards_found"] == w["hazards"] and g["major_found"] == w["major"]
        assert g["major_closed_on_time"] + g["major_closed_late"] == w["closed"]
        assert g["major_closed_on_time"] == w["on_time"] and g["major_open_overdue"] == w["overdue"]
        assert g["major_remediation_rate"] == pytest.approx(w["closed"] / w["major"], abs=1e-6)
        assert g["hazards_per_10k"] == pytest.approx(w["hazards"] / w["units"] * 10_000, abs=1e-4)
        assert g["deaths_per_10k"] == pytest.approx(w["deaths"] / w["units"] * 10_000, abs=1e-4)
        assert g["accidents"] == w["accidents"]
        assert g["grades"] == {k: w["grade_" + k] for k in "ABCD"}
    city_row = indicators(units, hazards, accidents, grades, start, end, as_of, "city")
    assert city_row[0]["units"] == 12_000 and city_row[0]["hazards_found"] == sum(w["hazards"] for w in want.values())


def test_indicators_risk_and_the_draw_through_the_api(city):
    client, _, tok = city
    client.post("/hazards", json={"device_id": "EB", "code": "EL-M-ANTIPINCH-FAILED"}, headers=_h(tok["firm_b"]))
    r = client.post("/accidents", json={"device_id": "EB", "occurred_on": "2026-11-20", "deaths": 1},
                    headers=_h(tok["regulator"]))  # fmt: skip
    assert r.status_code == 201
    assert client.post("/accidents", json={"device_id": "EB", "occurred_on": "2026-11-20"},
                       headers=_h(tok["firm_b"])).status_code == 403  # fmt: skip
    rows = client.get("/indicators?by=district&start=2026-01-01&end=2027-01-01", headers=_h(tok["regulator"])).json()
    yuexiu = next(r for r in rows["rows"] if r["group"] == "Yuexiu")
    assert (yuexiu["units"], yuexiu["major_found"], yuexiu["major_open_in_time"], yuexiu["deaths"]) == (1, 1, 1, 1)
    assert yuexiu["deaths_per_10k"] == 10_000.0
    # Firm A's indicators cover its own equipment only.
    mine = client.get("/indicators?by=city", headers=_h(tok["firm_a"])).json()["rows"]
    assert mine[0]["units"] == 1 and mine[0]["hazards_found"] == 0
    risk = {r["device_id"]: r for r in client.get("/risk", headers=_h(tok["regulator"])).json()["items"]}
    assert risk["EB"]["grade"] in ("C", "D") and risk["EB"]["floor"] in (None, "open_major_hazard")
    assert client.get("/risk/EB", headers=_h(tok["firm_a"])).status_code == 404
    d1 = client.post("/inspections/draw?n=1&seed=s1", headers=_h(tok["regulator"])).json()
    assert d1 == client.post("/inspections/draw?n=1&seed=s1", headers=_h(tok["regulator"])).json()
    assert len(d1["devices"]) == 1 and d1["explanation"]
    assert client.post("/inspections/draw?n=1&seed=s1", headers=_h(tok["firm_a"])).status_code == 403


def test_the_cli_lists_grades_draws_and_exports_indicators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from openpyxl import load_workbook
    from typer.testing import CliRunner

    from semon.cli import app

    url = f"sqlite:///{tmp_path}/cli.db"
    db = Database(url)
    reg = tmp_path / "reg.csv"
    reg.write_text(REGISTRY_HEADER + "\n" + "\n".join(ROWS) + "\n")
    import_devices_csv(db, reg)
    _alarm(db, "EA", "FA", "door_open_while_moving", NOW - timedelta(minutes=5))
    db.dispose()
    monkeypatch.setenv("SEMON_DB_URL", url)
    monkeypatch.setenv("COLUMNS", "300")  # rich tables: no ellipsis in the captured output
    run = CliRunner().invoke
    at = ["--at", NOW.isoformat()]
    r = run(app, ["hazards", "scan", *at])
    assert r.exit_code == 0 and "proposed or linked: 1" in r.output, r.output
    r = run(app, ["hazards", "record", "EB", "EL-M-ANTIPINCH-FAILED", "--note", "防夹失效", *at])
    assert r.exit_code == 0 and "(major)" in r.output, r.output
    r = run(app, ["hazards", "record", "EB", "PV-G-LEAK"])
    assert r.exit_code == 2 and "for vessels" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_bytes("device_id,code,description,found_at\nEA,EL-G-OTHER,曳引绳磨损,2026-11-20\n"
                    "NOPE,EL-G-OTHER,,\nEB,PV-G-LEAK,,\n".encode("gb18030"))
    r = run(app, ["hazards", "import", str(bad)])
    assert r.exit_code == 2 and "row 3" in r.output and "row 4" in r.output and "nothing imported" in r.output
    good = tmp_path / "good.csv"
    good.write_text("device_id,code,description,found_at\nEA,EL-G-OTHER,曳引绳磨损,2026-11-20\n", encoding="utf-8-sig")
    r = run(app, ["hazards", "import", str(good)])
    assert r.exit_code == 0 and "imported 1" in r.output, r.output
    r = run(app, ["hazards", "list", *at])
    assert r.exit_code == 0 and "EL-M-DOORLOCK-BYPASS" in r.output and "candidate" in r.output
    r = run(app, ["hazards", "risk", "--why", *at])
    assert r.exit_code == 0 and "EB" in r.output and "风险" in r.output
    first = run(app, ["inspections", "draw", "--n", "1", "--seed", "q4", *at, "--csv", str(tmp_path / "d.csv")])
    again = run(app, ["inspections", "draw", "--n", "1", "--seed", "q4", *at])
    assert first.exit_code == 0 and first.output == again.output
    assert (tmp_path / "d.csv").read_text().startswith("device_id,grade,score\n")
    out = tmp_path / "ind.xlsx"
    r = run(app, ["hazards", "indicators", "--by", "district", "--xlsx", str(out), *at])
    assert r.exit_code == 0, r.output
    ws = load_workbook(out).active
    header = [c.value for c in ws[1]]
    assert header[0] == "分组 district" and "整改率 remediation" in header
    yuexiu = next(row for row in ws.iter_rows(min_row=2, values_only=True) if row[0] == "Yuexiu")
    assert yuexiu[1] == 1 and yuexiu[4] == 1  # one unit, one major hazard


def test_the_watch_keeps_scanning_through_a_database_outage(tmp_path: Path):
    from semon.rules.hazards.watch import HazardWatch

    db = Database(f"sqlite:///{tmp_path}/w.db")
    reg = tmp_path / "reg.csv"
    reg.write_text(REGISTRY_HEADER + "\n" + "\n".join(ROWS) + "\n")
    import_devices_csv(db, reg)
    w = HazardWatch(db, 0.05, TZ)
    calls = {"n": 0}
    real = w.scan_once

    def flaky() -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError("database away")
        real()

    w.scan_once = flaky  # type: ignore[method-assign]
    _alarm(db, "EA", "FA", "door_open_while_moving", datetime.now(UTC))
    w.start()
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    try:
        while datetime.now(UTC) < deadline:
            with db.session() as s:
                if s.scalar(select(Hazard.id)) is not None:
                    break
            threading.Event().wait(0.05)
    finally:
        w.stop()
    assert calls["n"] >= 3 and w.failures == 0
    with db.session() as s:
        assert s.scalar(select(Hazard.status)) == "candidate"
    db.dispose()
