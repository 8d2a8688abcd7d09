"""Multi-tenancy on every endpoint of the OpenAPI spec: firm A never sees or changes firm B's
devices, alarms, telemetry, plans, records or rescues (404), owners only read, the regulator
does everything; keys are required, hashed, revocable; limits on size and rate hold."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from semon.api.app import create_app
from semon.config import Settings
from semon.rules.hazards import service as hazards
from semon.rules.maintenance.policy import load_policy
from semon.rules.maintenance.records import record_visit
from semon.store.access import SYSTEM, Access
from semon.store.db import Database
from semon.store.keys import create_key
from semon.store.models import Alarm, AlarmEvent, ApiKey, DeadLetter
from semon.store.registry import import_devices_csv
from semon.store.telemetry import Point, point_time_ns
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from tests.helpers import REGISTRY_HEADER
from tests.notify.test_delivery_helpers import seed_notify

T0 = 1_764_000_000_000
TZ = "Asia/Shanghai"
# Firm B's things: ids distinctive enough that finding them in a response body means a leak.
B_DEVICE, A_DEVICE = "BDEV-77", "ADEV-11"

# For every path parameter: how to name firm B's resource. Every new endpoint with a path
# parameter must appear here (the test fails otherwise), so isolation is proven as the API grows.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/alarms/{alarm_id}/ack"): {},
    ("POST", "/alarms/{alarm_id}/clear"): {"reason": "test"},
    ("POST", "/alarms/{alarm_id}/comments"): {"text": "hello"},
    ("POST", "/alarms/{alarm_id}/assign"): {"assignee": "wang"},
    ("PATCH", "/devices/{device_id}/maintenance/facts"): {"liability_insurance": True},
    ("PATCH", "/maintenance/firms/{firm_id}"): {"tech_level": 3},
    ("PATCH", "/maintenance/use-units/{use_unit_id}"): {"mgmt_level": 2},
    ("PATCH", "/webhooks/{webhook_id}"): {"description": "renamed"},
    ("POST", "/webhooks/{webhook_id}/redeliver"): {"status": "dead"},
    ("POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): {},
    ("PATCH", "/channels/{channel_id}"): {"description": "renamed"},
    ("POST", "/channels/{channel_id}/redeliver"): {"status": "dead"},
    ("POST", "/rescues/{rescue_id}/dispatch"): {"tier": "own_firm"},
    ("POST", "/rescues/{rescue_id}/arrive"): {},
    ("POST", "/rescues/{rescue_id}/release"): {"cause": "unknown"},
    ("POST", "/hazards/{hazard_id}/confirm"): {},
    ("POST", "/hazards/{hazard_id}/reject"): {"note": "not a hazard"},
    ("POST", "/hazards/{hazard_id}/assign"): {"assignee": "Li Ming"},
    ("POST", "/hazards/{hazard_id}/rectify"): {"note": "jumper removed"},
    ("POST", "/hazards/{hazard_id}/verify"): {"note": "checked on site"},
    ("POST", "/hazards/{hazard_id}/reopen"): {"note": "still bypassed"},
    ("POST", "/hazards/{hazard_id}/evidence"): {"photo": "bytes"},
}
# Hazard steps need a hazard in the right state each: which seeded hazard a path gets.
HAZARD_FOR = {
    "/hazards/{hazard_id}/confirm": "hazard_candidate", "/hazards/{hazard_id}/reject": "hazard_candidate2",
    "/hazards/{hazard_id}/rectify": "hazard_open2", "/hazards/{hazard_id}/verify": "hazard_rectified",
    "/hazards/{hazard_id}/reopen": "hazard_rectified2",
}
REGULATOR_ONLY = {
    ("POST", "/keys"),
    ("GET", "/keys"),
    ("DELETE", "/keys/{key_id}"),
    ("POST", "/maintenance/plans/run"),
    ("PATCH", "/devices/{device_id}/maintenance/facts"),
    ("PATCH", "/maintenance/firms/{firm_id}"),
    ("PATCH", "/maintenance/use-units/{use_unit_id}"),
    ("POST", "/maintenance/facts/import"),
    ("POST", "/inspections/draw"),
    ("POST", "/accidents"),
}


def _registry(db: Database, path: Path) -> None:
    a = "elevator,Tianhe,a,23.1,113.3,FA,Firm A,4,A,92,UA,Unit A,3,2020-01-01,1.75,20,1,,,,"
    b = "elevator,Yuexiu,b,23.1,113.3,FB,Firm B,3,B,80,UB,Unit B,3,2019-01-01,1.0,8,1,,,,"
    path.write_text(f"{REGISTRY_HEADER}\n{A_DEVICE},311012345202000001,{a}\n{B_DEVICE},311012345202000002,{b}\n")
    import_devices_csv(db, path)


def _seed(db: Database, tel: SqliteTelemetryStore) -> dict[str, Any]:
    now = datetime.now(UTC)
    ids: dict[str, Any] = {}
    with db.session() as s:
        for dev, firm in ((A_DEVICE, "FA"), (B_DEVICE, "FB")):
            a = Alarm(device_id=dev, kind="elevator", firm_id=firm, type="trapped_passenger", rule_id="r",
                      severity="critical", active=True, acknowledged=False, onset_ts=T0, start_ts=T0 + 20_000,
                      created_at=now, updated_at=now, message=f"trapped in {dev}", details={})  # fmt: skip
            s.add(a)
            s.flush()
            s.add(AlarmEvent(alarm_id=a.id, event="raised", ts=a.start_ts, at=now, severity="critical", details={}))
            ids[f"alarm_{dev}"] = a.id
            s.add(DeadLetter(received_at=now, topic=f"semon/v1/elevator/{dev}/status", reason="schema", detail="x",
                             payload=b"{}", payload_size=2, device_id=dev))  # fmt: skip
    for dev in (A_DEVICE, B_DEVICE):
        ids.update({f"{k}_{dev}": v for k, v in seed_notify(db, dev).items()})
    for dev in (A_DEVICE, B_DEVICE):
        rec, _ = record_visit(db, load_policy(), device_id=dev, item_classes=["half_month"], performed_at=now,
                              technician="T-1", paperless=True, notes="")  # fmt: skip
        ids[f"record_{dev}"] = rec.id
    for dev in (A_DEVICE, B_DEVICE):
        tel.write([Point("elevator_status", {"device_id": dev}, {"floor": 3, "seq": i}, point_time_ns(T0 + i, i), dev)
                   for i in range(1, 4)])  # fmt: skip
    ids.update(_seed_hazards(db, now))
    return ids


def _seed_hazards(db: Database, now: datetime) -> dict[str, Any]:
    ids: dict[str, Any] = {}
    with db.session() as s:
        access = Access(s, SYSTEM)
        for dev in (A_DEVICE, B_DEVICE):
            for name in ("open", "open2", "candidate", "candidate2", "rectified", "rectified2"):
                h = hazards.record(access, hazards.Finding(dev, "EL-G-OTHER", f"hazard {name}"), "city", TZ, now)
                if name.startswith("candidate"):
                    h.status = "candidate"
                if name.startswith("rectified"):
                    hazards.advance(access, h.id, "rectify", "city", hazards.StepBody(note="fixed"), TZ, now)
                ids[f"hazard_{name}_{dev}"] = h.id
            e = hazards.add_evidence(access, ids[f"hazard_open_{dev}"], "p.jpg", "image/jpeg", b"jpg", "city", now)
            ids[f"evidence_id_{dev}"] = e.id
        s.commit()
    return ids


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], dict[str, Any]]]:
    url = f"sqlite:///{tmp_path}/t.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    db = Database(url)
    tel = SqliteTelemetryStore(tmp_path / "tel.db")
    _registry(db, tmp_path / "reg.csv")
    ids = _seed(db, tel)
    tokens = {
        "regulator": create_key(db, "city", "regulator")[1],
        "firm_a": create_key(db, "firm-a-desk", "firm", firm_id="FA")[1],
        "firm_b": create_key(db, "firm-b-desk", "firm", firm_id="FB")[1],
        "owner_a": create_key(db, "unit-a", "owner", use_unit_id="UA")[1],
    }
    ids["key_b"] = create_key(db, "to-revoke", "firm", firm_id="FB")[0].id
    settings = Settings(db_url=url, api_auth="keys", api_rate_per_s=1000, api_rate_burst=1000)
    with TestClient(create_app(settings, db=db, telemetry=tel)) as c:
        yield c, tokens, ids
    tel.close()
    db.dispose()


def _hdr(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _fill(path: str, ids: dict[str, Any], dev: str) -> str:
    firm, unit = ("FA", "UA") if dev == A_DEVICE else ("FB", "UB")
    values = {"device_id": dev, "alarm_id": ids[f"alarm_{dev}"], "key_id": ids["key_b"], "firm_id": firm,
              "use_unit_id": unit, "record_id": ids[f"record_{dev}"],
              **{k: ids[f"{k}_{dev}"] for k in ("webhook_id", "delivery_id", "rescue_id", "evidence_id", "channel_id")},
              "hazard_id": ids[f"{HAZARD_FOR.get(path, 'hazard_open')}_{dev}"]}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        assert name in values, f"no test value for path parameter {{{name}}}: add it to tests/api/test_tenancy.py"
        return str(values[name])

    return re.sub(r"\{(\w+)\}", sub, path)


def _operations(client: TestClient) -> list[tuple[str, str]]:
    spec = client.app.openapi()  # type: ignore[attr-defined]
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]


def test_every_endpoint_needs_a_key(api):
    client, _, ids = api
    for method, path in _operations(client):
        if path in ("/health", "/metrics"):
            continue
        r = client.request(method, _fill(path, ids, A_DEVICE), json=BODIES.get((method, path), {}))
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_firm_a_gets_404_for_everything_of_firm_b_and_the_regulator_gets_it(api):
    client, tokens, ids = api
    checked = 0
    for method, path in _operations(client):
        if "{" not in path:
            continue
        url = _fill(path, ids, B_DEVICE)
        body = BODIES.get((method, path))
        if method in ("POST", "PATCH", "PUT") and body is None:
            pytest.fail(f"{method} {path}: add a valid request body to BODIES in tests/api/test_tenancy.py")
        r = client.request(method, url, json=body, headers=_hdr(tokens["firm_a"]))
        want = 403 if (method, path) in REGULATOR_ONLY else 404
        assert r.status_code == want, (method, path, r.status_code, r.text[:200])
        # The 404 may echo the id the caller sent, but nothing it could not know.
        assert "Firm B" not in r.text and "Yuexiu" not in r.text and "trapped in" not in r.text
        r = client.request(method, url, json=body, headers=_hdr(tokens["regulator"]))
        assert r.status_code < 300 or (r.status_code == 404 and path.endswith("/latest")), (
            method,
            path,
            r.status_code,
            r.text[:200],
        )
        checked += 1
    assert checked >= 8


def test_lists_show_only_the_callers_own_things(api):
    client, tokens, _ = api
    for method, path in _operations(client):
        if method != "GET" or "{" in path or (method, path) in REGULATOR_ONLY or path in ("/health", "/metrics"):
            continue
        if path == "/alarms/stream":
            continue  # an event stream (15 s per request); tests/notify/test_delivery_stream.py covers its tenancy
        for who, other in (("firm_a", B_DEVICE), ("owner_a", B_DEVICE), ("firm_b", A_DEVICE)):
            r = client.get(path, headers=_hdr(tokens[who]))
            assert r.status_code == 200, (who, path, r.status_code, r.text[:200])
            assert other not in r.text, f"{who} sees {other} in {path}"
        r = client.get(path, headers=_hdr(tokens["regulator"]))
        assert r.status_code == 200
    assert {d["id"] for d in client.get("/devices", headers=_hdr(tokens["regulator"])).json()["items"]} == {
        A_DEVICE,
        B_DEVICE,
    }
    assert [a["device_id"] for a in client.get("/alarms", headers=_hdr(tokens["firm_a"])).json()["items"]] == [A_DEVICE]


def test_firms_change_their_own_alarms_owners_only_read(api):
    client, tokens, ids = api
    a = ids[f"alarm_{A_DEVICE}"]
    r = client.post(f"/alarms/{a}/ack", json={}, headers=_hdr(tokens["owner_a"]))
    assert r.status_code == 403
    assert client.get(f"/alarms/{a}", headers=_hdr(tokens["owner_a"])).status_code == 200
    r = client.post(f"/alarms/{a}/ack", json={"actor": "someone-else"}, headers=_hdr(tokens["firm_a"]))
    assert r.status_code == 200 and r.json()["acked_by"] == "firm-a-desk"  # the key's name, not the claim


def test_keys_are_hashed_revocable_and_managed_by_the_regulator(api, tmp_path: Path):
    client, tokens, _ = api
    r = client.post("/keys", json={"name": "new", "role": "firm", "firm_id": "FA"}, headers=_hdr(tokens["regulator"]))
    assert r.status_code == 201
    token, key_id = r.json()["token"], r.json()["id"]
    assert client.get("/devices", headers=_hdr(token)).status_code == 200
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as s:
        stored = s.get(ApiKey, key_id)
        assert stored is not None and token.split("_", 2)[2] not in stored.secret_sha256
    assert client.get("/keys", headers=_hdr(token)).status_code == 403
    assert client.delete(f"/keys/{key_id}", headers=_hdr(tokens["regulator"])).json()["revoked_at"]
    assert client.get("/devices", headers=_hdr(token)).status_code == 401
    assert (
        client.post(
            "/keys", json={"name": "x", "role": "firm", "firm_id": "NOPE"}, headers=_hdr(tokens["regulator"])
        ).status_code
        == 422
    )


def test_request_size_and_rate_limits(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path}/l.db")
    tel = SqliteTelemetryStore(tmp_path / "tel.db")
    _registry(db, tmp_path / "reg.csv")
    token = create_key(db, "firm", "firm", firm_id="FA")[1]
    settings = Settings(db_url=db.url, api_auth="keys", api_rate_per_s=2, api_rate_burst=5, api_max_body_bytes=2048)
    with TestClient(create_app(settings, db=db, telemetry=tel)) as c:
        r = c.post(
            "/alarms/1/comments",
            content=b"{" + b" " * 5000 + b"}",
            headers={**_hdr(token), "content-type": "application/json"},
        )
        assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
        codes = [c.get("/devices", headers=_hdr(token)).status_code for _ in range(12)]
        assert codes[:5] == [200] * 5 and 429 in codes
        r = next(c.get("/devices", headers=_hdr(token)) for _ in range(1))
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
    tel.close()
    db.dispose()
