"""Generated Mosquitto credentials and ACLs hold on a real Mosquitto."""

from __future__ import annotations

import csv
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from semon.mqtt_auth import accounts, acl_text, hash_password, write_auth
from tests.services import Mosquitto


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
