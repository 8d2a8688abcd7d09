"""``GET /alarms/stream``: Server-Sent Events through the caller's tenancy — firm A sees only its
own equipment's transitions, the regulator all; resumable with ``Last-Event-ID``; a key is
required."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from semon.config import Settings
from semon.rules.alarms import AlarmStore
from semon.store.db import Database
from semon.store.keys import create_key
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from tests.helpers import ApiServer, sse_events, wait_until
from tests.notify.test_delivery_helpers import auth, raise_alarm, two_firm_registry


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path}/s.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    db = Database(url)
    two_firm_registry(db, tmp_path / "reg.csv")
    tel = SqliteTelemetryStore(tmp_path / "tel.db")
    settings = Settings(db_url=url, api_auth="keys", dispatcher_enabled=False)
    tokens = {
        "a": create_key(db, "f001", "firm", firm_id="F001")[1],
        "b": create_key(db, "f002", "firm", firm_id="F002")[1],
        "city": create_key(db, "city", "regulator")[1],
    }
    with ApiServer(settings, db, tel) as api:
        yield {"db": db, "url": api.url, "tokens": tokens}
    tel.close()
    db.dispose()


class Stream:
    """Reads one SSE stream in a thread, collecting its ``alarm`` events."""

    def __init__(self, url: str, token: str, headers: dict[str, str] | None = None, params: dict | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.status: int | None = None
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(5, read=30))
        self._t = threading.Thread(target=self._run, args=(token, headers or {}, params or {}), daemon=True)
        self._t.start()
        assert self.ready.wait(10)

    def _run(self, token: str, headers: dict[str, str], params: dict) -> None:
        try:
            with self._client.stream("GET", "/alarms/stream", headers={**auth(token), **headers}, params=params) as r:
                self.status = r.status_code
                for ev in sse_events(r.iter_lines()):
                    if "retry" in ev:
                        self.ready.set()
                    elif ev.get("event") == "alarm":
                        self.events.append({"id": int(ev["id"]), **orjson.loads(ev["data"])})
        except httpx.HTTPError:
            pass
        finally:
            self.ready.set()

    def devices(self) -> list[str]:
        return [e["device_id"] for e in self.events]

    def close(self) -> None:
        self._client.close()


def test_stream_shows_firm_a_only_its_own_alarms_and_resumes_from_last_event_id(server: dict[str, Any]):
    db, url, tok = server["db"], server["url"], server["tokens"]
    a = Stream(url, tok["a"])
    b = Stream(url, tok["b"])
    city = Stream(url, tok["city"])
    try:
        assert a.status == 200
        t0 = time.monotonic()
        e1, first = raise_alarm(db, "E1")
        raise_alarm(db, "E9", firm="F002")
        raise_alarm(db, "E2", type="door_fault", severity="minor")
        AlarmStore(db).acknowledge(e1, "li")
        wait_until(lambda: len(city.events) == 4, 5, "the regulator sees all four transitions")
        wait_until(lambda: len(a.events) == 3, 5, "firm A sees its three")
        print(f"\nall streams had the transitions {time.monotonic() - t0:.2f} s after they were stored")
        wait_until(lambda: len(b.events) == 1, 5, "firm B sees its one")
        time.sleep(0.5)
        assert a.devices() == ["E1", "E2", "E1"] and "E9" not in a.devices()
        assert [e["event"] for e in a.events] == ["raised", "raised", "acknowledged"]
        assert b.devices() == ["E9"]
        assert [e["id"] for e in city.events] == sorted(e["id"] for e in city.events)
        assert all(e["id"] == e["event_id"] for e in a.events), "SSE id = the transition's event_id"
    finally:
        for s in (a, b, city):
            s.close()
    # Reconnect after the first transition: the rest of A's, and nothing of B's.
    again = Stream(url, tok["a"], headers={"Last-Event-ID": str(first)})
    try:
        wait_until(lambda: len(again.events) == 2, 5, "resumed after Last-Event-ID")
        assert [(e["device_id"], e["event"]) for e in again.events] == [("E2", "raised"), ("E1", "acknowledged")]
    finally:
        again.close()
    from_start = Stream(url, tok["b"], params={"after": 0})
    try:
        wait_until(lambda: len(from_start.events) == 1, 5, "?after=0 replays B's one transition")
        assert from_start.devices() == ["E9"]
    finally:
        from_start.close()
    r = httpx.get(f"{url}/alarms/stream", timeout=5)
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
