"""HTTP API: every endpoint through FastAPI's TestClient on a temporary SQLite database.

Telemetry endpoints run against the embedded SQLite store and, when ``influxd`` is installed,
against a real InfluxDB 1.x started on free ports for this module.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from semon.api.app import create_app
from semon.config import Settings
from semon.logs import JsonFormatter
from semon.store.db import Database
from semon.store.influx import InfluxStore
from semon.store.models import Alarm, AlarmEvent, DeadLetter, Device, Firm, UseUnit
from semon.store.telemetry import Point, TelemetryStore, TelemetryUnavailable, point_time_ns
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from semon.timeutil import ms_to_iso

T0 = 1_714_550_400_000  # 2024-05-01T08:00:00Z
MIN = 60_000
PROBLEM = "application/problem+json"
INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"


# ------------------------------------------------------------------------------ fixtures
def _seed(db: Database) -> None:
    at = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    with db.session() as s:
        s.add_all(
            [
                Firm(id="F1", name="Alpha Lift Service"),
                Firm(id="F2", name="Beta Vessel Care"),
                UseUnit(id="U1", name="Tower A Property"),
            ]
        )
        s.flush()
        s.add_all(
            [
                Device(id="EL-0001", kind="elevator", district="Futian", firm_id="F1",
                       use_unit_id="U1", equipment_code="3110A0001", address="1 Shennan Rd",
                       install_date=date(2019, 7, 1), floors=24, rated_speed=1.75,
                       attributes={"brand": "KONE"}),
                Device(id="EL-0002", kind="elevator", district="Nanshan", firm_id="F1",
                       equipment_code="3110A0002", address="88 Keyuan Rd"),
                Device(id="EL-0003", kind="elevator", district="Futian", firm_id="F2",
                       equipment_code="3110B0003", address="50% Plaza"),
                Device(id="V-0001", kind="vessel", district="Nanshan", firm_id="F2",
                       equipment_code="2110C0001", address="Plant 3 boiler room",
                       design_pressure=1.6, medium="steam"),
                Device(id="V-0002", kind="vessel", district="Luohu", address="Depot"),
            ]
        )
        s.flush()

        def alarm(device: str, kind: str, firm: str | None, typ: str, sev: str, start: int,
                  end: int | None) -> Alarm:
            return Alarm(device_id=device, kind=kind, firm_id=firm, type=typ, rule_id=f"R-{typ}",
                         severity=sev, active=end is None, acknowledged=False,
                         onset_ts=start - 500, start_ts=start, end_ts=end, created_at=at,
                         updated_at=at, message=f"{typ} on {device}", details={"x": 1})

        a1 = alarm("EL-0001", "elevator", "F1", "trapped_passenger", "critical", T0 + 3000, None)
        a2 = alarm("EL-0001", "elevator", "F1", "door_open_running", "major", T0 + 1000, T0 + 2000)
        a3 = alarm("EL-0002", "elevator", "F1", "trapped_passenger", "critical", T0 + 2000,
                   T0 + 5000)
        a4 = alarm("V-0001", "vessel", "F2", "overpressure", "critical", T0 + 4000, None)
        a5 = alarm("V-0001", "vessel", "F2", "high_temperature", "minor", T0, T0 + 100)
        s.add_all([a1, a2, a3, a4, a5])
        s.flush()
        for event, ts in (("raised", T0 + 1000), ("acknowledged", T0 + 1500), ("cleared", T0 + 2000)):
            s.add(AlarmEvent(alarm_id=a2.id, event=event, ts=ts, at=at, severity="major"))
        s.add(AlarmEvent(alarm_id=a1.id, event="raised", ts=T0 + 3000, at=at, severity="critical"))

        def letter(minute: int, reason: str, device: str | None, payload: bytes) -> DeadLetter:
            return DeadLetter(received_at=at + timedelta(minutes=minute), topic=f"semon/v1/x/{device}",
                              reason=reason, detail=f"{reason} detail", payload=payload,
                              payload_size=len(payload), device_id=device)

        s.add_all(
            [
                letter(1, "schema", "EL-0001", b'{"floor":999}'),
                # 1 + 1500 x 2 bytes: the 2 KiB cut falls inside a two-byte character.
                letter(2, "schema", "EL-0002", ("a" + "é" * 1500).encode()),
                letter(3, "bad_json", None, b"\xff\xfe{"),
                letter(4, "unknown_device", "X-1", b"{}"),
            ]
        )


def _status(device: str, ts: int, seq: int, **fields: object) -> Point:
    return Point("elevator_status" if device.startswith("EL") else "vessel_status",
                 {"device_id": device}, fields, point_time_ns(ts, seq), device)  # type: ignore[arg-type]


def _points(now: int) -> list[Point]:
    pts = [
        _status("EL-0001", T0 + i * MIN, i, mode="normal", running=i % 2 == 0, floor=i,
                speed=0.25 + i * 0.1)
        for i in range(10)
    ]
    # Two messages within one millisecond: seq keeps them apart, the higher seq is newer.
    pts += [
        _status("EL-0001", T0 + 10 * MIN, 101, mode="inspection", running=False, floor=10, speed=0.5),
        _status("EL-0001", T0 + 10 * MIN, 102, mode="inspection", running=False, floor=11, speed=0.5),
        _status("EL-0002", T0 + MIN, 1, mode="normal", running=True, floor=3, speed=1.25),
        _status("V-0001", now - 120 * MIN, 1, pressure=0.75, temperature=20.5),
        _status("V-0001", now - 30 * MIN, 2, pressure=0.81, temperature=24.5),
        _status("V-0001", now - 10 * MIN, 3, pressure=0.83, temperature=24.75),
    ]
    return pts[::-1]  # written newest first: the API must still answer in time order


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path = tmp_path_factory.mktemp("api-db")
    database = Database(f"sqlite:///{path}/t.db")
    _seed(database)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def now() -> int:
    """The live instant V-0001's recent points hang off: taken when the module first fills a store,
    not at import, so the default window ("last hour") still holds them however long the tests
    before this module ran."""
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def sqlite_tel(tmp_path_factory: pytest.TempPathFactory, now: int) -> Iterator[SqliteTelemetryStore]:
    store = SqliteTelemetryStore(tmp_path_factory.mktemp("api-tel") / "tel.db")
    store.write(_points(now))
    yield store
    store.close()


@pytest.fixture(scope="module")
def client(db: Database, sqlite_tel: SqliteTelemetryStore) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(api_auth="open"), db=db, telemetry=sqlite_tel)) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def influx_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway influxd (1.x) on free ports, for this module only."""
    if not Path(INFLUXD).exists():
        missing = f"influxd not installed ({INFLUXD})"
        if os.environ.get("SEMON_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{missing} and SEMON_REQUIRE_SERVICES=1")
        pytest.skip(f"{missing}: InfluxDB variants of the telemetry tests not run")
    root = tmp_path_factory.mktemp("influxd")
    http_port = _free_port()
    conf = root / "influxdb.conf"
    conf.write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{_free_port()}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
"""
    )
    log_file = (root / "influxd.log").open("wb")
    proc = subprocess.Popen([INFLUXD, "-config", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"influxd exited with {proc.returncode}; see {root}/influxd.log")
            try:
                if httpx.get(f"{url}/ping", timeout=0.5).status_code == 204:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"influxd did not answer /ping within 20 s; see {root}/influxd.log")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("influx", marks=pytest.mark.services)])
def tel_client(request: pytest.FixtureRequest, db: Database,
               sqlite_tel: SqliteTelemetryStore) -> Iterator[TestClient]:
    """Client whose telemetry store is the embedded SQLite one, then a real InfluxDB."""
    store: TelemetryStore
    if request.param == "sqlite":
        store = sqlite_tel
    else:
        url = request.getfixturevalue("influx_url")
        influx = InfluxStore(url, f"semon_test_{uuid.uuid4().hex[:8]}")
        influx.ensure_database()
        influx.write(_points(request.getfixturevalue("now")))
        store = influx
    with TestClient(create_app(Settings(api_auth="open"), db=db, telemetry=store)) as c:
        yield c
    if request.param != "sqlite":
        store.close()


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance"} <= body.keys()
    return body


# -------------------------------------------------------------------------------- health
def test_health_ok(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["db"] is True and body["telemetry"] is True
    assert body["version"]


class _DownTelemetry:
    """A telemetry store that never answers."""

    def write(self, points: object) -> None:
        raise TelemetryUnavailable("down")

    def latest(self, measurement: str, device_id: str) -> None:
        raise TelemetryUnavailable("telemetry store is down")

    def query(self, *args: object, **kwargs: object) -> list:
        raise TelemetryUnavailable("telemetry store is down")

    def ping(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_telemetry_down_degrades_health_and_503s(db: Database) -> None:
    with TestClient(create_app(Settings(api_auth="open"), db=db, telemetry=_DownTelemetry())) as c:
        r = c.get("/health")
        assert r.status_code == 200 and r.json()["status"] == "degraded"
        assert r.json()["telemetry"] is False
        body = _problem(c.get("/devices/EL-0001/latest"), 503)
        assert body["type"].endswith("telemetry-unavailable")
        _problem(c.get("/devices/EL-0001/telemetry"), 503)
        # The registry does not need telemetry.
        assert c.get("/devices/EL-0001").status_code == 200


class _BrokenTelemetry(_DownTelemetry):
    """A telemetry store with a bug."""

    def latest(self, measurement: str, device_id: str) -> None:
        raise RuntimeError("secret internals")


def test_unexpected_error_is_500_problem(db: Database) -> None:
    app = create_app(Settings(api_auth="open"), db=db, telemetry=_BrokenTelemetry())
    with TestClient(app, raise_server_exceptions=False) as c:
        body = _problem(c.get("/devices/EL-0001/latest"), 500)
        assert "secret" not in body["detail"]


def test_db_down_is_503(tmp_path: Path, sqlite_tel: SqliteTelemetryStore) -> None:
    broken = Database(f"sqlite:///{tmp_path}/ok.db")
    broken.engine.dispose()
    # A database file in a directory that does not exist: every connect fails.
    broken.engine = create_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")
    broken.sessions.configure(bind=broken.engine)
    with TestClient(create_app(Settings(api_auth="open"), db=broken, telemetry=sqlite_tel)) as c:
        r = c.get("/health")
        assert r.status_code == 503
        assert r.json() == {**r.json(), "status": "degraded", "db": False, "telemetry": True}
        body = _problem(c.get("/devices"), 503)
        assert body["type"].endswith("database-unavailable")
        assert "missing" not in body["detail"]  # driver details stay in the log


# ------------------------------------------------------------------------------- devices
def _ids(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [d["id"] for d in r.json()["items"]]


def test_devices_list_filters(client: TestClient) -> None:
    r = client.get("/devices")
    assert r.json()["total"] == 5 and r.json()["limit"] == 100 and r.json()["offset"] == 0
    assert _ids(r) == ["EL-0001", "EL-0002", "EL-0003", "V-0001", "V-0002"]
    assert _ids(client.get("/devices", params={"kind": "vessel"})) == ["V-0001", "V-0002"]
    assert _ids(client.get("/devices", params={"district": "Futian"})) == ["EL-0001", "EL-0003"]
    assert _ids(client.get("/devices", params={"firm_id": "F2"})) == ["EL-0003", "V-0001"]
    assert _ids(client.get("/devices", params={"kind": "elevator", "firm_id": "F1"})) == [
        "EL-0001", "EL-0002"]
    # q matches id, equipment code or address, case-insensitively.
    assert _ids(client.get("/devices", params={"q": "el-000"})) == ["EL-0001", "EL-0002", "EL-0003"]
    assert _ids(client.get("/devices", params={"q": "C0001"})) == ["V-0001"]
    assert _ids(client.get("/devices", params={"q": "keyuan"})) == ["EL-0002"]
    # LIKE wildcards in q are literal characters.
    assert _ids(client.get("/devices", params={"q": "0%"})) == ["EL-0003"]
    assert _ids(client.get("/devices", params={"q": "_"})) == []
    r = client.get("/devices", params={"district": "Nowhere"})
    assert r.json()["total"] == 0 and r.json()["items"] == []


def test_devices_pagination_and_sort(client: TestClient) -> None:
    r = client.get("/devices", params={"limit": 2, "offset": 2})
    assert _ids(r) == ["EL-0003", "V-0001"]
    assert (r.json()["total"], r.json()["limit"], r.json()["offset"]) == (5, 2, 2)
    r = client.get("/devices", params={"limit": 2, "offset": 4})
    assert _ids(r) == ["V-0002"] and r.json()["total"] == 5
    r = client.get("/devices", params={"limit": 2, "offset": 10})
    assert _ids(r) == [] and r.json()["total"] == 5
    # Descending district, ties broken by id so pages are stable.
    assert _ids(client.get("/devices", params={"sort": "-district"})) == [
        "EL-0002", "V-0001", "V-0002", "EL-0001", "EL-0003"]
    assert _ids(client.get("/devices", params={"sort": "-id"}))[0] == "V-0002"
    assert _ids(client.get("/devices", params={"sort": "firm_id,-id"}))[:2] == ["EL-0002", "EL-0001"]


def test_devices_bad_params_are_422_problems(client: TestClient) -> None:
    body = _problem(client.get("/devices", params={"sort": "password"}), 422)
    # The schema's pattern names every sortable key, so the caller learns what is allowed.
    assert "equipment_code" in body["detail"] and body["errors"][0]["loc"] == ["query", "sort"]
    body = _problem(client.get("/devices", params={"limit": 0}), 422)
    assert body["errors"][0]["loc"] == ["query", "limit"]
    _problem(client.get("/devices", params={"limit": 1001}), 422)
    _problem(client.get("/devices", params={"offset": -1}), 422)


def test_device_detail(client: TestClient) -> None:
    r = client.get("/devices/EL-0001")
    assert r.status_code == 200
    d = r.json()
    assert d["firm_name"] == "Alpha Lift Service" and d["use_unit_name"] == "Tower A Property"
    assert d["install_date"] == "2019-07-01" and d["floors"] == 24
    assert d["attributes"] == {"brand": "KONE"}
    d = client.get("/devices/V-0002").json()
    assert d["firm_name"] is None and d["use_unit_name"] is None and d["kind"] == "vessel"


def test_unknown_device_is_404_problem(client: TestClient) -> None:
    for path in ("/devices/NOPE", "/devices/NOPE/latest", "/devices/NOPE/telemetry"):
        body = _problem(client.get(path), 404)
        assert body["instance"] == path
        assert body["type"] == "urn:semon:problem:device-not-found"
        assert "NOPE" in body["detail"]


# ----------------------------------------------------------------------------- telemetry
def test_latest(tel_client: TestClient, now: int) -> None:
    r = tel_client.get("/devices/EL-0001/latest")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device_id"] == "EL-0001" and body["kind"] == "elevator"
    assert body["time"] == T0 + 10 * MIN
    assert body["time_iso"] == "2024-05-01T08:10:00.000Z"
    # Same millisecond, higher seq wins; time and device_id are not repeated in values.
    assert body["values"] == {"mode": "inspection", "running": False, "floor": 11, "speed": 0.5}
    body = tel_client.get("/devices/V-0001/latest").json()
    assert body["kind"] == "vessel" and body["time"] == now - 10 * MIN
    assert body["values"] == {"pressure": 0.83, "temperature": 24.75}


def test_latest_without_data_is_404(tel_client: TestClient) -> None:
    body = _problem(tel_client.get("/devices/V-0002/latest"), 404)
    assert body["type"] == "urn:semon:problem:no-telemetry"


def test_telemetry_range(tel_client: TestClient) -> None:
    r = tel_client.get(
        "/devices/EL-0001/telemetry",
        params={"start": "2024-05-01T08:01:00Z", "end": str(T0 + 5 * MIN)},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["start"], body["end"]) == (T0 + MIN, T0 + 5 * MIN)
    assert body["start_iso"] == "2024-05-01T08:01:00.000Z" and body["measurement"] == "elevator_status"
    # start inclusive, end exclusive, oldest first, other devices excluded.
    assert [p["time"] for p in body["points"]] == [T0 + i * MIN for i in range(1, 5)]
    assert [p["floor"] for p in body["points"]] == [1, 2, 3, 4]
    assert body["points"][0] == {"time": T0 + MIN, "mode": "normal", "running": False, "floor": 1,
                                 "speed": pytest.approx(0.35)}
    assert body["count"] == 4 and body["truncated"] is False


def test_telemetry_limit_and_same_ms_points(tel_client: TestClient) -> None:
    body = tel_client.get(
        "/devices/EL-0001/telemetry", params={"start": T0, "end": T0 + 11 * MIN, "limit": 3}
    ).json()
    assert [p["floor"] for p in body["points"]] == [0, 1, 2] and body["truncated"] is True
    body = tel_client.get(
        "/devices/EL-0001/telemetry", params={"start": T0 + 10 * MIN, "end": T0 + 11 * MIN}
    ).json()
    assert [(p["time"], p["floor"]) for p in body["points"]] == [(T0 + 10 * MIN, 10),
                                                                 (T0 + 10 * MIN, 11)]


def test_telemetry_default_window_is_last_hour(tel_client: TestClient, now: int) -> None:
    body = tel_client.get("/devices/V-0001/telemetry").json()
    assert body["end"] - body["start"] == 60 * MIN
    assert abs(body["end"] - time.time() * 1000) < 60_000
    assert [p["time"] for p in body["points"]] == [now - 30 * MIN, now - 10 * MIN]
    # start alone: until now.
    body = tel_client.get("/devices/V-0001/telemetry", params={"start": now - 180 * MIN}).json()
    assert [p["pressure"] for p in body["points"]] == [0.75, 0.81, 0.83]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"start": T0 + MIN, "end": T0 + MIN}, "must be after"),
        ({"start": "2024-05-01T09:00:00Z", "end": "2024-05-01T08:00:00Z"}, "must be after"),
        ({"start": "yesterday"}, "neither ISO-8601"),
        ({"end": "1714550400"}, "epoch seconds"),
        ({"limit": 0}, "greater than"),
    ],
)
def test_telemetry_bad_range_is_422(client: TestClient, params: dict, needle: str) -> None:
    body = _problem(client.get("/devices/EL-0001/telemetry", params=params), 422)
    assert needle in body["detail"]


# --------------------------------------------------------------------------------- alarms
def _types(r: httpx.Response) -> list[tuple[str, str]]:
    assert r.status_code == 200, r.text
    return [(a["device_id"], a["type"]) for a in r.json()["items"]]


def test_alarms_default_newest_first(client: TestClient) -> None:
    r = client.get("/alarms")
    assert r.json()["total"] == 5
    assert [a["start_ts"] for a in r.json()["items"]] == [T0 + 4000, T0 + 3000, T0 + 2000,
                                                         T0 + 1000, T0]
    a = r.json()["items"][0]
    assert a["device_id"] == "V-0001" and a["active"] is True and a["end_ts"] is None
    assert a["start_iso"] == ms_to_iso(T0 + 4000) and a["end_iso"] is None
    assert a["onset_ts"] == T0 + 3500 and a["details"] == {"x": 1}
    assert a["created_at"].startswith("2024-05-01T08:00:00") and a["created_at"].endswith("Z")
    for key in ("id", "kind", "firm_id", "rule_id", "severity", "acknowledged", "message",
                "updated_at"):
        assert key in a


def test_alarms_filters(client: TestClient) -> None:
    assert _types(client.get("/alarms", params={"state": "active"})) == [
        ("V-0001", "overpressure"), ("EL-0001", "trapped_passenger")]
    assert client.get("/alarms", params={"state": "cleared"}).json()["total"] == 3
    assert client.get("/alarms", params={"state": "all"}).json()["total"] == 5
    assert client.get("/alarms", params={"severity": "critical"}).json()["total"] == 3
    assert _types(client.get("/alarms", params={"type": "trapped_passenger", "state": "cleared"})) == [
        ("EL-0002", "trapped_passenger")]
    assert client.get("/alarms", params={"firm_id": "F2"}).json()["total"] == 2
    assert client.get("/alarms", params={"device_id": "EL-0001"}).json()["total"] == 2
    assert client.get("/alarms", params={"kind": "vessel", "severity": "minor"}).json()["total"] == 1
    _problem(client.get("/alarms", params={"state": "open"}), 422)


def test_alarms_pagination_and_sort(client: TestClient) -> None:
    r = client.get("/alarms", params={"limit": 2, "offset": 1})
    assert [a["start_ts"] for a in r.json()["items"]] == [T0 + 3000, T0 + 2000]
    assert r.json()["total"] == 5
    r = client.get("/alarms", params={"sort": "start_ts", "limit": 1})
    assert r.json()["items"][0]["type"] == "high_temperature" and r.json()["total"] == 5
    r = client.get("/alarms", params={"sort": "severity,-start_ts"})
    assert [a["severity"] for a in r.json()["items"]] == ["critical"] * 3 + ["major", "minor"]
    assert [a["start_ts"] for a in r.json()["items"][:3]] == [T0 + 4000, T0 + 3000, T0 + 2000]
    _problem(client.get("/alarms", params={"sort": "-nope"}), 422)


def test_alarm_detail_with_events(client: TestClient) -> None:
    alarm_id = client.get("/alarms", params={"type": "door_open_running"}).json()["items"][0]["id"]
    r = client.get(f"/alarms/{alarm_id}")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == alarm_id and body["end_ts"] == T0 + 2000
    assert body["end_iso"] == ms_to_iso(T0 + 2000)
    assert [e["event"] for e in body["events"]] == ["raised", "acknowledged", "cleared"]
    assert [e["ts"] for e in body["events"]] == [T0 + 1000, T0 + 1500, T0 + 2000]
    assert body["events"][0]["ts_iso"] == ms_to_iso(T0 + 1000)
    assert body["events"][0]["actor"] == "rules"


def test_unknown_alarm(client: TestClient) -> None:
    body = _problem(client.get("/alarms/999999"), 404)
    assert body["type"] == "urn:semon:problem:alarm-not-found"
    _problem(client.get("/alarms/abc"), 422)


# --------------------------------------------------------------------------- dead letters
def test_dead_letters(client: TestClient) -> None:
    r = client.get("/dead-letters")
    assert r.status_code == 200
    items = r.json()["items"]
    assert r.json()["total"] == 4
    assert [d["reason"] for d in items] == ["unknown_device", "bad_json", "schema", "schema"]
    bad = items[1]
    assert bad["payload"] == "\ufffd\ufffd{" and bad["payload_size"] == 3
    assert bad["device_id"] is None and bad["payload_truncated"] is False
    big = items[2]
    # 2048 bytes = "a" + 1023 "é" + half of the next one, which is left out, not replaced.
    assert big["payload"] == "a" + "é" * 1023
    assert big["payload_size"] == 3001 and big["payload_truncated"] is True
    assert items[3]["payload"] == '{"floor":999}'

    r = client.get("/dead-letters", params={"reason": "schema", "limit": 1})
    assert r.json()["total"] == 2 and r.json()["items"][0]["device_id"] == "EL-0002"
    r = client.get("/dead-letters", params={"device_id": "EL-0001"})
    assert [d["reason"] for d in r.json()["items"]] == ["schema"]
    _problem(client.get("/dead-letters", params={"limit": 5000}), 422)


def test_dead_letter_summary(client: TestClient) -> None:
    body = client.get("/dead-letters/summary").json()
    assert body["total"] == 4
    assert [(x["reason"], x["count"]) for x in body["by_reason"]] == [
        ("schema", 2), ("bad_json", 1), ("unknown_device", 1)]
    assert body["by_reason"][0]["last_received_at"].startswith("2024-05-01T08:02:00")
    body = client.get("/dead-letters/summary", params={"device_id": "EL-0001"}).json()
    assert body == {"total": 1, "by_reason": [
        {"reason": "schema", "count": 1, "last_received_at": body["by_reason"][0]["last_received_at"]}]}


# ---------------------------------------------------------------------------- operations
def test_metrics_count_routes_by_template(client: TestClient) -> None:
    client.get("/devices/NOPE")
    client.get("/no/such/path")
    client.get("/openapi.json")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'semon_api_requests_total{method="GET",route="/devices/{device_id}",status="404"}' in text
    assert 'route="<unmatched>",status="404"' in text
    assert 'semon_api_requests_total{method="GET",route="/openapi.json",status="200"}' in text
    assert 'semon_api_request_duration_seconds_bucket{le="0.005",method="GET",route="/health"}' in text


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    _problem(client.get("/no/such/path"), 404)
    _problem(client.post("/devices"), 405)


def test_openapi_documents_everything(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert paths >= {"/health", "/metrics", "/devices", "/devices/{device_id}",
                     "/devices/{device_id}/latest", "/devices/{device_id}/telemetry", "/alarms",
                     "/alarms/{alarm_id}", "/dead-letters", "/dead-letters/summary"}
    latest = spec["paths"]["/devices/{device_id}/latest"]["get"]["responses"]
    assert PROBLEM in latest["404"]["content"] and PROBLEM in latest["422"]["content"]
    assert "examples" in spec["components"]["schemas"]["DeviceOut"]
    assert client.get("/docs").status_code == 200


def test_app_opens_and_closes_its_own_stores(tmp_path: Path) -> None:
    settings = Settings(db_url=f"sqlite:///{tmp_path}/own.db",
                        telemetry_sqlite_path=tmp_path / "own-tel.db", influx_url=None, api_auth="open")
    app = create_app(settings)
    with TestClient(app) as c:
        assert c.get("/health").json()["status"] == "ok"
        assert c.get("/devices").json()["total"] == 0
        assert isinstance(app.state.telemetry, SqliteTelemetryStore)
    assert app.state.db is None and app.state.telemetry is None
    assert (tmp_path / "own-tel.db").exists()


def test_json_log_lines() -> None:
    record = logging.LogRecord("semon.api.access", logging.INFO, __file__, 1, "GET %s %d",
                               ("/health", 200), None)
    record.route = "/health"
    record.color_message = "\x1b[36mGET\x1b[0m"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "GET /health 200" and line["route"] == "/health"
    assert "color_message" not in line
    assert line["level"] == "INFO" and line["logger"] == "semon.api.access"
