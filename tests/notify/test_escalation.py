"""Escalation on time: an unacknowledged critical alarm escalates to the regulator after N seconds
and every N seconds while unresolved, over MQTT (relayed by the collector) and the regulator's
webhook; acknowledging stops it; several dispatchers escalate once."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from semon.config import Settings
from semon.ingest.collector import Collector
from semon.notify.dispatcher import Dispatcher
from semon.notify.escalation import escalate_unacknowledged
from semon.rules.alarms import AlarmStore
from semon.store.db import Database
from semon.store.models import Alarm, AlarmEvent
from semon.store.notify_models import Escalation, Webhook
from semon.timeutil import as_utc
from tests.conftest import Stack
from tests.helpers import wait_until
from tests.notify.test_delivery_helpers import Receiver, body, raise_alarm, sealed, signed_ok, two_firm_registry
from tests.services import free_port

N = 2.0  # seconds before a critical alarm escalates (5 min in production)
POLL = 0.1


def _escalations(db: Database, alarm_id: int) -> list[AlarmEvent]:
    with db.session() as s:
        return list(
            s.scalars(
                select(AlarmEvent)
                .where(AlarmEvent.alarm_id == alarm_id, AlarmEvent.event == "escalated")
                .order_by(AlarmEvent.id)
            )
        )


def test_unacknowledged_critical_alarm_escalates_on_time_repeats_and_stops_when_acknowledged(
    stack: Stack, tmp_path: Path
):
    db = stack.db
    two_firm_registry(db, tmp_path / "reg.csv")
    receiver = Receiver()
    receiver.start()
    now = datetime.now(UTC)
    with db.session() as s:
        s.add(Webhook(firm_id=None, url=receiver.url("/city"), secret=sealed("c" * 32), active=True,
                      events=["escalated"], description="", created_by="t", created_at=now,
                      updated_at=now))  # fmt: skip
    settings = stack.settings.model_copy(
        update={"escalation_after_s": {"critical": N, "major": 2 * N}, "dispatcher_poll_s": POLL,
                "webhook_allow_private": True}
    )  # fmt: skip
    host, port = settings.mqtt_endpoint()
    mqtt_got: list[dict] = []
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"esc-{free_port()}", protocol=mqtt.MQTTv311)
    listener.on_message = lambda _c, _u, m: mqtt_got.append(orjson.loads(m.payload))
    subscribed = threading.Event()
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.connect(host, port)
    listener.subscribe("semon/v1/alarms/#", qos=1)
    listener.loop_start()
    assert subscribed.wait(10)
    col = Collector(settings, db, stack.telemetry())
    col.start()
    dispatcher = Dispatcher(settings, db)
    try:
        assert col.connected.wait(10)
        critical, _ = raise_alarm(db, "E1")
        major, _ = raise_alarm(db, "E2", type="stopped_outside_door_zone", severity="major")
        minor, _ = raise_alarm(db, "E1", type="door_fault", severity="minor")
        with db.session() as s:
            created = {a: as_utc(s.get(Alarm, a).created_at) for a in (critical, major)}
        dispatcher.start()
        wait_until(lambda: len(_escalations(db, critical)) >= 2, 3 * N + 2, "two escalations of the critical alarm")
        wait_until(lambda: len(_escalations(db, major)) >= 1, 2 * N + 2, "the major alarm escalated")
        AlarmStore(db).acknowledge(critical, "li")
        acked_at = time.monotonic()
        esc = _escalations(db, critical)
        lags = [(as_utc(e.at) - created[critical]).total_seconds() - (i + 1) * N for i, e in enumerate(esc)]
        print(f"\ncritical escalations {[round(x, 3) for x in lags]} s after their due time (N = {N} s)")
        assert all(0 <= lag < 0.6 for lag in lags), lags  # on time: never early, within a few polls
        assert [e.details["level"] for e in esc] == list(range(1, len(esc) + 1))
        assert all(e.actor == "escalation" and e.details["reason"] == "unacknowledged" for e in esc)
        major_esc = _escalations(db, major)
        assert 0 <= (as_utc(major_esc[0].at) - created[major]).total_seconds() - 2 * N < 0.6
        time.sleep(max(0.0, 2 * N + 0.5 - (time.monotonic() - acked_at)))
        assert len(_escalations(db, critical)) == len(esc), "no escalation once acknowledged"
        assert _escalations(db, minor) == [], "minor alarms do not escalate (not configured)"
        # Out on every channel: MQTT (relayed by the collector) and the regulator's webhook.
        ids = {e.id for e in esc} | {major_esc[0].id}
        wait_until(lambda: ids <= {m["event_id"] for m in mqtt_got if m["event"] == "escalated"}, 10, "on MQTT")
        wait_until(lambda: ids <= {body(r)["event_id"] for r in receiver.got("/city")}, 10, "to the regulator")
        m = next(m for m in mqtt_got if m["event_id"] == esc[0].id)
        assert m["actor"] == "escalation" and m["details"]["level"] == 1 and m["device_id"] == "E1"
        assert all(signed_ok(r, "c" * 32) for r in receiver.got("/city"))
    finally:
        dispatcher.stop()
        col.stop()
        listener.disconnect()
        listener.loop_stop()
        receiver.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path}/e.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    d = Database(url)
    two_firm_registry(d, tmp_path / "reg.csv")
    yield d
    d.dispose()


def test_several_dispatchers_escalate_each_level_once(db: Database):
    """Four dispatchers race at each level's moment (a fixed clock, not the machine's pace)."""
    settings = Settings(db_url=db.url, escalation_after_s={"critical": 1.0})
    alarm, _ = raise_alarm(db, "E1")
    with db.session() as s:
        created = as_utc(s.get(Alarm, alarm).created_at)
    for level in (1, 2):
        at = created + timedelta(seconds=level * 1.0 + 0.01)
        barrier = threading.Barrier(4)

        def race(at: datetime = at, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            for _ in range(5):
                escalate_unacknowledged(db, settings, now=at)

        threads = [threading.Thread(target=race) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    with db.session() as s:
        levels = list(s.scalars(select(Escalation.level).where(Escalation.alarm_id == alarm).order_by(Escalation.id)))
    esc = _escalations(db, alarm)
    assert levels == [1, 2] and len(esc) == 2
