"""Generated Mosquitto credentials and ACLs hold on a real Mosquitto."""

from __future__ import annotations

import csv
import os
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from semon.mqtt_auth import accounts, acl_text, hash_password, write_auth
from tests.services import REPO, Mosquitto


def _client(port: int, user: str, pw: str, name: str) -> tuple[mqtt.Client, list[mqtt.MQTTMessage], dict]:
    got: list[mqtt.MQTTMessage] = []
    state: dict = {"granted": None, "rc": None}
    ready = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)
    c.username_pw_set(user, pw)
    c.on_message = lambda _c, _u, m: got.append(m)

    def on_connect(_c, _u, _f, rc, _p=None):
        state["rc"] = rc
        ready.set()

    def on_subscribe(_c, _u, _mid, rcs, _p=None):
        state["granted"] = [r.value for r in rcs]
        state["subscribed"].set()

    state["subscribed"] = threading.Event()
    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(10)
    return c, got, state


def test_password_hash_is_mosquitto_compatible(tmp_path: Path):
    # mosquitto_passwd and our hash agree on the format: the broker accepts our file below,
    # and the $7$ layout is iterations, salt, PBKDF2-SHA512 (64 bytes).
    h = hash_password("secret", salt=b"0123456789ab")
    assert h.startswith("$7$101$") and len(h.split("$")) == 5


def test_acl_has_no_pattern_lines_and_one_block_per_account():
    text = acl_text(accounts([("E1", "elevator")], ["F001"]))
    assert "pattern" not in text
    assert "user E1\ntopic write semon/v1/elevator/E1/#" in text
    assert "user firm-F001\ntopic read semon/v1/alarms/F001/#" in text


def test_generated_acl_enforced_by_real_mosquitto(tmp_path: Path):
    out = tmp_path / "auth"
    write_auth(out, [("E1", "elevator"), ("E2", "elevator")], ["F001", "F002"])
    assert (out / "credentials.csv").stat().st_mode & 0o777 == 0o600
    with (out / "credentials.csv").open() as f:
        pw = {r["username"]: r["password"] for r in csv.DictReader(f)}
    # re-running keeps the passwords
    write_auth(out, [("E1", "elevator"), ("E2", "elevator")], ["F001", "F002"])
    with (out / "credentials.csv").open() as f:
        assert {r["username"]: r["password"] for r in csv.DictReader(f)} == pw
    m = Mosquitto(tmp_path / "mq")
    text = m.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
    m.conf.write_text(text + f"\npassword_file {out / 'passwd'}\nacl_file {out / 'acl'}\n")
    m.start()
    try:
        port = m.port
        col, col_got, _ = _client(port, "semon-collector", pw["semon-collector"], "col")
        col.subscribe("semon/v1/elevator/+/+", qos=1)
        e1, _, st = _client(port, "E1", pw["E1"], "dev-e1")
        assert st["rc"] == 0
        bad, _, st_bad = _client(port, "E1", "wrong-password", "dev-bad")
        assert st_bad["rc"] != 0  # refused
        bad.loop_stop()
        f1, f1_got, f1_state = _client(port, "firm-F001", pw["firm-F001"], "firm1")
        f1.subscribe("semon/v1/alarms/F002/#", qos=1)
        # Mosquitto 2.0's acl_file is checked when a message is delivered, not at SUBSCRIBE
        # (the SUBACK grants it): what matters is that nothing of F002's ever arrives — below.
        assert f1_state["subscribed"].wait(5)
        f1_state["subscribed"].clear()
        f1.subscribe("semon/v1/alarms/F001/#", qos=1)
        assert f1_state["subscribed"].wait(5) and f1_state["granted"] == [1]
        time.sleep(0.3)
        e1.publish("semon/v1/elevator/E1/status", b"own", qos=1).wait_for_publish(5)
        e1.publish("semon/v1/elevator/E2/status", b"forged", qos=1).wait_for_publish(5)
        e1.publish("semon/v1/alarms/F001/E1", b"fake alarm", qos=1).wait_for_publish(5)
        col.publish("semon/v1/alarms/F001/E1", b"real alarm", qos=1).wait_for_publish(5)
        col.publish("semon/v1/alarms/F002/E2", b"other firm", qos=1).wait_for_publish(5)
        time.sleep(1.0)
        assert [(x.topic, x.payload) for x in col_got] == [("semon/v1/elevator/E1/status", b"own")]
        assert [(x.topic, x.payload) for x in f1_got] == [("semon/v1/alarms/F001/E1", b"real alarm")]
        for c in (col, e1, f1):
            c.disconnect()
            c.loop_stop()
    finally:
        m.stop()


def test_cli_writes_files_from_the_registry(tmp_path: Path):
    from semon.store.db import Database
    from tests.helpers import small_registry

    url = f"sqlite:///{tmp_path}/r.db"
    small_registry(Database(url), tmp_path / "reg.csv")
    env = {"SEMON_DB_URL": url, "PATH": "/usr/bin:/bin"}
    import os
    import sys

    r = subprocess.run([sys.executable, "-m", "semon", "mqtt-auth", "--out-dir", str(tmp_path / "a")],
                       env={**os.environ, **env}, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    acl = (tmp_path / "a/acl").read_text()
    assert "user V1\ntopic write semon/v1/vessel/V1/#" in acl and "user firm-F001" in acl


def test_one_user_name_for_two_accounts_is_refused():
    # With the user as the session, two holders of one name would take each other's session.
    with pytest.raises(ValueError, match="semon-collector-p0of2"):
        accounts([("semon-collector-p0of2", "elevator")], [], ["semon-collector-p0of2"])
    names = [a.username for a in accounts([("E1", "elevator")], [], ["c-p0of2", "c-p1of2"], services=["semon-api"])]
    assert names == ["c-p0of2", "c-p1of2", "semon-api", "E1"]


def test_credentials_file_gives_each_process_its_password(tmp_path: Path):
    from semon.config import Settings

    write_auth(tmp_path, [("E1", "elevator")], [], collector_user=["semon-collector-p0of2"], services=["semon-api"])
    creds = tmp_path / "credentials.csv"
    with creds.open() as f:
        pw = {r["username"]: r["password"] for r in csv.DictReader(f)}
    # A collector's user defaults to its client id; a service names its user.
    s = Settings(mqtt_credentials_file=creds)
    assert s.mqtt_login("semon-collector-p0of2") == ("semon-collector-p0of2", pw["semon-collector-p0of2"])
    api = Settings(mqtt_credentials_file=creds, mqtt_username="semon-api")
    assert api.mqtt_password == pw["semon-api"]
    assert Settings().mqtt_login("semon-collector") is None  # no file, no user: anonymous
    with pytest.raises(ValueError, match="SEMON_MQTT_CREDENTIALS_FILE: no account 'nobody'"):
        Settings(mqtt_credentials_file=creds, mqtt_username="nobody")
    with pytest.raises(ValueError, match=r"SEMON_MQTT_CREDENTIALS_FILE: .* does not exist"):
        Settings(mqtt_credentials_file=tmp_path / "missing.csv", mqtt_username="semon-api")


def compose_broker(workdir: Path, auth_dir: Path) -> Mosquitto:
    """config/mosquitto/mosquitto.conf as the compose stack runs it, on a free local port, with
    its auth files from ``auth_dir`` (the compose volume) and persistence in ``workdir``."""
    m = Mosquitto(workdir)
    (workdir / "conf.d").mkdir(parents=True, exist_ok=True)
    text = (REPO / "config/mosquitto/mosquitto.conf").read_text()
    for old, new in (
        ("listener 1883 0.0.0.0", f"listener {m.port} 127.0.0.1"),
        ("/mosquitto/auth/", f"{auth_dir}/"),
        ("/mosquitto/data/", f"{workdir / 'persist'}/"),
        ("/mosquitto/config/conf.d", f"{workdir / 'conf.d'}"),  # compose mounts an empty one
    ):
        assert old in text, old
        text = text.replace(old, new)
    if os.geteuid() == 0:
        text += "\nuser root\n"  # else Mosquitto drops to `mosquitto` and cannot read tmp_path
    m.conf.write_text(text)
    return m


def _connect(
    port: int, client_id: str, login: tuple[str, str] | None, *, clean: bool = True
) -> tuple[mqtt.Client, dict]:
    """A client that records its CONNACK codes, disconnects and messages; connected or refused."""
    st: dict = {"rc": [], "disconnects": 0, "got": [], "ready": threading.Event(), "subscribed": threading.Event()}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean, protocol=mqtt.MQTTv311)
    if login:
        c.username_pw_set(*login)

    def on_connect(_c, _u, _f, rc, _p=None):
        st["rc"].append(rc.value)
        st["ready"].set()

    def on_disconnect(_c, _u, _f, rc, _p=None):
        st["disconnects"] += 1
        st["ready"].set()

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    c.on_message = lambda _c, _u, msg: st["got"].append(msg.payload)
    c.on_subscribe = lambda *_a: st["subscribed"].set()
    c.reconnect_delay_set(0.1, 0.5)
    c.connect_async("127.0.0.1", port)
    c.loop_start()
    assert st["ready"].wait(10)
    return c, st


def test_compose_broker_refuses_anonymous_and_binds_the_session_to_the_user(tmp_path: Path):
    auth = tmp_path / "auth"
    write_auth(auth, [("E1", "elevator"), ("E2", "elevator")], [], collector_user=["semon-collector-1"],
               services=["semon-api"])  # fmt: skip
    with (auth / "credentials.csv").open() as f:
        pw = {r["username"]: r["password"] for r in csv.DictReader(f)}
    m = compose_broker(tmp_path / "mq", auth)
    m.start()
    try:
        # The compose health check (it logs in as the API's service account) sees the broker up.
        import yaml

        check = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["mosquitto"]["healthcheck"]
        assert check["test"][0] == "CMD-SHELL"
        cmd = check["test"][1].replace("$$", "$").replace("/mosquitto/auth/", f"{auth}/")
        r = subprocess.run(cmd.replace("-h localhost", f"-h 127.0.0.1 -p {m.port}"), shell=True, capture_output=True)
        assert r.returncode == 0 and r.stdout.strip(), r.stderr
        # Anonymous: refused at CONNECT (5 = not authorised), so nothing it publishes lands.
        anon, anon_st = _connect(m.port, "anon", None)
        anon.loop_stop()
        assert anon_st["rc"] and anon_st["rc"][0] != 0
        col, col_st = _connect(m.port, "semon-collector-1", ("semon-collector-1", pw["semon-collector-1"]), clean=False)
        assert col_st["rc"] == [0]
        col.subscribe("semon/v1/elevator/+/status", qos=1)
        assert col_st["subscribed"].wait(5)
        e2, e2_st = _connect(m.port, "E2", ("E2", pw["E2"]))
        assert e2_st["rc"] == [0]
        # E1 logs in with its own valid password but the collector's client id, again and again,
        # while E2 publishes: the broker gives E1 its own session (the user name), so the
        # collector is never knocked off and receives every one of E2's messages.
        thieves = []
        for i in range(20):
            if i % 3 == 0:
                t, t_st = _connect(m.port, "semon-collector-1", ("E1", pw["E1"]), clean=False)
                assert t_st["rc"] == [0]
                thieves.append(t)
            e2.publish("semon/v1/elevator/E2/status", str(i).encode(), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while len(col_st["got"]) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert col_st["got"] == [str(i).encode() for i in range(20)]
        assert col_st["disconnects"] == 0 and col_st["rc"] == [0]
        for c in (col, e2, *thieves):
            c.disconnect()
            c.loop_stop()
    finally:
        m.stop()


def test_compose_broker_has_auth_on_and_no_anonymous_access():
    import shutil

    import yaml

    from tests.services import unavailable

    exe = shutil.which("docker-compose")
    if exe is None:
        unavailable("docker-compose not installed (apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMON_MQTT_")}
    r = subprocess.run([exe, "config"], cwd=REPO, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    svc = yaml.safe_load(r.stdout)["services"]
    broker = svc["mosquitto"]
    # Published on loopback only by default; the credentials exist before the broker starts.
    assert broker["ports"] == ["127.0.0.1:1883:1883/tcp"]
    assert broker["depends_on"]["mqtt-auth"]["condition"] == "service_completed_successfully"
    assert "mqtt-auth:/mosquitto/auth:ro" in broker["volumes"]
    assert "semon mqtt-auth --out-dir /auth" in " ".join(svc["mqtt-auth"]["command"])
    for name in ("collector", "api", "simulator"):
        assert svc[name]["environment"]["SEMON_MQTT_CREDENTIALS_FILE"] == "/auth/credentials.csv", name
        assert "mqtt-auth:/auth:ro" in svc[name]["volumes"], name
    conf = [ln.strip() for ln in (REPO / "config/mosquitto/mosquitto.conf").read_text().splitlines()]
    assert "allow_anonymous false" in conf and "allow_anonymous true" not in conf
    auth = {"password_file /mosquitto/auth/passwd", "acl_file /mosquitto/auth/acl", "use_username_as_clientid true"}
    assert auth <= set(conf)


def test_real_collector_keeps_its_session_while_a_device_uses_its_client_id(tmp_path: Path):
    """The issue's session theft, against the real collector on the compose broker config: it logs
    in with its generated credential (user = its client id), a device with its own valid password
    connects again and again with the collector's client id, another device publishes meanwhile:
    the collector is never knocked off and stores every one of those messages."""
    from semon.config import Settings
    from semon.ingest.collector import Collector
    from semon.store.db import Database
    from tests.conftest import Stack
    from tests.helpers import elevator_payload, now_ms, small_registry, wait_until

    auth = tmp_path / "auth"
    write_auth(auth, [("E1", "elevator"), ("E2", "elevator"), ("V1", "vessel")], ["F001"],
               collector_user=["semon-collector-1"])  # fmt: skip
    with (auth / "credentials.csv").open() as f:
        pw = {r["username"]: r["password"] for r in csv.DictReader(f)}
    m = compose_broker(tmp_path / "mq", auth)
    m.start()
    s = Settings(
        mqtt_url=m.url, influx_url=None, db_url=f"sqlite:///{tmp_path}/semon.db",
        telemetry_sqlite_path=tmp_path / "t.db", data_dir=tmp_path / "data", mqtt_client_id="semon-collector-1",
        mqtt_credentials_file=auth / "credentials.csv",
    )  # fmt: skip
    stack = Stack("compose-broker", s, Database(s.db_url))
    small_registry(stack.db, tmp_path / "reg.csv")
    col = Collector(s, stack.db, stack.telemetry())
    col.start()
    clients: list[mqtt.Client] = []
    try:
        wait_until(col.connected.is_set, 20, "collector subscribed with its generated credential")
        e2, _ = _connect(m.port, "E2", ("E2", pw["E2"]))
        clients.append(e2)
        t0 = now_ms() - 60_000
        for i in range(20):
            if i % 3 == 0:
                thief, st = _connect(m.port, "semon-collector-1", ("E1", pw["E1"]), clean=False)
                assert st["rc"] == [0]  # logged in — as E1's own session
                clients.append(thief)
            e2.publish("semon/v1/elevator/E2/status", elevator_payload(t0 + i * 1000, i + 1), qos=1).wait_for_publish(5)
        wait_until(lambda: len(stack.seqs("elevator_status").get("E2", [])) >= 20, 20, "E2's 20 statuses stored")
        assert sorted(stack.seqs("elevator_status")["E2"]) == list(range(1, 21))  # 0 lost
        assert col.connected.is_set() and col.source.gen == 1  # never reconnected: one session throughout
        assert col.sup.outage("broker") is None
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
        col.stop(10)
        stack.db.dispose()
        m.stop()
