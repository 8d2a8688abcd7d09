"""Trapped-passenger rescues: opened by the dispatcher, steps recorded by the firm (owners read,
other firms 404), the 30-minute arrival limit and its escalation, the step events on MQTT and in
the alarm_event measurement, and KPIs that match a hand-computed case (API and CLI)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from semon.api.app import create_app
from semon.cli import app as cli
from semon.config import Settings
from semon.ingest.collector import Collector
from semon.notify.dispatcher import Dispatcher
from semon.store.db import Database
from semon.store.influx import InfluxStore
from semon.store.keys import create_key
from semon.store.models import Alarm, AlarmEvent
from semon.store.rescue import Rescue
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from tests.conftest import Stack
from tests.helpers import wait_until
from tests.notify.test_delivery_helpers import auth, raise_alarm, two_firm_registry


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path}/r.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    db = Database(url)
    two_firm_registry(db, tmp_path / "reg.csv")
    tel = SqliteTelemetryStore(tmp_path / "tel.db")
    settings = Settings(db_url=url, api_auth="keys", dispatcher_enabled=False, api_rate_per_s=1000,
                        api_rate_burst=1000, escalation_after_s={})  # fmt: skip
    tokens = {
        "a": create_key(db, "f001-desk", "firm", firm_id="F001")[1],
        "b": create_key(db, "f002-desk", "firm", firm_id="F002")[1],
        "owner": create_key(db, "unit-one", "owner", use_unit_id="U0001")[1],
        "city": create_key(db, "city", "regulator")[1],
    }
    with TestClient(create_app(settings, db=db, telemetry=tel)) as c:
        yield {"db": db, "client": c, "tokens": tokens, "settings": settings}
    tel.close()
    db.dispose()


def _rescue_of(db: Database, alarm_id: int) -> int:
    with db.session() as s:
        rid = s.scalar(select(Rescue.id).where(Rescue.alarm_id == alarm_id))
        assert rid is not None
        return rid


def test_rescue_steps_recorded_by_the_firm_in_order_with_time_and_who(env: dict[str, Any]):
    db, c, tok = env["db"], env["client"], env["tokens"]
    a1, _ = raise_alarm(db, "E1")
    a9, _ = raise_alarm(db, "E9", firm="F002")
    other, _ = raise_alarm(db, "E2", type="door_fault", severity="minor")
    Dispatcher(env["settings"], db).scanner.scan()  # what the dispatcher's loop does
    r1, r9 = _rescue_of(db, a1), _rescue_of(db, a9)
    with db.session() as s:
        assert s.scalar(select(Rescue.id).where(Rescue.alarm_id == other)) is None, "only trapped-passenger alarms"
    # Tenancy: firm A sees its rescue only; firm B's is 404; owners read but cannot record steps.
    assert [r["id"] for r in c.get("/rescues", headers=auth(tok["a"])).json()["items"]] == [r1]
    assert c.get(f"/rescues/{r9}", headers=auth(tok["a"])).status_code == 404
    assert c.post(f"/rescues/{r9}/dispatch", json={}, headers=auth(tok["a"])).status_code == 404
    assert c.get(f"/rescues/{r1}", headers=auth(tok["owner"])).status_code == 200
    assert c.post(f"/rescues/{r1}/dispatch", json={}, headers=auth(tok["owner"])).status_code == 403
    assert {r["id"] for r in c.get("/rescues", headers=auth(tok["city"])).json()["items"]} == {r1, r9}
    # Order and times are enforced.
    r = c.post(f"/rescues/{r1}/release", json={"cause": "external"}, headers=auth(tok["a"]))
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
    long_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert c.post(f"/rescues/{r1}/dispatch", json={"at": long_ago}, headers=auth(tok["a"])).status_code == 422
    r = c.post(f"/rescues/{r1}/dispatch", json={"tier": "own_firm", "responder": "Wang Wei", "note": "on my way"},
               headers=auth(tok["a"]))  # fmt: skip
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["status"] == "dispatched" and d["dispatched_by"] == "f001-desk" and d["responder"] == "Wang Wei"
    assert 0 <= d["dispatch_s"] < 10
    r = c.post(f"/rescues/{r1}/arrive", json={"tier": "rescue_station"}, headers=auth(tok["a"]))
    assert r.json()["status"] == "arrived" and r.json()["tier"] == "rescue_station"
    assert r.json()["arrival_breached"] is False
    r = c.post(f"/rescues/{r1}/release", json={"cause": "external"}, headers=auth(tok["a"]))
    assert r.json()["status"] == "released" and r.json()["cause"] == "external" and r.json()["release_s"] >= 0
    detail = c.get(f"/rescues/{r1}", headers=auth(tok["a"])).json()
    events = [(e["event"], e["actor"]) for e in detail["events"]]
    assert events == [("raised", "rules"), ("dispatched", "f001-desk"), ("arrived", "f001-desk"),
                      ("released", "f001-desk")]  # fmt: skip
    assert detail["events"][1]["details"]["tier"] == "own_firm" and detail["notes"][0]["text"] == "on my way"
    with db.session() as s:
        # The maintenance planner reads the cause here: an external one does not count against the lift.
        assert s.get(Alarm, a1).details["cause"] == "external"


def test_arrival_after_31_minutes_is_a_breach_and_29_is_not(env: dict[str, Any]):
    db, c, tok = env["db"], env["client"], env["tokens"]
    t0 = datetime.now(UTC) - timedelta(minutes=40)
    late, _ = raise_alarm(db, "E1", created_at=t0)
    ok, _ = raise_alarm(db, "E2", created_at=t0)
    Dispatcher(env["settings"], db).scanner.scan()
    for alarm, minutes in ((late, 31), (ok, 29)):
        rid = _rescue_of(db, alarm)
        c.post(f"/rescues/{rid}/dispatch", json={"at": (t0 + timedelta(minutes=2)).isoformat()},
               headers=auth(tok["a"])).raise_for_status()  # fmt: skip
        r = c.post(f"/rescues/{rid}/arrive", json={"at": (t0 + timedelta(minutes=minutes)).isoformat()},
                   headers=auth(tok["a"]))  # fmt: skip
        assert r.json()["arrival_breached"] is (minutes > 30), r.json()
        assert r.json()["arrival_s"] == minutes * 60
    breached = c.get("/rescues?breached=true", headers=auth(tok["a"])).json()["items"]
    assert [b["alarm_id"] for b in breached] == [late]
    with db.session() as s:
        arrived = s.scalar(select(AlarmEvent).where(AlarmEvent.alarm_id == late, AlarmEvent.event == "arrived"))
        assert arrived.details["breach"] is True and arrived.ts == int((t0 + timedelta(minutes=31)).timestamp() * 1000)


def test_every_cause_the_policy_names_is_accepted_and_no_other(env: dict[str, Any]):
    """One list: equipment, the policy's external causes (power_grid, vandalism…), unknown."""
    from semon.rules.maintenance.policy import load_policy
    from semon.rules.rescue import rescue_causes

    db, c, tok = env["db"], env["client"], env["tokens"]
    causes = rescue_causes(load_policy())
    assert {"power_grid", "vandalism", "external", "misuse", "equipment", "unknown"} <= set(causes)
    assert set(load_policy().reversion.external_causes) <= set(causes)
    h = auth(tok["a"])
    for cause in (*causes, "aliens"):
        alarm, _ = raise_alarm(db, "E1")
        Dispatcher(env["settings"], db).scanner.scan()
        rid = _rescue_of(db, alarm)
        c.post(f"/rescues/{rid}/dispatch", json={}, headers=h).raise_for_status()
        c.post(f"/rescues/{rid}/arrive", json={}, headers=h).raise_for_status()
        r = c.post(f"/rescues/{rid}/release", json={"cause": cause}, headers=h)
        if cause == "aliens":
            assert r.status_code == 422 and "'aliens' is not one of" in r.text and "power_grid" in r.text, r.text
            assert c.get(f"/rescues/{rid}", headers=h).json()["status"] == "arrived"  # nothing recorded
        else:
            assert r.status_code == 200 and r.json()["cause"] == cause, r.text
            with db.session() as s:
                assert s.get(Alarm, alarm).details["cause"] == cause  # where the planner reads it
        with db.session() as s:
            s.get(Alarm, alarm).active = False  # cleared: the next entrapment is a new alarm


def test_a_late_recorded_alarm_takes_real_step_times_after_its_onset(env: dict[str, Any]):
    """A terminal's replayed buffer stores the alarm 10 min after its onset; the firm had already
    dispatched 5 min after the onset. Step times must follow the onset, each other, and now."""
    db, c, tok = env["db"], env["client"], env["tokens"]
    h = auth(tok["a"])
    stored = datetime.now(UTC)
    stored = stored.replace(microsecond=stored.microsecond // 1000 * 1000)  # alarm times are whole ms
    onset = stored - timedelta(minutes=10)
    alarms = [raise_alarm(db, dev, created_at=stored)[0] for dev in ("E1", "E2")]
    with db.session() as s:
        for a in alarms:
            s.get(Alarm, a).onset_ts = int(onset.timestamp() * 1000)
    Dispatcher(env["settings"], db).scanner.scan()
    late, edge = (_rescue_of(db, a) for a in alarms)

    def step(rid: int, name: str, at: datetime) -> Any:
        return c.post(f"/rescues/{rid}/{name}", json={"at": at.isoformat()}, headers=h)

    r = step(late, "dispatch", onset - timedelta(milliseconds=1))
    assert r.status_code == 422 and "before the alarm's onset" in r.text, r.text
    r = step(late, "dispatch", onset + timedelta(minutes=5))
    assert r.status_code == 200, r.text
    assert r.json()["dispatch_s"] == 300.0  # timed from the onset, not from when it was stored
    assert step(late, "arrive", onset + timedelta(minutes=4)).status_code == 422  # before the dispatch
    assert step(late, "arrive", datetime.now(UTC) + timedelta(minutes=5)).status_code == 422  # in the future
    r = step(late, "arrive", onset + timedelta(minutes=9))
    assert r.status_code == 200 and r.json()["arrival_s"] == 540.0 and not r.json()["arrival_breached"]
    assert step(edge, "dispatch", onset).status_code == 200  # exactly the onset is allowed


def test_overdue_arrival_escalates_once_while_the_passenger_is_trapped(env: dict[str, Any]):
    db = env["db"]
    settings = env["settings"].model_copy(update={"rescue_arrival_limit_s": 1.5, "dispatcher_poll_s": 0.1})
    trapped, _ = raise_alarm(db, "E1")
    released_early, _ = raise_alarm(db, "E2")
    d = Dispatcher(settings, db)
    d.start()
    try:
        wait_until(lambda: _rescue_field(db, released_early, "id") is not None, 5, "rescue opened")
        with db.session() as s:  # the car reports the passenger out before the limit
            a = s.get(Alarm, released_early)
            a.active = False
        wait_until(lambda: _rescue_field(db, trapped) is not None, 5, "overdue arrival escalated")
        time.sleep(1.0)
    finally:
        d.stop()
    with db.session() as s:
        esc = list(s.scalars(select(AlarmEvent).where(AlarmEvent.event == "escalated")))
    assert len(esc) == 1 and esc[0].alarm_id == trapped and esc[0].actor == "escalation"
    assert esc[0].details["reason"] == "rescue_arrival_overdue" and esc[0].details["limit_s"] == 1.5
    with db.session() as s:
        r = s.scalar(select(Rescue).where(Rescue.alarm_id == trapped))
        assert r.arrival_breached and r.breach_escalated_at is not None


def _rescue_field(db: Database, alarm_id: int, column: str = "breach_escalated_at") -> Any:
    with db.session() as s:
        return s.scalar(select(getattr(Rescue, column)).where(Rescue.alarm_id == alarm_id))


@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_step_events_are_relayed_to_the_alarm_event_measurement_for_the_boards(stack: Stack, tmp_path: Path):
    db = stack.db
    two_firm_registry(db, tmp_path / "reg.csv")
    alarm, _ = raise_alarm(db, "E1")
    col = Collector(stack.settings, db, stack.telemetry())
    col.start()
    tel = stack.telemetry()
    try:
        assert col.connected.wait(10)
        settings = stack.settings.model_copy(update={"dispatcher_enabled": False})
        with TestClient(create_app(settings, db=db, telemetry=tel)) as c:  # open demo auth: anonymous regulator
            Dispatcher(settings, db).scanner.scan()
            rid = _rescue_of(db, alarm)
            for step in ("dispatch", "arrive", "release"):
                c.post(f"/rescues/{rid}/{step}", json={"actor": "li"}).raise_for_status()
        t = stack.telemetry()
        try:
            def events() -> set[str]:
                if isinstance(t, InfluxStore):
                    return {str(r["event"]) for r in t.rows('SELECT "event", actor FROM "alarm_event"')}
                rows = t._db.execute(
                    "SELECT json_extract(fields, '$.event') FROM telemetry WHERE measurement='alarm_event'"
                ).fetchall()
                return {r[0] for r in rows}

            wait_until(lambda: {"dispatched", "arrived", "released"} <= events(), 15, "steps in alarm_event")
        finally:
            t.close()
    finally:
        tel.close()
        col.stop()


# --------------------------------------------------------------------------------------- KPIs
CST = timedelta(hours=8)  # Asia/Shanghai


def _local(day: int, hh: int, mm: int) -> datetime:
    return datetime(2024, 5, day, hh, mm, tzinfo=UTC) - CST


def _rescue(db: Database, device: str, firm: str, alarm_at: datetime, dispatch: float | None, arrive: float | None,
            release: float | None, cause: str | None, tier: str | None) -> None:  # fmt: skip
    """A finished (or not) rescue; step offsets in minutes from the alarm."""
    def at(m: float | None) -> datetime | None:
        return None if m is None else alarm_at + timedelta(minutes=m)

    with db.session() as s:
        a = Alarm(device_id=device, kind="elevator", firm_id=firm, type="trapped_passenger",
                  rule_id="elevator.trapped_passenger", severity="critical", active=False, acknowledged=True,
                  onset_ts=0, start_ts=0, created_at=alarm_at, updated_at=alarm_at, message="", details={})  # fmt: skip
        s.add(a)
        s.flush()
        status = "released" if release is not None else "arrived" if arrive is not None else "dispatched"
        s.add(Rescue(alarm_id=a.id, device_id=device, firm_id=firm, status=status, alarm_at=alarm_at, tier=tier,
                     dispatched_at=at(dispatch), arrived_at=at(arrive), released_at=at(release), cause=cause,
                     arrival_breached=bool(arrive and arrive > 30), notes=[], created_at=alarm_at,
                     updated_at=alarm_at))  # fmt: skip


def _dataset(db: Database) -> None:
    """Four rescues in [2024-05-01, 2024-05-03) Shanghai time, one after it.

    | # | firm/district | alarm (local) | dispatch | arrive | release (on site) | cause |
    | R1 | F001 Tianhe | 05-01 10:00 | 2 | 12 | 20 (8) | equipment |
    | R2 | F001 Tianhe | 05-01 20:00 | 4 | 31 | 36 (5) | external |
    | R3 | F002 Yuexiu | 05-02 07:00 (05-01 23:00 UTC) | 1 | 16 | 22 (6) | misuse |
    | R4 | F001 Tianhe | 05-02 23:30 | 3 | — | — | — |
    | R5 | F001 Tianhe | 05-03 00:10 (outside) | 1 | 5 | 9 | equipment |
    """
    _rescue(db, "E1", "F001", _local(1, 10, 0), 2, 12, 20, "equipment", "own_firm")
    _rescue(db, "E2", "F001", _local(1, 20, 0), 4, 31, 36, "external", "own_firm")
    _rescue(db, "E9", "F002", _local(2, 7, 0), 1, 16, 22, "misuse", "rescue_station")
    _rescue(db, "E1", "F001", _local(2, 23, 30), 3, None, None, None, "own_firm")
    _rescue(db, "E2", "F001", _local(3, 0, 10), 1, 5, 9, "equipment", "own_firm")


SINCE, UNTIL = "2024-05-01T00:00:00+08:00", "2024-05-03T00:00:00+08:00"


def test_kpis_match_the_hand_computed_case(env: dict[str, Any], tmp_path: Path):
    db, c, tok = env["db"], env["client"], env["tokens"]
    _dataset(db)
    q = {"since": SINCE, "until": UNTIL}
    # All of it (the regulator): 4 entrapments, 3 elevators, 2 days.
    [row] = c.get("/rescues/kpis", params=q, headers=auth(tok["city"])).json()["rows"]
    assert row["entrapments"] == 4 and row["elevators"] == 3 and row["days"] == 2
    assert row["entrapments_per_10k_elevators_per_day"] == pytest.approx(4 / 3 * 10_000 / 2)
    assert row["dispatch_min_mean"] == pytest.approx(2.5) and row["dispatch_min_p90"] == pytest.approx(3.7)
    assert row["arrival_min_mean"] == pytest.approx(59 / 3) and row["arrival_min_p90"] == pytest.approx(28.0)
    assert row["release_min_mean"] == pytest.approx(19 / 3) and row["release_min_p90"] == pytest.approx(7.6)
    assert row["total_min_mean"] == pytest.approx(26.0) and row["total_min_p90"] == pytest.approx(33.2)
    assert row["response_rate"] == pytest.approx(0.75)  # R2 took 4 min; R4's 3:00 counts as within
    assert row["arrival_rate"] == pytest.approx(0.5) and row["arrival_breaches"] == 2  # R2 late, R4 never
    assert row["causes"] == {"equipment": 1, "external": 1, "misuse": 1, "unrecorded": 1}
    assert row["tiers"] == {"own_firm": 3, "rescue_station": 1}
    # By firm.
    rows = {r["firm_id"]: r for r in c.get("/rescues/kpis", params={**q, "group_by": "firm"},
                                            headers=auth(tok["city"])).json()["rows"]}  # fmt: skip
    assert set(rows) == {"F001", "F002"}
    f1, f2 = rows["F001"], rows["F002"]
    assert (f1["entrapments"], f1["elevators"]) == (3, 2)
    assert f1["entrapments_per_10k_elevators_per_day"] == pytest.approx(7500.0)
    assert f1["arrival_min_mean"] == pytest.approx(21.5) and f1["response_rate"] == pytest.approx(2 / 3)
    assert f1["arrival_rate"] == pytest.approx(1 / 3)
    assert f2["entrapments_per_10k_elevators_per_day"] == pytest.approx(5000.0) and f2["arrival_rate"] == 1.0
    # By district and day (Shanghai calendar: R3 at 07:00 local belongs to 05-02, though 05-01 in UTC).
    rows = c.get("/rescues/kpis", params={**q, "group_by": "district,period", "period": "day"},
                 headers=auth(tok["city"])).json()["rows"]  # fmt: skip
    got = {(r["district"], r["period"]): r["entrapments"] for r in rows}
    assert got == {("Tianhe", "2024-05-01"): 2, ("Tianhe", "2024-05-02"): 1, ("Yuexiu", "2024-05-01"): 0,
                   ("Yuexiu", "2024-05-02"): 1}  # fmt: skip
    tianhe_1 = next(r for r in rows if (r["district"], r["period"]) == ("Tianhe", "2024-05-01"))
    assert tianhe_1["entrapments_per_10k_elevators_per_day"] == pytest.approx(2 / 2 * 10_000 / 1)
    # Tenancy: firm B sees only its own equipment's figures.
    [b] = c.get("/rescues/kpis", params={**q, "group_by": "firm"}, headers=auth(tok["b"])).json()["rows"]
    assert b["firm_id"] == "F002" and b["entrapments"] == 1 and b["elevators"] == 1
    assert c.get("/rescues/kpis", params={**q, "group_by": "owner"}, headers=auth(tok["b"])).status_code == 422
    # The CLI computes the same figures.
    out = tmp_path / "kpis.json"
    res = CliRunner().invoke(cli, ["rescues", "kpis", "--by", "firm", "--since", SINCE, "--until", UNTIL,
                                   "--json", str(out)], env={"SEMON_DB_URL": db.url})  # fmt: skip
    assert res.exit_code == 0, res.output
    cli_rows = {r["firm_id"]: r for r in json.loads(out.read_text())["rows"]}
    assert cli_rows["F001"]["arrival_min_p90"] == pytest.approx(f1["arrival_min_p90"])
    assert cli_rows["F001"]["response_rate"] == pytest.approx(2 / 3)
    assert "F001" in res.output
