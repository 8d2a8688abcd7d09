"""API hygiene: documentation pages that work offline, a spec clients can use (security
schemes, readable unique operation ids, described tags), optional empty bodies, and text no
store can keep (NUL, C0 controls, lone surrogates) refused with 422 — on PostgreSQL, which
used to answer such values with a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from semon.api.app import TAGS, create_app
from semon.config import Settings
from semon.store.db import Database
from semon.store.models import Alarm, Device, Firm
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from tests.api.test_board import browser  # noqa: F401 - the module's Chromium fixture
from tests.helpers import ApiServer

AT = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
T0 = 1_777_622_400_000  # 2026-05-01T08:00:00Z


def _spec() -> dict[str, Any]:
    return create_app(Settings(db_url="sqlite:///:memory:")).openapi()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


def test_operation_ids_are_readable_and_unique():
    ids = [op["operationId"] for _, _, op in _operations(_spec())]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert {"list_keys", "create_key", "revoke_key", "acknowledge_alarm", "list_alarms", "get_device"} <= set(ids)
    # FastAPI's generated form carries the path and the method ("list__keys_get"): none left.
    assert not [i for i in ids if "__" in i or i.endswith(("_get", "_post", "_put", "_patch", "_delete"))], ids


def test_every_tag_is_declared_and_described_and_the_description_says_read_and_write():
    spec = _spec()
    used = {t for _, _, op in _operations(spec) for t in op.get("tags", [])}
    declared = {t["name"]: t["description"] for t in spec["tags"]}
    assert used == set(declared), (used, set(declared))
    assert {"maintenance", "keys", "rescues"} <= used
    assert all(len(d) > 20 for d in declared.values())
    assert [t["name"] for t in TAGS] == [t["name"] for t in spec["tags"]]
    assert "Read API" not in spec["info"]["description"] and "reads and writes" in spec["info"]["description"]


def test_security_schemes_match_how_keys_are_sent():
    spec = _spec()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerKey"] == {**schemes["bearerKey"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyHeader"]["in"] == "header" and schemes["apiKeyHeader"]["name"] == "X-API-Key"
    assert {"bearerKey": []} in spec["security"] and {"apiKeyHeader": []} in spec["security"]
    ops = {(p, m): op for p, m, op in _operations(spec)}
    assert ops[("/health", "get")]["security"] == [] and ops[("/metrics", "get")]["security"] == []
    assert {"apiKeyQuery": []} in ops[("/alarms/stream", "get")]["security"]
    assert "security" not in ops[("/keys", "get")]  # the document-wide requirement applies


def test_ack_body_is_optional_in_the_spec():
    ops = {(p, m): op for p, m, op in _operations(_spec())}
    for path in ("/alarms/{alarm_id}/ack", "/alarms/{alarm_id}/clear", "/rescues/{rescue_id}/arrive"):
        assert not ops[(path, "post")]["requestBody"].get("required", False), path
    assert ops[("/alarms/{alarm_id}/comments", "post")]["requestBody"]["required"]  # a comment needs its text


# --- the pages, in a browser that cannot reach anything but the API --------------------------
@pytest.fixture
def api(tmp_path) -> Iterator[ApiServer]:
    db = Database(f"sqlite:///{tmp_path}/docs.db")
    s = Settings(db_url=db.url, api_auth="keys", dispatcher_enabled=False, canary_enabled=False)
    with ApiServer(s, db, SqliteTelemetryStore(tmp_path / "tel.db")) as server:
        yield server
    db.dispose()


def _offline_page(browser: Any) -> tuple[Any, Any, list[str]]:  # noqa: F811
    """A page whose every request off the loopback is aborted (and recorded)."""
    context = browser.new_context()
    blocked: list[str] = []

    def gate(route: Any) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", gate)
    return context, context.new_page(), blocked


def test_swagger_ui_renders_with_no_network(browser: Any, api: ApiServer):  # noqa: F811
    context, page, blocked = _offline_page(browser)
    try:
        page.goto(f"{api.url}/docs")
        page.wait_for_selector(".swagger-ui .opblock-tag", timeout=30_000)
        assert page.locator(".swagger-ui .opblock-tag").count() == len(TAGS)
        assert page.locator(".swagger-ui button.authorize").count() == 1  # securitySchemes → Authorize
        assert page.locator(".swagger-ui .opblock").count() >= 40
    finally:
        context.close()
    assert blocked == []


def test_redoc_renders_with_no_network(browser: Any, api: ApiServer):  # noqa: F811
    context, page, blocked = _offline_page(browser)
    try:
        page.goto(f"{api.url}/redoc")
        page.wait_for_function("() => document.body.innerText.includes('API keys and their roles')", timeout=30_000)
        assert "semon API" in page.inner_text("h1")
    finally:
        context.close()
    assert blocked == []


def test_docs_assets_are_served_from_the_package(api: ApiServer):
    import httpx

    html = httpx.get(f"{api.url}/docs").text
    assert "cdn" not in html.lower() and "/static/docs/swagger-ui-bundle.js" in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon-32x32.png"):
        r = httpx.get(f"{api.url}/static/docs/{asset}")
        assert r.status_code == 200 and len(r.content) > 500, asset
    redoc = httpx.get(f"{api.url}/redoc")
    assert "fonts.googleapis" not in redoc.text
    assert "default-src 'self'" in redoc.headers["content-security-policy"]


# --- invalid characters and empty bodies, on PostgreSQL ---------------------------------------
@pytest.fixture
def pg_client(pg_url: str, tmp_path) -> Iterator[TestClient]:
    db = Database(pg_url)
    with db.session() as s:
        s.add(Firm(id="F1", name="Alpha Lift Service"))
        s.flush()
        s.add(Device(id="EL-1", kind="elevator", district="Futian", firm_id="F1", equipment_code="3110A0001"))
        s.flush()
        for i, typ in ((1, "trapped_passenger"), (2, "door_open_running")):  # one active alarm per type
            s.add(Alarm(device_id="EL-1", kind="elevator", firm_id="F1", type=typ, rule_id="R",
                        severity="critical", active=True, acknowledged=False, onset_ts=T0 + i, start_ts=T0 + i,
                        end_ts=None, created_at=AT, updated_at=AT, message=f"trapped {i}", details={}))  # fmt: skip
    app = create_app(Settings(db_url=pg_url, api_auth="open", dispatcher_enabled=False, canary_enabled=False),
                     db=db, telemetry=SqliteTelemetryStore(tmp_path / "tel.db"))  # fmt: skip
    with TestClient(app) as c:
        yield c
    db.dispose()


def _alarm_ids(c: TestClient) -> list[int]:
    return sorted(a["id"] for a in c.get("/alarms").json()["items"])


def _invalid_character(r: Any, loc: list[Any]) -> None:
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "urn:semon:problem:validation-error" and body["errors"][0]["loc"] == loc, body
    assert body["errors"][0]["type"] == "invalid_character"


def test_nul_in_a_path_parameter_is_422_not_500(pg_client: TestClient):
    _invalid_character(pg_client.get("/devices/%00"), ["path"])
    _invalid_character(pg_client.get("/devices/EL%01-1/latest"), ["path"])
    assert pg_client.get("/devices/EL-1").status_code == 200  # the same route, a clean id


def test_nul_in_a_query_parameter_is_422_not_500(pg_client: TestClient):
    _invalid_character(pg_client.get("/alarms", params={"device_id": "\x00"}), ["query", "device_id"])
    _invalid_character(pg_client.get("/devices?district=Fu%0Atian"), ["query", "district"])
    assert pg_client.get("/alarms", params={"device_id": "EL-1"}).status_code == 200


def test_nul_and_lone_surrogates_in_a_json_body_are_422_not_500(pg_client: TestClient):
    a = _alarm_ids(pg_client)[0]
    url = f"/alarms/{a}/comments"
    _invalid_character(pg_client.post(url, json={"text": "door\u0000stuck"}), ["body", "text"])
    lone = pg_client.post(url, content=b'{"text": "\\ud800"}', headers={"content-type": "application/json"})
    _invalid_character(lone, ["body", "text"])
    _invalid_character(pg_client.post(url, json={"text": "ok", "act\x1bor": "x"}), ["body", "act\x1bor"])
    # Lines and tabs are text a comment may hold; stored and returned as sent.
    r = pg_client.post(url, json={"text": "door stuck\n\tcalled the firm"})
    assert r.status_code == 200, r.text
    events = pg_client.get(f"/alarms/{a}").json()["events"]
    assert "door stuck\n\tcalled the firm" in [v for e in events for v in (e.get("details") or {}).values()], events


def test_ack_and_clear_without_a_body(pg_client: TestClient):
    first, second = _alarm_ids(pg_client)
    r = pg_client.post(f"/alarms/{first}/ack")
    assert r.status_code == 200, r.text
    assert r.json()["acknowledged"] is True
    assert pg_client.post(f"/alarms/{second}/ack", json={}).status_code == 200  # {} still works
    r = pg_client.post(f"/alarms/{second}/clear")
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
