"""Shared fixtures: real Mosquitto, InfluxDB and PostgreSQL (see tests/services.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The pipeline canary raises a platform alarm when no collector answers: tests that want it (the
# fault-injection module) turn it on; elsewhere an API without a collector would alarm mid-test.
os.environ.setdefault("SEMON_CANARY_ENABLED", "false")
# Webhook and channel secrets are sealed at rest: every test process (and its children) has a key.
os.environ.setdefault("SEMON_SECRET_KEY", "c2Vtb24tdGVzdHMtb25seS1rZXktMDAwMDAwMDAwMDA=")

from tests import services
from tests.services import Influx, Mosquitto, drop_postgres_database, postgres_database


def _skip_or_fail(reason: str) -> None:
    """A missing service skips the test, or fails it when services are required (CI)."""
    if os.environ.get("SEMON_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


services.on_missing = _skip_or_fail


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh Mosquitto on a free port."""
    m = Mosquitto(tmp_path / "mosquitto")
    m.start()
    yield m
    m.stop()


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[Influx]:
    """A fresh InfluxDB 1.x on free ports."""
    i = Influx(tmp_path / "influx")
    i.start()
    yield i
    i.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped afterwards."""
    url, name = postgres_database()
    yield url
    drop_postgres_database(name)


# --- a whole storage + broker stack, on real services or on the embedded defaults -------------
import dataclasses  # noqa: E402

from semon.broker import EmbeddedBroker  # noqa: E402
from semon.config import Settings  # noqa: E402
from semon.store import open_telemetry  # noqa: E402
from semon.store.db import Database  # noqa: E402
from semon.store.influx import InfluxStore  # noqa: E402
from semon.store.telemetry_sqlite import SqliteTelemetryStore  # noqa: E402
from tests.services import free_port  # noqa: E402


@dataclasses.dataclass
class Stack:
    """Broker + relational DB + telemetry store a test runs the pipeline against."""

    name: str
    settings: Settings
    db: Database
    mosquitto: Mosquitto | None = None
    influx: Influx | None = None

    def telemetry(self) -> InfluxStore | SqliteTelemetryStore:
        """A fresh handle on the telemetry store."""
        return open_telemetry(self.settings)  # type: ignore[return-value]

    def seqs(self, measurement: str) -> dict[str, list[int]]:
        """Every stored ``seq`` per device (duplicates would show as repeats)."""
        out: dict[str, list[int]] = {}
        for d, v in self.seqs_of(measurement, "seq"):
            out.setdefault(d, []).append(v)
        return out

    def seqs_of(self, measurement: str, field: str) -> list[tuple[str, int]]:
        """(device_id, integer field) of every stored point of a measurement."""
        t = self.telemetry()
        try:
            if isinstance(t, InfluxStore):
                rows = t.rows(f'SELECT "{field}", device_id FROM "{measurement}"')
                return [(str(r["device_id"]), int(r[field])) for r in rows]
            rows = t._db.execute(
                f"SELECT device_id, json_extract(fields, '$.{field}') FROM telemetry WHERE measurement=?",
                (measurement,),
            ).fetchall()
            return [(d, int(v)) for d, v in rows]
        finally:
            t.close()


def _services_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Stack:
    mq = request.getfixturevalue("mosquitto")
    ix = request.getfixturevalue("influx")
    url = request.getfixturevalue("pg_url")
    s = Settings(
        mqtt_url=mq.url, influx_url=ix.url, influx_db="semon", db_url=url, data_dir=tmp_path / "data",
        mqtt_client_id=f"semon-test-{free_port()}", api_auth="open",
    )  # fmt: skip
    return Stack("services", s, Database(url), mq, ix)


def _embedded_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Stack:
    port = free_port()
    broker = EmbeddedBroker(port=port)
    broker.start()
    request.addfinalizer(broker.stop)
    s = Settings(
        mqtt_url=f"mqtt://127.0.0.1:{port}", influx_url=None, db_url=f"sqlite:///{tmp_path}/semon.db",
        telemetry_sqlite_path=tmp_path / "telemetry.db", data_dir=tmp_path / "data", api_auth="open",
    )  # fmt: skip
    return Stack("embedded", s, Database(s.db_url))


@pytest.fixture(params=["services", "embedded"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """The pipeline's surroundings: real Mosquitto + InfluxDB + PostgreSQL, or amqtt + SQLite."""
    st = _services_stack(tmp_path, request) if request.param == "services" else _embedded_stack(tmp_path, request)
    yield st
    st.db.dispose()
