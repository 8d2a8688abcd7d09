"""Console sign-in without keys in URLs: users (argon2), session cookie, CSRF, logout, limits.

In-process app on SQLite; the browser side is tests/api/test_console.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from semon.api.app import create_app
from semon.api.auth import FAILED_AUTH_BURST, RateLimiter
from semon.cli import app as cli
from semon.config import Settings
from semon.store.db import Database
from semon.store.keys import create_key
from semon.store.models import AlarmEvent
from semon.store.users import User, UserError, create_user, disable_user
from tests.api.test_board import _store_alarm
from tests.helpers import small_registry

PASSWORD = "correct horse battery"


@pytest.fixture
def env(tmp_path: Path):
    settings = Settings(db_url=f"sqlite:///{tmp_path}/semon.db", telemetry_sqlite_path=tmp_path / "t.db",
                        dispatcher_enabled=False, canary_enabled=False)  # fmt: skip
    db = Database(settings.db_url)
    small_registry(db, tmp_path / "registry.csv")
    create_user(db, "li.desk", PASSWORD, "firm", firm_id="F001", display_name="李调度")
    yield settings, db
    db.dispose()


def _sign_in(c: TestClient, **body: str) -> dict:
    r = c.post("/session", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_password_sign_in_sets_an_httponly_samesite_cookie_and_writes_need_the_csrf_token(env):
    settings, db = env
    alarm = _store_alarm(db, "E1", "raised")
    with TestClient(create_app(settings, db=db)) as c:
        assert c.get("/alarms").status_code == 401  # keys mode: nothing without credentials
        me = _sign_in(c, username="li.desk", password=PASSWORD)
        assert me["role"] == "firm" and me["firm_name"] == "Firm One" and me["signed_in"]
        assert me["timezone"] == "Asia/Shanghai" and me["rescue_arrival_limit_s"] == 1800
        cookie = c.post("/session", json={"username": "li.desk", "password": PASSWORD}).headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http on loopback; https gets Secure
        me = c.get("/session").json()  # the newest session, as a reloaded page sees it
        assert [a["id"] for a in c.get("/alarms").json()["items"]] == [alarm]

        # A write with the cookie but without (or with a wrong) CSRF token is refused.
        assert c.post(f"/alarms/{alarm}/ack", json={}).status_code == 403
        r = c.post(f"/alarms/{alarm}/ack", json={}, headers={"X-CSRF-Token": "forged"})
        assert r.status_code == 403 and r.json()["type"] == "urn:semon:problem:csrf"
        r = c.post(f"/alarms/{alarm}/ack", json={"actor": "someone-else"}, headers={"X-CSRF-Token": me["csrf_token"]})
        assert r.status_code == 200 and r.json()["acked_by"] == "li.desk"  # the user is the actor, not the body
        with db.session() as s:
            assert s.scalar(select(AlarmEvent.actor).where(AlarmEvent.event == "acknowledged")) == "li.desk"

        # Logout ends the session server-side: the old cookie is worthless even if replayed.
        old = c.cookies.get("semon_session")
        assert c.delete("/session", headers={"X-CSRF-Token": me["csrf_token"]}).status_code == 204
        c.cookies.set("semon_session", old)
        assert c.get("/alarms").status_code == 401


def test_disabling_a_user_ends_their_sessions_and_an_api_key_can_sign_in_too(env):
    settings, db = env
    _, token = create_key(db, "city desk", "regulator")
    with TestClient(create_app(settings, db=db)) as c:
        _sign_in(c, username="li.desk", password=PASSWORD)
        assert c.get("/alarms").status_code == 200
        disable_user(db, "li.desk")
        assert c.get("/alarms").status_code == 401
        assert c.post("/session", json={"username": "li.desk", "password": PASSWORD}).status_code == 401
        me = _sign_in(c, api_key=token)
        assert me["role"] == "regulator" and me["name"] == "city desk"
        assert c.get("/board/state").status_code == 200
    with TestClient(create_app(settings, db=db)) as c:
        # Keys in headers keep working for machines; a key in the URL no longer authenticates.
        assert c.get("/board/state", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/board/state", params={"key": token}).status_code == 401
        assert c.get("/board/stream", params={"key": token}).status_code == 401


def test_failed_sign_ins_are_limited_per_client_address(env):
    settings, db = env
    app = create_app(settings, db=db)
    # No refill during the test (argon2 takes real time per attempt): the count alone decides.
    app.state.auth_failures = RateLimiter(1e-9, FAILED_AUTH_BURST)
    with TestClient(app) as c:
        _sign_in(c, username="li.desk", password=PASSWORD)  # a dispatcher already at work here
        for _ in range(FAILED_AUTH_BURST):
            assert c.post("/session", json={"username": "li.desk", "password": "wrong password"}).status_code == 401
        r = c.post("/session", json={"username": "li.desk", "password": PASSWORD})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1  # even the right password, for now
        # Guessing keys counts against the same address.
        assert c.get("/alarms", headers={"Authorization": "Bearer smk_x_y"}).status_code == 429
        # The session opened before goes on working: its alarms must still reach the desk.
        assert c.get("/alarms").status_code == 200


def test_user_rules_and_passwords_are_hashed(env):
    _, db = env
    with pytest.raises(UserError, match="firm_id"):
        create_user(db, "nofirm", PASSWORD, "firm")
    with pytest.raises(UserError, match="at least"):
        create_user(db, "short", "short", "regulator")
    with pytest.raises(UserError, match="already exists"):
        create_user(db, "li.desk", PASSWORD, "firm", firm_id="F001")
    with pytest.raises(UserError, match="unknown firm"):
        create_user(db, "ghost", PASSWORD, "firm", firm_id="F999")
    with db.session() as s:
        h = s.scalar(select(User.password_hash).where(User.username == "li.desk"))
    assert h.startswith("$argon2id$") and PASSWORD not in h


def test_users_cli_create_list_disable(tmp_path: Path, monkeypatch):
    url = f"sqlite:///{tmp_path}/semon.db"
    db = Database(url)
    small_registry(db, tmp_path / "registry.csv")
    db.dispose()
    monkeypatch.setenv("SEMON_DB_URL", url)
    run = CliRunner().invoke
    create = ["users", "create", "wang", "--role", "firm", "--firm", "F001", "--password-stdin"]
    r = run(cli, create, input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    r = run(cli, ["users", "create", "zhao", "--role", "firm", "--password-stdin"], input=PASSWORD + "\n")
    assert r.exit_code == 2 and "firm_id" in r.output
    r = run(cli, ["users", "list"])
    assert r.exit_code == 0 and "wang" in r.output and "用户名" in r.output and "F001" in r.output
    assert run(cli, ["users", "disable", "wang"]).exit_code == 0
    assert "wang" not in run(cli, ["users", "list"]).output
    assert "wang" in run(cli, ["users", "list", "--include-disabled"]).output
    assert run(cli, ["users", "disable", "nobody"]).exit_code == 1
