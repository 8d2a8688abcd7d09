"""Webhook and channel targets: every non-global address form is refused unless the operator's
allow-list names it; a delivery resolves the name once and connects to the checked address with
the name's Host header and TLS server name; secrets are sealed at rest (migration 0008 seals
the existing ones) and a missing or wrong SEMON_SECRET_KEY is one clear line."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from semon.api.app import create_app
from semon.config import Settings
from semon.notify.dispatcher import Dispatcher
from semon.notify.sealed import Sealer, SecretKeyError
from semon.notify.targets import TargetPolicy, TargetRefused, parse_nets, resolve
from semon.store.db import Database, make_engine, migrate
from semon.store.keys import create_key
from semon.store.notify_models import Webhook, WebhookDelivery
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from tests.notify.test_delivery_channels import _certificate
from tests.notify.test_delivery_helpers import Receiver, auth, raise_alarm, sealed, signed_ok, two_firm_registry
from tests.services import free_port, wait_port

REFUSED = [
    "http://127.0.0.1/", "http://localhost/", "http://[::1]/", "http://10.0.0.8/", "http://172.16.5.4/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data", "http://[fe80::1]/", "http://100.64.0.1/",
    "http://0.0.0.0/", "http://[::]/", "http://192.0.0.8/", "http://192.0.2.10/", "http://198.18.0.1/",
    "http://224.0.0.251/", "http://240.0.0.1/", "http://255.255.255.255/", "http://[ff02::1]/",
    "http://[fc00::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:8.8.8.8]/", "http://[::127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/", "http://[64:ff9b:1::a00:1]/", "http://[2002:7f00:1::]/", "http://[2001::1]/",
    "http://[2001:db8::1]/",
]  # fmt: skip


@pytest.mark.parametrize("url", REFUSED)
def test_every_non_global_form_is_refused(url):
    with pytest.raises(TargetRefused, match="SEMON_WEBHOOK_ALLOW_NETS"):
        resolve(url, TargetPolicy())


def test_public_addresses_pass_and_the_allow_list_opens_only_what_it_names():
    assert str(resolve("https://8.8.8.8/hook?a=1", TargetPolicy()).ip) == "8.8.8.8"
    assert resolve("http://[2400:3200::1]:8080/x", TargetPolicy()).url() == "http://[2400:3200::1]:8080/x"
    policy = TargetPolicy(parse_nets("127.0.0.0/8, 10.1.0.0/16"))
    assert str(resolve("http://localhost:9/h", policy).ip) == "127.0.0.1"
    resolve("http://10.1.2.3/", policy)
    for url in ("http://10.2.0.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/"):
        with pytest.raises(TargetRefused):
            resolve(url, policy)
    with pytest.raises(ValueError, match="SEMON_WEBHOOK_ALLOW_NETS: 'nope'"):
        parse_nets("127.0.0.0/8,nope")
    with pytest.raises(ValueError, match="SEMON_WEBHOOK_ALLOW_NETS: 'nope'"):  # at start, from the environment
        Settings(webhook_allow_nets="nope")
    for url in ("ftp://x.example/", "http://user:pw@x.example/", "smtp://x.example/", "http://[::1", "http://x:99999/"):
        with pytest.raises(TargetRefused):
            resolve(url, TargetPolicy())


def _settings(db: Database, **kw: Any) -> Settings:
    base = dict(db_url=db.url, api_auth="keys", dispatcher_enabled=False, webhook_allow_nets="127.0.0.0/8",
                webhook_backoff_base_s=0.05, webhook_backoff_max_s=0.1, webhook_timeout_s=5.0,
                escalation_after_s={}, api_rate_per_s=1000, api_rate_burst=1000)  # fmt: skip
    return Settings(**{**base, **kw})


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = Database(f"sqlite:///{tmp_path}/t.db")
    two_firm_registry(d, tmp_path / "reg.csv")
    yield d
    d.dispose()


def _run_until_delivered(d: Dispatcher, db: Database, n: int = 1, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        d.run_once()
        with db.session() as s:
            if s.scalar(sa.select(sa.func.count()).where(WebhookDelivery.status == "delivered")) >= n:
                return
        time.sleep(0.05)
    raise AssertionError("not delivered in time")


def test_a_delivery_resolves_the_name_once_and_connects_to_the_checked_address(db, tmp_path, monkeypatch):
    receiver = Receiver()
    receiver.start()
    settings = _settings(db)
    tel = SqliteTelemetryStore(tmp_path / "tel.db")
    token = create_key(db, "f001", "firm", firm_id="F001")[1]
    try:
        with TestClient(create_app(settings, db=db, telemetry=tel)) as c:
            url = f"http://localhost:{receiver.port}/hook"
            r = c.post("/webhooks", json={"url": url}, headers=auth(token))
            assert r.status_code == 201
            secret = r.json()["secret"]
            with db.session() as s:
                stored = s.get(Webhook, r.json()["id"]).secret
            assert stored.startswith("fernet:") and secret not in stored
            for bad in ("http://[::127.0.0.1]/", "http://[64:ff9b::7f00:1]/", "http://192.0.0.8/"):
                r = c.post("/webhooks", json={"url": bad}, headers=auth(token))
                assert r.status_code == 422 and r.json()["type"].endswith("webhook-target-refused"), bad
        lookups: list[str] = []
        real = socket.getaddrinfo

        def counting(host: Any, *a: Any, **kw: Any) -> Any:  # a spy: the real resolver answers
            lookups.append(str(host))
            return real(host, *a, **kw)

        monkeypatch.setattr(socket, "getaddrinfo", counting)
        raise_alarm(db, "E1")
        d = Dispatcher(settings, db)
        try:
            _run_until_delivered(d, db)
        finally:
            d.stop()
        assert lookups.count("localhost") == 1  # the check's lookup is the only one: the send used the address
        (req,) = receiver.got("/hook")
        assert req["headers"]["host"] == f"localhost:{receiver.port}" and signed_ok(req, secret)
    finally:
        receiver.stop()
        tel.close()


def test_https_target_pinned_to_the_address_keeps_the_certificate_check_on_the_name(db, tmp_path):
    """The connection goes to 127.0.0.1, yet TLS is checked against ``localhost`` (SNI): the
    certificate names only localhost, so dialling the address without the name would fail."""
    server_ctx = _certificate(tmp_path)
    got: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wait_port(port)
    now = datetime.now(UTC) - timedelta(seconds=1)
    with db.session() as s:
        s.add(Webhook(firm_id="F001", url=f"https://localhost:{port}/h", secret=sealed("s" * 32), active=True,
                      description="", created_by="t", created_at=now, updated_at=now))  # fmt: skip
    raise_alarm(db, "E1")
    d = Dispatcher(_settings(db, notify_ca_file=str(tmp_path / "ca.pem")), db)
    try:
        _run_until_delivered(d, db)
        assert got and got[0]["host"] == f"localhost:{port}"
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with pytest.raises(ssl.SSLCertVerificationError), socket.create_connection(("127.0.0.1", port)) as raw:
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")  # what dialling the IP without the name meets
    finally:
        d.stop()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_seals_existing_secrets_and_needs_the_key(backend, request, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/m.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = make_engine(url)
    migrate(engine, "0006")
    now = datetime.now(UTC).isoformat()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO webhooks (url, secret, active, description, created_by, created_at, "
                             "updated_at) VALUES ('https://x.example/h', 'whsec_plain', true, '', 't', :n, :n)"),
                     {"n": now})  # fmt: skip
    monkeypatch.delenv("SEMON_SECRET_KEY")
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    with pytest.raises(SecretKeyError, match=r"^SEMON_SECRET_KEY is not set"):
        migrate(engine, "head")
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("SEMON_SECRET_KEY", key)
    migrate(engine, "head")
    with engine.connect() as conn:
        kind, stored = conn.execute(sa.text("SELECT kind, secret FROM webhooks")).one()
    assert kind == "webhook" and stored.startswith("fernet:") and Sealer(key).open(stored) == "whsec_plain"
    engine.dispose()
    db = Database(url)
    try:
        with pytest.raises(SecretKeyError, match=r"^SEMON_SECRET_KEY does not open"):
            Dispatcher(Settings(db_url=url, secret_key=Fernet.generate_key().decode()), db)
        with pytest.raises(SecretKeyError, match=r"^SEMON_SECRET_KEY is not a Fernet key"):
            Sealer("not-a-key")
        with pytest.raises(SecretKeyError, match=r"^SEMON_SECRET_KEY is not set"):
            Dispatcher(Settings(db_url=url, secret_key=None), db)
        Dispatcher(Settings(db_url=url, secret_key=key), db).stop()
    finally:
        db.dispose()
    assert os.environ["SEMON_SECRET_KEY"] == key
