"""Helpers of the alert-delivery tests: a real webhook receiver, a two-firm registry, alarm
shortcuts, an API server in a thread and an SSE line parser. (No tests here.)"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from semon.notify.sealed import Sealer
from semon.notify.webhooks import verify
from semon.store.db import Database
from semon.store.models import Alarm, AlarmEvent
from semon.store.registry import import_devices_csv
from tests.helpers import REGISTRY_HEADER
from tests.services import free_port, wait_port


def sealed(secret: str) -> str:
    """``secret`` as the database stores it, under the tests' SEMON_SECRET_KEY (conftest)."""
    return Sealer(os.environ["SEMON_SECRET_KEY"]).seal(secret)


class Receiver:
    """A webhook endpoint: a real HTTP server on 127.0.0.1 recording every request.

    ``status`` is what it answers (change it to make it fail), after ``delay_s``; ``start``/``stop`` take it up and
    down on the same port (down = connection refused).
    """

    def __init__(self, port: int | None = None, status: int = 204, delay_s: float = 0.0) -> None:
        self.port = port or free_port()
        self.status = status
        self.delay_s = delay_s  # a slow endpoint keeps claims in flight longer
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        """Where to point a webhook."""
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        """Listen (again)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                         "at": time.time()}
                    )  # fmt: skip
                time.sleep(receiver.delay_s)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        wait_port(self.port)

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def got(self, path: str | None = None) -> list[dict[str, Any]]:
        """Requests received so far (on ``path``)."""
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def by_key(self, path: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Requests grouped by Idempotency-Key."""
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self.got(path):
            out.setdefault(r["headers"]["idempotency-key"], []).append(r)
        return out


def signed_ok(req: dict[str, Any], secret: str) -> bool:
    """The receiver's check: HMAC over timestamp + body, fresh timestamp."""
    h = req["headers"]
    return verify(secret, h["x-semon-timestamp"], req["body"], h["x-semon-signature"], now=time.time())


def body(req: dict[str, Any]) -> dict[str, Any]:
    """Parsed JSON body."""
    return orjson.loads(req["body"])


def two_firm_registry(db: Database, path: Path) -> None:
    """F001 (owner U0001): elevators E1, E2; F002 (owner U0002): elevator E9."""
    a = "elevator,Tianhe,a,23.1,113.3,F001,Firm One,4,A,92,U0001,Unit One,3,2020-01-01,1.75,20,1,,,,"
    b = "elevator,Yuexiu,b,23.1,113.3,F002,Firm Two,3,B,80,U0002,Unit Two,3,2019-01-01,1.0,8,1,,,,"
    path.write_text(
        f"{REGISTRY_HEADER}\nE1,311012345202000001,{a}\nE2,311012345202000002,{a}\nE9,311012345202000009,{b}\n"
    )
    import_devices_csv(db, path)


def raise_alarm(
    db: Database, device: str, *, type: str = "trapped_passenger", severity: str = "critical",
    firm: str = "F001", created_at: datetime | None = None,
) -> tuple[int, int]:  # fmt: skip
    """Store a raised alarm (as the collector would); returns (alarm id, event id)."""
    now = created_at or datetime.now(UTC)
    ts = int(now.timestamp() * 1000)
    with db.session() as s:
        a = Alarm(device_id=device, kind="elevator", firm_id=firm, type=type, rule_id=f"elevator.{type}",
                  severity=severity, active=True, acknowledged=False, onset_ts=ts - 20_000, start_ts=ts,
                  created_at=now, updated_at=now, message=f"{type} on {device}", details={})  # fmt: skip
        s.add(a)
        s.flush()
        e = AlarmEvent(alarm_id=a.id, event="raised", ts=ts, at=now, severity=severity, details={})
        s.add(e)
        s.flush()
        return a.id, e.id


def alarm_events(db: Database, devices: set[str] | None = None) -> list[tuple[int, str, str]]:
    """(event id, event, device) of every stored transition, in id order."""
    with db.session() as s:
        rows = s.execute(
            AlarmEvent.__table__.select()
            .with_only_columns(AlarmEvent.id, AlarmEvent.event, Alarm.device_id)
            .join_from(AlarmEvent, Alarm, Alarm.id == AlarmEvent.alarm_id)
            .order_by(AlarmEvent.id)
        ).all()
    return [(i, e, d) for i, e, d in rows if devices is None or d in devices]


def auth(token: str) -> dict[str, str]:
    """Bearer header."""
    return {"Authorization": f"Bearer {token}"}


def seed_notify(db: Database, device_id: str) -> dict[str, int]:
    """A webhook of the device's firm with one delivery, and a rescue of the device's newest alarm.

    For tests that walk every endpoint (tests/api/test_tenancy.py): path values ``webhook_id``,
    ``delivery_id`` and ``rescue_id`` naming that firm's resources.
    """
    from sqlalchemy import select

    from semon.store.models import Device
    from semon.store.notify_models import Webhook, WebhookDelivery
    from semon.store.rescue import Rescue

    now = datetime.now(UTC)
    with db.session() as s:
        firm = s.scalar(select(Device.firm_id).where(Device.id == device_id))
        alarm = s.scalar(select(Alarm).where(Alarm.device_id == device_id).order_by(Alarm.id.desc()))
        assert alarm is not None, f"seed an alarm of {device_id} first"
        ev = s.scalar(select(AlarmEvent).where(AlarmEvent.alarm_id == alarm.id).order_by(AlarmEvent.id))
        w = Webhook(firm_id=firm, url="https://hooks.example/semon", secret=sealed("x" * 32), active=True,
                    description="", created_by="seed", created_at=now, updated_at=now)  # fmt: skip
        ch = Webhook(kind="wecom", firm_id=firm, url="https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
                     secret=sealed('{"key":"k-12345678"}'), config={}, active=True, description="", created_by="seed",
                     created_at=now, updated_at=now)  # fmt: skip
        s.add_all([w, ch])
        s.flush()
        d = WebhookDelivery(webhook_id=w.id, event_id=ev.id, status="dead", payload={"event_id": ev.id}, attempts=3,
                            next_attempt_at=now, created_at=now, dead_at=now)  # fmt: skip
        r = s.scalar(select(Rescue).where(Rescue.alarm_id == alarm.id))
        if r is None:  # the API's dispatcher may have opened it already
            r = Rescue(alarm_id=alarm.id, device_id=device_id, firm_id=firm, status="open", alarm_at=alarm.created_at,
                       arrival_breached=False, notes=[], created_at=now, updated_at=now)  # fmt: skip
            s.add(r)
        s.add(d)
        s.flush()
        return {"webhook_id": w.id, "delivery_id": d.id, "rescue_id": r.id, "channel_id": ch.id}
