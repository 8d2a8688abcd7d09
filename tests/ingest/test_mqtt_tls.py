"""MQTT over TLS (docs/tls.md) against a real Mosquitto with the shipped TLS listener
(config/mosquitto/tls/tls.conf) and a CA issued in the test by config/mosquitto/make-certs.sh.

The alarm path end to end over TLS — ``semon simulate`` → Mosquitto :TLS → collector →
trapped-passenger alarm — and the refusals that keep a terminal's data from the wrong party:
plain TCP on the TLS port, a broker certificate from another CA, a name the certificate does
not carry. Each refusal is a clear error within a bounded wait, never a hang.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from semon.config import Settings
from semon.errors import ConfigError
from semon.ingest.collector import Collector
from semon.mqtt_connect import TlsFiles, make_client, parse_target, probe_tls
from semon.simulators.fleet import build_fleet
from semon.simulators.publisher import StatusPublisher
from semon.store import open_telemetry
from semon.store.db import Database
from semon.store.models import Alarm
from semon.store.registry import import_devices_csv
from tests.helpers import wait_until
from tests.services import Mosquitto, make_pki

REPO = Path(__file__).resolve().parents[2]
SEMON = [sys.executable, "-m", "semon"]


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """CA, server certificate for localhost / 127.0.0.1 and a client certificate."""
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Iterator[Mosquitto]:
    """Mosquitto with its plain test listener and the TLS listener."""
    m = Mosquitto(tmp_path / "mosquitto", tls_dir=pki)
    m.start()
    yield m
    m.stop()


def test_simulator_to_collector_over_tls_raises_the_trapped_alarm(tmp_path: Path, tls_broker: Mosquitto, pki: Path):
    reg = tmp_path / "registry.csv"
    build_fleet(2, 0, 3).write_registry_csv(reg)
    s = Settings(
        mqtt_url=tls_broker.tls_url, mqtt_ca_file=pki / "ca.crt", mqtt_cert_file=pki / "client.crt",
        mqtt_key_file=pki / "client.key", db_url=f"sqlite:///{tmp_path}/semon.db",
        telemetry_sqlite_path=tmp_path / "telemetry.db", data_dir=tmp_path / "data", mqtt_client_id="tls-collector",
    )  # fmt: skip
    assert s.mqtt_target().tls is not None
    db = Database(s.db_url)
    import_devices_csv(db, reg)
    col = Collector(s, db, open_telemetry(s))
    col.start()
    try:
        assert col.connected.wait(15), "collector not connected over TLS"
        env = {**os.environ, "SEMON_MQTT_URL": "embedded", "SEMON_DB_URL": s.db_url}
        sim = subprocess.run(
            [*SEMON, "simulate", "--elevators", "2", "--vessels", "0", "--seed", "3", "--rate", "20",
             "--speed", "4", "--duration", "8", "--device-time", "--fault", "trapped:E000001@2s+60s",
             "--mqtt-url", tls_broker.tls_url, "--mqtt-ca-file", str(pki / "ca.crt")],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert sim.returncode == 0, sim.stderr
        assert "all acknowledged: True" in sim.stderr + sim.stdout

        def trapped() -> list[Alarm]:
            with db.session() as sess:
                return list(sess.scalars(select(Alarm).where(Alarm.type == "trapped_passenger")))

        wait_until(lambda: bool(trapped()), 30, "the trapped-passenger alarm, over TLS")
        assert [a.device_id for a in trapped()] == ["E000001"]
    finally:
        col.stop()
        db.dispose()
    assert b"on port %d" % tls_broker.tls_port in (tls_broker.dir / "mosquitto.log").read_bytes()


def _connect_packet() -> bytes:
    """A minimal MQTT 3.1.1 CONNECT (client id "plain")."""
    body = b"\x00\x04MQTT\x04\x02\x00\x1e" + b"\x00\x05plain"
    return bytes([0x10, len(body)]) + body


def test_plain_tcp_to_the_tls_port_is_refused(tls_broker: Mosquitto):
    assert tls_broker.tls_port is not None
    with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=10) as s:
        s.sendall(_connect_packet())
        try:
            answer = s.recv(64)  # the broker closes: no CONNACK (0x20) to a plain client
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x20"), answer
    # And the plain listener beside it still answers the very same packet with a CONNACK.
    with socket.create_connection(("127.0.0.1", tls_broker.port), timeout=10) as s:
        s.sendall(_connect_packet())
        assert s.recv(4) == b"\x20\x02\x00\x00"


def test_a_broker_certificate_from_another_ca_is_refused_with_a_clear_error(tmp_path: Path, tls_broker: Mosquitto):
    other = make_pki(tmp_path / "other-pki")
    target = parse_target(tls_broker.tls_url, TlsFiles(other / "ca.crt"))
    # The simulator's publisher: a ConnectionError naming the verification failure, at once.
    pub = StatusPublisher(target.host, target.port, "wrong-ca", tls=target.tls)
    with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        pub.connect(timeout_s=10)
    # The collector's start-up probe: a configuration error naming the CA setting.
    with pytest.raises(ConfigError, match="SEMON_MQTT_CA_FILE") as e:
        probe_tls(target, timeout_s=10)
    assert "certificate" in str(e.value)
    # The same through `semon collect`: one line, exit 2.
    env = {**os.environ, "SEMON_MQTT_URL": tls_broker.tls_url, "SEMON_MQTT_CA_FILE": str(other / "ca.crt"),
           "SEMON_DB_URL": f"sqlite:///{tmp_path}/c.db", "SEMON_DATA_DIR": str(tmp_path / "d"),
           "SEMON_LOG_LEVEL": "INFO"}  # fmt: skip
    for command in (["collect"], ["simulate", "--duration", "1"]):
        r = subprocess.run([*SEMON, *command], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "SEMON_MQTT_CA_FILE" in r.stderr and "does not accept" in r.stderr, r.stderr


def test_the_server_name_is_checked(tmp_path: Path):
    # A certificate from the trusted CA, but for another name: refused all the same.
    pki = make_pki(tmp_path / "pki", "broker.example")
    m = Mosquitto(tmp_path / "mosquitto", tls_dir=pki)
    m.start()
    try:
        target = parse_target(m.tls_url, TlsFiles(pki / "ca.crt"))  # dials localhost
        with pytest.raises(ConfigError, match="SEMON_MQTT_CA_FILE") as e:
            probe_tls(target, timeout_s=10)
        assert "mismatch" in str(e.value).lower() and "SAN" in str(e.value)
        with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            StatusPublisher(target.host, target.port, "wrong-name", tls=target.tls).connect(timeout_s=10)
    finally:
        m.stop()
    ctx = target.tls.context()  # type: ignore[union-attr]
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED


def test_paho_client_built_by_the_factory_round_trips_over_tls(tls_broker: Mosquitto, pki: Path):
    target = parse_target(tls_broker.tls_url, TlsFiles(pki / "ca.crt", pki / "client.crt", pki / "client.key"))
    c = make_client(target, "factory-check")
    got: list[bytes] = []
    c.on_connect = lambda cl, *_: cl.subscribe("tls/check", 1)
    c.on_subscribe = lambda cl, *_: cl.publish("tls/check", b"ok", qos=1)
    c.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    c.connect(target.host, target.port, keepalive=10)
    c.loop_start()
    try:
        wait_until(lambda: got == [b"ok"], 15, "own message back over TLS")
    finally:
        c.disconnect()
        c.loop_stop()


@pytest.mark.parametrize(
    ("url", "files", "setting"),
    [
        ("mqtts://localhost:8883", TlsFiles(Path("/nonexistent/ca.crt")), "SEMON_MQTT_CA_FILE"),
        ("mqtts://localhost:8883", TlsFiles(None, None, Path("/nonexistent/k.pem")), "SEMON_MQTT_KEY_FILE"),
        ("mqtt://localhost:1883", TlsFiles(REPO / "pyproject.toml"), "SEMON_MQTT_URL"),  # TLS file on a plain URL
        ("ws://localhost", None, "SEMON_MQTT_URL"),
        ("mqtts://:8883", None, "SEMON_MQTT_URL"),
    ],
)
def test_unusable_broker_settings_name_the_setting(url: str, files: TlsFiles | None, setting: str):
    with pytest.raises(ConfigError) as e:
        parse_target(url, files)
    assert e.value.setting == setting


def test_a_file_that_is_no_certificate_is_refused(tmp_path: Path):
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="SEMON_MQTT_CA_FILE: cannot load CA"):
        parse_target("mqtts://localhost", TlsFiles(bad))
    assert parse_target("mqtts://broker.example").port == 8883  # system CAs, default TLS port
