"""Alert channels against local stand-ins of the real services: WeCom group robot, DingTalk robot
(signed mode), SMTP with STARTTLS (aiosmtpd, certificate made here) and Aliyun SMS SendSms.

Each stand-in checks the request as the real service documents it — path, query, JSON body,
signature recomputed here independently — answers the service's own error first (WeCom/DingTalk
``errcode != 0``, Aliyun ``Code != "OK"``, SMTP 451) so the outbox retries, then accepts; a
second alarm meets a service that never accepts and its delivery ends dead after the last
attempt. Channels are created through the API (tenancy, validation, sealed credentials)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import select

from semon.api.app import create_app
from semon.config import Settings
from semon.notify.dispatcher import Dispatcher
from semon.store.db import Database
from semon.store.keys import create_key
from semon.store.notify_models import Webhook, WebhookDelivery
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from tests.notify.test_delivery_helpers import auth, raise_alarm, two_firm_registry
from tests.services import free_port, wait_port

FIXED_S = 1_764_000_000.0  # the channels' clock in these tests: 2025-11-24T16:00:00Z
MAX_ATTEMPTS = 3


class Service:
    """A real HTTP server on 127.0.0.1 standing in for a provider: records each request and
    answers from ``replies`` (the last one repeats)."""

    def __init__(self, replies: list[tuple[int, dict[str, Any]]]) -> None:
        self.port = free_port()
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with service.lock:
                    service.requests.append({"method": self.command, "target": self.path, "body": raw,
                                             "headers": {k.lower(): v for k, v in self.headers.items()}})  # fmt: skip
                    status, reply = service.replies[0] if len(service.replies) == 1 else service.replies.pop(0)
                data = orjson.dumps(reply)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        wait_port(self.port)

    def url(self, path: str) -> str:
        """The base URL a channel is pointed at: by name, so the pinning shows in ``Host``."""
        return f"http://localhost:{self.port}{path}"

    def got(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    db = Database(f"sqlite:///{tmp_path}/c.db")
    two_firm_registry(db, tmp_path / "reg.csv")
    settings = Settings(
        db_url=db.url, api_auth="keys", dispatcher_enabled=False, webhook_allow_nets="127.0.0.0/8, ::1/128",
        webhook_backoff_base_s=0.05, webhook_backoff_max_s=0.1, webhook_timeout_s=5.0,
        webhook_max_attempts=MAX_ATTEMPTS, escalation_after_s={}, api_rate_per_s=1000, api_rate_burst=1000,
        notify_ca_file=str(tmp_path / "ca.pem"),
    )  # fmt: skip
    tls = _certificate(tmp_path)  # writes ca.pem, trusted through SEMON_NOTIFY_CA_FILE
    tel = SqliteTelemetryStore(tmp_path / "tel.db")
    token = create_key(db, "f001-desk", "firm", firm_id="F001")[1]
    with TestClient(create_app(settings, db=db, telemetry=tel)) as client:
        yield {"db": db, "settings": settings, "client": client, "token": token, "tls": tls}
    tel.close()
    db.dispose()


def _channel(env: dict[str, Any], spec: dict[str, Any]) -> int:
    r = env["client"].post("/channels", json=spec, headers=auth(env["token"]))
    assert r.status_code == 201, r.text
    out = r.json()
    assert "credentials" not in out and out["audience"] == "firm" and out["firm_id"] == "F001"
    with env["db"].session() as s:  # sealed at rest: no credential appears in the row
        stored = s.get(Webhook, out["id"]).secret
    assert stored.startswith("fernet:") and not any(str(v) in stored for v in spec["credentials"].values())
    return out["id"]


def _deliveries(db: Database, channel_id: int) -> list[WebhookDelivery]:
    with db.session() as s:
        return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == channel_id)
                              .order_by(WebhookDelivery.id)))  # fmt: skip


def _drive(env: dict[str, Any], channel_id: int, until: str, n: int, timeout_s: float = 30.0) -> list[WebhookDelivery]:
    """Run dispatcher rounds until ``n`` deliveries of the channel are in status ``until``."""
    d = Dispatcher(env["settings"], env["db"])
    d.channel_ctx.clock = lambda: FIXED_S
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            d.run_once()
            rows = _deliveries(env["db"], channel_id)
            if sum(r.status == until for r in rows) >= n:
                return rows
            time.sleep(0.05)
    finally:
        d.stop()
    raise AssertionError(f"no {n} {until} deliveries in {timeout_s} s: {[(r.status, r.last_error) for r in rows]}")


def _retry_then_dead(env: dict[str, Any], channel_id: int, service: Service, refusal: tuple[int, dict[str, Any]],
                     requests_per_attempt: int = 1) -> None:  # fmt: skip
    """The first alarm was delivered on its second attempt; now the service refuses for good."""
    rows = _deliveries(env["db"], channel_id)
    assert [(r.status, r.attempts) for r in rows] == [("delivered", 2)]
    service.replies = [refusal]
    raise_alarm(env["db"], "E2", type="door_fault", severity="critical")
    rows = _drive(env, channel_id, "dead", 1)
    dead = rows[-1]
    assert dead.attempts == MAX_ATTEMPTS and dead.dead_at is not None and dead.last_error
    assert len(service.got()) == (2 + MAX_ATTEMPTS) * requests_per_attempt


def _query(target: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))


def test_wecom_group_robot(env):
    ok, limited = (200, {"errcode": 0, "errmsg": "ok"}), (200, {"errcode": 45009, "errmsg": "api freq out of limit"})
    service = Service([limited, ok])
    try:
        cid = _channel(env, {"kind": "wecom", "url": service.url("/cgi-bin/webhook/send"), "severities": ["critical"],
                             "settings": {"mentioned_mobiles": ["13800000000"]},
                             "credentials": {"key": "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"}})  # fmt: skip
        raise_alarm(env["db"], "E1")
        raise_alarm(env["db"], "E1", type="door_fault", severity="minor")  # not a severity of this channel
        _drive(env, cid, "delivered", 1)
        first, second = service.got()
        for req in (first, second):  # every attempt is the same request
            assert req["method"] == "POST" and urlsplit(req["target"]).path == "/cgi-bin/webhook/send"
            assert _query(req["target"]) == {"key": "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"}
            assert req["headers"]["content-type"] == "application/json"
            assert req["headers"]["host"] == f"localhost:{service.port}"  # pinned to 127.0.0.1, named localhost
        assert first["body"] == second["body"]
        msg = orjson.loads(first["body"])
        assert msg["msgtype"] == "text" and set(msg) == {"msgtype", "text"}
        assert msg["text"]["mentioned_mobile_list"] == ["13800000000"]
        content = msg["text"]["content"]
        assert content.startswith("【紧急】困人报警 E1") and "设备 Device: E1" in content and "北京时间" in content
        assert len(content.encode()) <= 2048
        _retry_then_dead(env, cid, service, limited)
    finally:
        service.close()


def test_dingtalk_robot_signed_mode(env):
    secret = "SEC0123456789abcdef0123456789abcdef"
    ok, bad_sign = (200, {"errcode": 0, "errmsg": "ok"}), (200, {"errcode": 310000, "errmsg": "sign not match"})
    service = Service([bad_sign, ok])
    try:
        cid = _channel(env, {"kind": "dingtalk", "url": service.url("/robot/send"),
                             "settings": {"at_mobiles": ["13900000000"]},
                             "credentials": {"access_token": "3f5c0a9e77", "secret": secret}})  # fmt: skip
        raise_alarm(env["db"], "E1")
        _drive(env, cid, "delivered", 1)
        req = service.got()[-1]
        assert req["method"] == "POST" and urlsplit(req["target"]).path == "/robot/send"
        q = _query(req["target"])
        ts = str(int(FIXED_S * 1000))
        assert q["access_token"] == "3f5c0a9e77" and q["timestamp"] == ts
        # Recomputed as DingTalk's docs say: base64(HMAC-SHA256(secret, "timestamp\nsecret")), URL-encoded.
        expected = base64.b64encode(hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest())
        assert q["sign"] == expected.decode()
        assert f"sign={quote(expected.decode(), safe='')}" in urlsplit(req["target"]).query
        msg = orjson.loads(req["body"])
        assert msg["msgtype"] == "text" and msg["at"] == {"atMobiles": ["13900000000"], "isAtAll": False}
        assert "困人" in msg["text"]["content"] and "@13900000000" in msg["text"]["content"]
        _retry_then_dead(env, cid, service, (500, {"errcode": -1, "errmsg": "system busy"}))
    finally:
        service.close()


def _aliyun_signature(secret: str, params: dict[str, str]) -> str:
    """Aliyun RPC signature v1, written out here from the docs (not semon's code)."""

    def enc(s: str) -> str:
        return quote(s, safe="~").replace("+", "%20")

    canonical = "&".join(f"{enc(k)}={enc(params[k])}" for k in sorted(params))
    to_sign = "GET&" + enc("/") + "&" + enc(canonical)
    return base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


def test_aliyun_sms_send_sms(env):
    ok = (200, {"Code": "OK", "Message": "OK", "BizId": "9006197469364984^0", "RequestId": "F655A8D5"})
    flow = (200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控Permits:1", "RequestId": "x"})
    service = Service([flow, ok])
    try:
        cid = _channel(env, {"kind": "sms", "url": service.url("/"), "severities": ["critical"],
                             "settings": {"access_key_id": "LTAI5tTestKeyId", "sign_name": "某某维保",
                                          "template_code": "SMS_123456789",
                                          "phone_numbers": ["13800000000", "13900000000"]},
                             "credentials": {"access_key_secret": "testsecret-0123456789"}})  # fmt: skip
        raise_alarm(env["db"], "E1")
        _drive(env, cid, "delivered", 1)
        first, second = service.got()
        q = _query(second["target"])
        assert second["method"] == "GET" and urlsplit(second["target"]).path == "/"
        assert {k: q[k] for k in ("Action", "Version", "Format", "SignatureMethod", "SignatureVersion", "RegionId",
                                  "AccessKeyId", "PhoneNumbers", "SignName", "TemplateCode", "Timestamp")} == {
            "Action": "SendSms", "Version": "2017-05-25", "Format": "JSON", "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0", "RegionId": "cn-hangzhou", "AccessKeyId": "LTAI5tTestKeyId",
            "PhoneNumbers": "13800000000,13900000000", "SignName": "某某维保", "TemplateCode": "SMS_123456789",
            "Timestamp": "2025-11-24T16:00:00Z",
        }  # fmt: skip
        signature = q.pop("Signature")
        assert signature == _aliyun_signature("testsecret-0123456789", q)
        assert _query(first["target"])["SignatureNonce"] != q["SignatureNonce"]  # a fresh nonce per attempt
        params = orjson.loads(q["TemplateParam"])
        assert params["type"] == "困人" and params["device"] == "E1" and params["level"] == "紧急"
        assert all(len(v) <= 35 for v in params.values())
        _retry_then_dead(env, cid, service, flow)
    finally:
        service.close()


# ------------------------------------------------------------------------------------- SMTP
def _certificate(tmp: Path) -> ssl.SSLContext:
    """A self-signed certificate for ``localhost``; its PEM is the client's CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "ca.pem", tmp / "key.pem")
    return ctx


def test_email_over_smtp_with_starttls(env):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    received: list[dict[str, Any]] = []
    answers = ["451 4.3.0 mailbox busy, try later", "250 OK"]

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:
            received.append({"tls": session.ssl is not None, "login": session.login_data,
                             "from": envelope.mail_from, "to": list(envelope.rcpt_tos), "data": envelope.content})
            return answers[0] if len(answers) == 1 else answers.pop(0)  # fmt: skip

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"alerts", b"pw-1234")
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=env["tls"],
                            require_starttls=True, authenticator=authenticator, auth_required=True)  # fmt: skip
    controller.start()
    try:
        cid = _channel(env, {"kind": "email",
                             "settings": {"host": "localhost", "port": port, "username": "alerts",
                                          "sender": "semon@f001.example", "recipients": ["duty@f001.example"]},
                             "credentials": {"password": "pw-1234"}})  # fmt: skip
        raise_alarm(env["db"], "E1")
        _drive(env, cid, "delivered", 1)
        assert len(received) == 2
        mail = received[-1]
        assert mail["tls"] and mail["from"] == "semon@f001.example" and mail["to"] == ["duty@f001.example"]
        import email

        m = email.message_from_bytes(mail["data"], policy=email.policy.default)
        assert str(m["Subject"]).startswith("【紧急】困人报警 E1")
        text = m.get_content()
        assert "设备 Device: E1" in text and "北京时间" in text
        answers[:] = ["451 4.3.0 mailbox busy, try later"]
        raise_alarm(env["db"], "E2", type="door_fault", severity="critical")
        rows = _drive(env, cid, "dead", 1)
        assert rows[-1].attempts == MAX_ATTEMPTS and "451" in rows[-1].last_error
        assert len(received) == 2 + MAX_ATTEMPTS
    finally:
        controller.stop()


def test_smtp_relay_without_starttls_is_not_used(env):
    """A relay that offers no STARTTLS gets nothing: not the password, not the alarm."""
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        cid = _channel(env, {"kind": "email", "settings": {"host": "localhost", "port": port, "username": "alerts",
                             "sender": "semon@f001.example", "recipients": ["duty@f001.example"]},
                             "credentials": {"password": "pw-1234"}})  # fmt: skip
        raise_alarm(env["db"], "E1")
        rows = _drive(env, cid, "dead", 1)
        assert "STARTTLS" in rows[-1].last_error and received == []
    finally:
        controller.stop()


def test_channel_api_validates_and_isolates_firms(env):
    c, db = env["client"], env["db"]
    r = c.post("/channels", json={"kind": "sms", "settings": {"sign_name": "x"}, "credentials": {}},
               headers=auth(env["token"]))  # fmt: skip
    assert r.status_code == 422 and "access_key_id" in r.text
    r = c.post("/channels", json={"kind": "wecom", "url": "http://[::127.0.0.1]/cgi-bin/webhook/send",
                                  "credentials": {"key": "k-12345678"}}, headers=auth(env["token"]))  # fmt: skip
    assert r.status_code == 422 and "embedding an IPv4" in r.json()["detail"]
    cid = _channel(env, {"kind": "wecom", "url": "http://localhost:1/x", "credentials": {"key": "k-12345678"}})
    other = create_key(db, "f002-desk", "firm", firm_id="F002")[1]
    assert c.get(f"/channels/{cid}", headers=auth(other)).status_code == 404
    assert c.patch(f"/channels/{cid}", json={"active": False}, headers=auth(other)).status_code == 404
    assert c.get("/channels", headers=auth(other)).json()["total"] == 0
    assert c.get(f"/webhooks/{cid}", headers=auth(env["token"])).status_code == 404  # a channel is not a webhook
    r = c.patch(f"/channels/{cid}", json={"severities": ["critical"], "credentials": {"key": "k-87654321"}},
                headers=auth(env["token"]))  # fmt: skip
    assert r.status_code == 200 and r.json()["severities"] == ["critical"]
    with db.session() as s:
        assert "k-87654321" not in s.get(Webhook, cid).secret
    assert c.delete(f"/channels/{cid}", headers=auth(env["token"])).status_code == 204
