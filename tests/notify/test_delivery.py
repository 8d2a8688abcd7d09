"""Alert delivery on real services: the webhook outbox survives a receiver down for 2 minutes and
API/dispatcher processes killed with SIGKILL; several dispatchers never double-send; a transaction
committing out of id order is not skipped; dead deliveries are visible and redeliverable; MQTT is
marked published only after the broker's PUBACK."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jsonschema
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from semon.api.app import create_app
from semon.config import Settings
from semon.ingest.collector import Collector
from semon.notify.dispatcher import Dispatcher
from semon.notify.outbox import Scanner, claim, read_watermark
from semon.notify.webhooks import idempotency_key
from semon.rules.alarms import AlarmStore
from semon.store.db import Database
from semon.store.keys import create_key
from semon.store.models import Alarm, AlarmEvent
from semon.store.notify_models import Webhook, WebhookDelivery
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from tests.conftest import Stack
from tests.helpers import AlarmListener, elevator_payload, now_ms, publish_all, wait_until
from tests.notify.test_delivery_helpers import (
    Receiver,
    alarm_events,
    auth,
    body,
    raise_alarm,
    sealed,
    signed_ok,
    two_firm_registry,
)
from tests.services import REPO, free_port, wait_port

EL = "semon/v1/elevator/{}/status"
DOWN_S = 120.0  # the acceptance criterion: the receiver is down for 2 minutes


def trapped(device: str, t0: int, seconds: int, frm: int, to: int) -> list[tuple[str, bytes]]:
    """One status a second; a passenger trapped between the marks (raises, then clears)."""
    return [
        (EL.format(device), elevator_payload(t0 + i * 1000, i + 1, occupied=frm <= i < to, door_zone=True))
        for i in range(seconds)
    ]


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SEMON_DB_URL": settings.db_url,
        "SEMON_MQTT_URL": settings.mqtt_url,
        "SEMON_INFLUX_URL": settings.influx_url or "",
        "SEMON_TELEMETRY_SQLITE_PATH": str(settings.telemetry_sqlite_path),
        "SEMON_API_AUTH": "keys",
        "SEMON_WEBHOOK_ALLOW_PRIVATE": "1",
        "SEMON_WEBHOOK_TIMEOUT_S": "2",
        "SEMON_WEBHOOK_BACKOFF_MAX_S": "10",
        "SEMON_ESCALATION_AFTER_S": '{"critical": 25}',
        "SEMON_LOG_LEVEL": "INFO",
        **extra,
    }


class Proc:
    """A semon subprocess (``api`` or ``deliver``) we can SIGKILL."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.p = subprocess.Popen([sys.executable, "-m", "semon", *args], env=env, stdout=log.open("ab"),
                                  stderr=subprocess.STDOUT)  # fmt: skip

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_receiver_down_for_two_minutes_gets_every_transition_once_despite_killed_dispatchers(
    stack: Stack, tmp_path: Path
):
    """Real Mosquitto, InfluxDB and PostgreSQL; collector in-process; the dispatcher first inside a
    ``semon api`` process, SIGKILLed, then a ``semon deliver`` process, SIGKILLed, then a new
    ``semon api``. Meanwhile transitions keep coming (rules, operators, escalations). The receiver
    comes up after 120 s and must then hold every transition of its firm: exactly one per
    idempotency key after deduplication, each request correctly signed, nothing of firm F002."""
    db = stack.db
    two_firm_registry(db, tmp_path / "reg.csv")
    firm_token = create_key(db, "f001-desk", "firm", firm_id="F001")[1]
    reg_token = create_key(db, "city", "regulator")[1]
    receiver = Receiver()  # not started: down (connection refused)
    logs = tmp_path / "logs"
    logs.mkdir()
    api_port = free_port()
    env = _env(stack.settings, SEMON_API_PORT=str(api_port))
    rules = tmp_path / "rules.toml"
    rules.write_text("[offline]\nkeepalive_s = 3600\n")  # no offline alarms while devices go quiet
    col = Collector(stack.settings.model_copy(update={"rules_file": rules}), db, stack.telemetry())
    col.start()
    procs: list[Proc] = []
    try:
        assert col.connected.wait(10)
        api = Proc(["api"], env, logs / "api1.log")
        procs.append(api)
        wait_port(api_port, 30)
        http = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10)
        r = http.post("/webhooks", json={"url": receiver.url("/f001")}, headers=auth(firm_token))
        assert r.status_code == 201, r.text
        hook, secret = r.json()["id"], r.json()["secret"]
        r = http.post("/webhooks", json={"url": receiver.url("/city")}, headers=auth(reg_token))
        city_hook, city_secret = r.json()["id"], r.json()["secret"]
        assert r.json()["events"] == ["escalated"]
        down_since = time.monotonic()

        # Phase 1 — dispatcher inside `semon api`: rules transitions and operator actions.
        t0 = now_ms() - 200_000
        publish_all(stack.settings, trapped("E1", t0, 40, 2, 30) + trapped("E9", t0, 40, 2, 30), "p1")
        wait_until(lambda: len(alarm_events(db, {"E1"})) >= 2, 20, "E1 raised and cleared")
        publish_all(stack.settings, trapped("E2", t0 + 40_000, 30, 0, 999), "p2")  # E2 stays trapped
        wait_until(lambda: len(alarm_events(db, {"E2"})) >= 1, 20, "E2 raised")
        e2_alarm = http.get("/alarms?device_id=E2", headers=auth(firm_token)).json()["items"][0]["id"]
        r = http.post(f"/alarms/{e2_alarm}/comments", json={"text": "calling the site"}, headers=auth(firm_token))
        assert r.status_code == 200
        time.sleep(3)
        api.kill()  # SIGKILL: whatever it had claimed is re-sent after the lease

        # Phase 2 — no dispatcher at all: transitions pile up in alarm_events only.
        publish_all(stack.settings, trapped("E1", t0 + 60_000, 40, 5, 30), "p3")
        wait_until(lambda: len(alarm_events(db, {"E1"})) >= 4, 20, "E1 raised and cleared again")
        AlarmStore(db).assign(e2_alarm, "f001-desk", "wang")
        time.sleep(2)

        # Phase 3 — `semon deliver` alone, killed too; the E2 alarm escalates (25 s) meanwhile.
        deliver = Proc(["deliver"], env, logs / "deliver.log")
        procs.append(deliver)
        wait_until(lambda: any(e == "escalated" for _, e, d in alarm_events(db, {"E2"})), 40, "E2 escalated")
        time.sleep(2)
        deliver.kill()

        # Phase 4 — a new `semon api`; the receiver comes back after 2 minutes in all.
        api2 = Proc(["api"], env, logs / "api2.log")
        procs.append(api2)
        wait_port(api_port, 30)
        r = http.post(f"/alarms/{e2_alarm}/ack", json={}, headers=auth(firm_token))
        assert r.status_code == 200
        assert receiver.got() == []
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - down_since)))
        receiver.start()
        came_back = time.monotonic()

        with db.session() as s:
            created = s.get(Webhook, hook).created_at
        ours = {i for i, _, d in alarm_events(db, {"E1", "E2"})}
        expected = {idempotency_key(i, hook) for i in ours}
        escalations = {i for i, e, _ in alarm_events(db) if e == "escalated"}
        wait_until(lambda: set(receiver.by_key("/f001")) >= expected, 60, "every F001 transition delivered")
        wait_until(lambda: {idempotency_key(i, city_hook) for i in escalations} <= set(receiver.by_key("/city")),
                   30, "escalations delivered to the regulator")  # fmt: skip
        delay = time.monotonic() - came_back

        got = receiver.by_key("/f001")
        assert set(got) == expected, "exactly the firm's transitions, none of F002's E9"
        assert all(orjson.loads(r["body"])["device_id"] in ("E1", "E2") for rs in got.values() for r in rs)
        for key, reqs in got.items():
            assert all(signed_ok(q, secret) for q in reqs), key
            assert len({q["body"] for q in reqs}) == 1, "a redelivery sends the same document"
            assert f"semon-evt{body(reqs[0])['event_id']}-wh{hook}" == key
        events = Counter(body(rs[0])["event"] for rs in got.values())
        assert events["raised"] >= 3 and events["cleared"] >= 2 and events["escalated"] >= 1
        assert {"comment", "assigned", "acknowledged"} <= set(events)
        city = receiver.by_key("/city")
        assert {body(rs[0])["event"] for rs in city.values()} == {"escalated"}
        assert all(signed_ok(q, city_secret) for rs in city.values() for q in rs)

        def statuses() -> Counter[str]:
            with db.session() as s:
                return Counter(s.scalars(select(WebhookDelivery.status).where(WebhookDelivery.webhook_id == hook)))

        # The receiver logs a request before it answers; the dispatcher records after the answer.
        wait_until(lambda: statuses() == Counter({"delivered": len(expected)}), 30, "every delivery recorded")
        with db.session() as s:
            first_at = min(s.scalars(select(AlarmEvent.at).where(AlarmEvent.id.in_(ours))))
        assert first_at >= created
        duplicates = sum(len(v) - 1 for v in got.values())
        print(f"\n{len(expected)} transitions to F001, {len(city)} escalations to the city; all within "
              f"{delay:.1f} s of the receiver's return; {duplicates} duplicate request(s)")  # fmt: skip
        assert delay < 15, "backoff is capped at 10 s"
    finally:
        receiver.stop()
        for p in procs:
            p.stop()
        col.stop()
    for log in logs.iterdir():
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path}/d.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    d = Database(url)
    two_firm_registry(d, tmp_path / "reg.csv")
    yield d
    d.dispose()


def _settings(db: Database, **kw: object) -> Settings:
    base = dict(db_url=db.url, api_auth="keys", dispatcher_enabled=False, webhook_allow_private=True,
                webhook_backoff_base_s=0.1, webhook_backoff_max_s=0.5, webhook_timeout_s=2.0,
                escalation_after_s={}, api_rate_per_s=1000, api_rate_burst=1000)  # fmt: skip
    return Settings(**{**base, **kw})  # type: ignore[arg-type]


def _webhook(db: Database, url: str, firm: str | None = "F001", **kw: object) -> Webhook:
    now = datetime.now(UTC) - timedelta(seconds=1)
    with db.session() as s:
        w = Webhook(firm_id=firm, url=url, secret=sealed("s" * 32), active=True, description="", created_by="t",
                    created_at=now, updated_at=now, **kw)  # fmt: skip
        s.add(w)
        s.flush()
        return w


def test_several_dispatchers_never_send_a_delivery_twice(db: Database):
    receiver = Receiver(delay_s=0.03)
    receiver.start()
    w = _webhook(db, receiver.url())
    settings = _settings(db, webhook_concurrency=1)  # claims of 16: the 60 rows take several rounds
    for i in range(60):
        raise_alarm(db, "E1" if i % 2 else "E2", type=f"t{i}")
    dispatchers = [Dispatcher(settings, db, name=f"d{i}") for i in range(3)]
    stop = threading.Event()

    def loop(d: Dispatcher) -> None:
        while not stop.is_set():
            d.run_once()

    threads = [threading.Thread(target=loop, args=(d,)) for d in dispatchers]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: len(receiver.got()) >= 60, 30, "60 deliveries")
        time.sleep(1.0)  # anything doubled would arrive now
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for d in dispatchers:
            d.stop()
        receiver.stop()
    keys = Counter(r["headers"]["idempotency-key"] for r in receiver.got())
    assert len(keys) == 60 and set(keys.values()) == {1}, keys.most_common(3)
    assert sum(d.stats["deliveries_delivered"] for d in dispatchers) == 60
    assert sum(1 for d in dispatchers if d.stats["deliveries_delivered"]) >= 2, "the work was shared"
    with db.session() as s:
        assert set(s.scalars(select(WebhookDelivery.status).where(WebhookDelivery.webhook_id == w.id))) == {
            "delivered"
        }


def test_a_claim_takes_at_most_its_limit_and_never_a_claimed_row(db: Database):
    _webhook(db, "http://127.0.0.1:9/never")
    for i in range(20):
        raise_alarm(db, "E1", type=f"t{i}")
    Scanner(db, _settings(db)).scan()
    first = claim(db, 5, 60)
    second = claim(db, 100, 60)
    assert len(first) == 5 and len(second) == 15
    assert not {c.id for c in first} & {c.id for c in second}
    assert claim(db, 100, 60) == [], "everything is leased"


def test_a_transition_committed_after_a_higher_id_is_not_skipped(pg_url: str, tmp_path: Path):
    """PostgreSQL hands out ids at insert; a slow transaction commits its lower id last."""
    db = Database(pg_url)
    try:
        two_firm_registry(db, tmp_path / "reg.csv")
        w = _webhook(db, "http://127.0.0.1:9/never")
        settings = _settings(db, notify_gap_timeout_s=30)
        scanner = Scanner(db, settings)
        slow = db.sessions()
        now = datetime.now(UTC)
        a = Alarm(device_id="E1", kind="elevator", firm_id="F001", type="x", rule_id="x", severity="major",
                  active=True, acknowledged=False, onset_ts=1, start_ts=2, created_at=now, updated_at=now,
                  message="", details={})  # fmt: skip
        slow.add(a)
        slow.flush()
        slow_ev = AlarmEvent(alarm_id=a.id, event="raised", ts=2, at=now, severity="major", details={})
        slow.add(slow_ev)
        slow.flush()  # id taken, not committed
        _, fast_ev = raise_alarm(db, "E2", type="y")
        assert fast_ev > slow_ev.id
        scanner.scan()
        with db.session() as s:
            assert set(s.scalars(select(WebhookDelivery.event_id).where(WebhookDelivery.webhook_id == w.id))) == {
                fast_ev
            }
        assert read_watermark(db) < slow_ev.id, "the watermark waits below the open transaction"
        slow.commit()
        slow.close()
        scanner.scan()
        with db.session() as s:
            got = set(s.scalars(select(WebhookDelivery.event_id).where(WebhookDelivery.webhook_id == w.id)))
        assert got == {slow_ev.id, fast_ev}
        assert read_watermark(db) == fast_ev
        # A restarted dispatcher rescans from the watermark and adds nothing twice.
        Scanner(db, settings).scan()
        with db.session() as s:
            n = len(s.scalars(select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == w.id)).all())
        assert n == 2
    finally:
        db.dispose()


def test_dead_deliveries_are_listed_and_redelivered_and_tenancy_holds(db: Database, tmp_path: Path):
    receiver = Receiver(status=503)
    receiver.start()
    settings = _settings(db, webhook_max_attempts=3)
    tokens = {
        "a": create_key(db, "f001", "firm", firm_id="F001")[1],
        "b": create_key(db, "f002", "firm", firm_id="F002")[1],
        "owner_a": create_key(db, "u1", "owner", use_unit_id="U0001")[1],
        "city": create_key(db, "city", "regulator")[1],
    }
    tel = SqliteTelemetryStore(tmp_path / "tel.db")
    d = Dispatcher(settings, db)
    try:
        with TestClient(create_app(settings, db=db, telemetry=tel)) as c:
            r = c.post("/webhooks", json={"url": receiver.url(), "min_severity": "major"}, headers=auth(tokens["a"]))
            assert r.status_code == 201
            hook = r.json()["id"]
            r = c.post("/webhooks", json={"url": receiver.url("/owner")}, headers=auth(tokens["owner_a"]))
            assert r.status_code == 201 and r.json()["audience"] == "owner"
            assert c.post("/webhooks", json={"url": "ftp://x.example/a"}, headers=auth(tokens["a"])).status_code == 422
            strict = Settings(**{**settings.model_dump(), "webhook_allow_private": False})
            with TestClient(create_app(strict, db=db, telemetry=tel)) as c2:
                r = c2.post("/webhooks", json={"url": "http://127.0.0.1:8080/x"}, headers=auth(tokens["a"]))
                assert r.status_code == 422 and "non-public" in r.json()["detail"]
            r = c.post("/webhooks", json={"url": receiver.url(), "firm_id": "F002"}, headers=auth(tokens["a"]))
            assert r.status_code == 422  # only the regulator subscribes for someone else
            raise_alarm(db, "E1")  # critical: wanted
            raise_alarm(db, "E1", type="door_fault", severity="minor")  # below min_severity
            raise_alarm(db, "E9", firm="F002")  # another firm's
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                d.run_once()
                dead = c.get(f"/webhooks/{hook}/deliveries?status=dead", headers=auth(tokens["a"])).json()
                if dead["total"] == 1:
                    break
                time.sleep(0.1)
            assert dead["total"] == 1
            item = dead["items"][0]
            assert item["attempts"] == 3 and item["last_status_code"] == 503 and item["payload"]["device_id"] == "E1"
            assert c.get(f"/webhooks/{hook}", headers=auth(tokens["a"])).json()["deliveries"]["dead"] == 1
            # Firm B sees none of it: 404 on every path, nothing in its list.
            for path in (f"/webhooks/{hook}", f"/webhooks/{hook}/deliveries",
                         f"/webhooks/{hook}/deliveries/{item['id']}"):  # fmt: skip
                assert c.get(path, headers=auth(tokens["b"])).status_code == 404
            assert c.post(f"/webhooks/{hook}/redeliver", json={}, headers=auth(tokens["b"])).status_code == 404
            assert c.patch(f"/webhooks/{hook}", json={"active": False}, headers=auth(tokens["b"])).status_code == 404
            assert c.delete(f"/webhooks/{hook}", headers=auth(tokens["b"])).status_code == 404
            assert c.get("/webhooks", headers=auth(tokens["b"])).json()["total"] == 0
            assert c.get("/webhooks", headers=auth(tokens["city"])).json()["total"] == 2
            # The receiver is fixed; redelivery sends it again under the same idempotency key.
            receiver.status = 200
            r = c.post(f"/webhooks/{hook}/redeliver", json={"status": "dead"}, headers=auth(tokens["a"]))
            assert r.json() == {"redelivered": 1}
            d.run_once()
            after = c.get(f"/webhooks/{hook}/deliveries/{item['id']}", headers=auth(tokens["a"])).json()
            assert after["status"] == "delivered" and after["attempts"] == 1
            keys = Counter(q["headers"]["idempotency-key"] for q in receiver.got("/hook"))
            assert keys == Counter({item["idempotency_key"]: 4}), "3 failed attempts + the redelivery, one key"
            # The owner's webhook got its unit's transitions (all severities), not F002's.
            owner = {body(q)["device_id"] for q in receiver.got("/owner")}
            assert owner == {"E1"}
            assert c.delete(f"/webhooks/{hook}", headers=auth(tokens["a"])).status_code == 204
            assert c.get(f"/webhooks/{hook}", headers=auth(tokens["a"])).status_code == 404
    finally:
        d.stop()
        receiver.stop()
        tel.close()


@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_mqtt_transitions_are_marked_published_only_after_the_broker_acknowledged_them(
    stack: Stack, tmp_path: Path
):
    """Broker down: an operator action stays unpublished (no claim-then-lose); broker back: it is
    published with its event_id and marked."""
    db = stack.db
    two_firm_registry(db, tmp_path / "reg.csv")
    alarm_id, _ = raise_alarm(db, "E1")
    col = Collector(stack.settings, db, stack.telemetry())
    col.start()
    listener = None
    try:
        assert col.connected.wait(10)
        assert stack.mosquitto is not None
        stack.mosquitto.stop()
        wait_until(lambda: not col.connected.is_set(), 10, "collector sees the broker gone")
        AlarmStore(db).acknowledge(alarm_id, "li")
        time.sleep(2.5)  # several relay rounds
        with db.session() as s:
            q = select(AlarmEvent).where(AlarmEvent.alarm_id == alarm_id, AlarmEvent.event == "acknowledged")
            ack = s.scalar(q)
            assert ack is not None and ack.published_at is None
        stack.mosquitto.start()
        listener = AlarmListener(stack.settings)
        wait_until(lambda: col.connected.is_set(), 20, "collector reconnected")

        def marked() -> bool:
            with db.session() as s:
                return s.scalar(select(AlarmEvent.published_at).where(AlarmEvent.id == ack.id)) is not None

        wait_until(marked, 15, "acknowledgement marked published")
        wait_until(lambda: any(m["event_id"] == ack.id for m in listener.got), 10, "acknowledgement on MQTT")
        m = next(m for m in listener.got if m["event_id"] == ack.id)
        assert m["event"] == "acknowledged" and m["actor"] == "li" and m["alarm_id"] == alarm_id
        jsonschema.validate(m, orjson.loads((REPO / "core/contract/schemas/alarm.json").read_bytes()))
    finally:
        if listener:
            listener.close()
        col.stop()
