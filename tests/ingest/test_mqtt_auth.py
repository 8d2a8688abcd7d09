"""Generated Mosquitto credentials and ACLs hold on a real Mosquitto."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from semon.mqtt_auth import DYNSEC_FILE, accounts, acl_text, dynsec_config, hash_password, write_auth
from semon.simulators.rawpub import connect_packet
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


def test_dynsec_binds_outside_accounts_and_collectors_to_their_client_id():
    accts = accounts([("E1", "elevator")], ["F001"], ["semon-collector-p0of2"], services=["semon-api"],
                     gateways=["semon-simulator"])  # fmt: skip
    conf = dynsec_config([(a, "pw") for a in accts])
    bound = {c["username"]: c.get("clientid") for c in conf["clients"]}
    # Devices, firms and collectors: this client id only; services and gateways pick theirs per process.
    assert bound == {"semon-collector-p0of2": "semon-collector-p0of2", "semon-api": None, "semon-simulator": None,
                     "E1": "E1", "firm-F001": "firm-F001"}  # fmt: skip
    roles = {r["rolename"]: r["acls"] for r in conf["roles"]}
    assert roles["E1"] == [{"acltype": "publishClientSend", "topic": "semon/v1/elevator/E1/#", "allow": True}]
    assert {(a["acltype"], a["topic"]) for a in roles["firm-F001"]} == {
        ("subscribePattern", "semon/v1/alarms/F001/#"), ("publishClientReceive", "semon/v1/alarms/F001/#")}  # fmt: skip
    assert not any(conf["defaultACLAccess"][k] for k in ("publishClientSend", "publishClientReceive", "subscribe"))


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
    import json

    clients = {c["username"]: c for c in json.loads((tmp_path / "a" / DYNSEC_FILE).read_text())["clients"]}
    assert clients["V1"]["clientid"] == "V1" and clients["semon-collector"]["clientid"] == "semon-collector"


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


def _dynsec_plugin() -> str:
    """Where this machine's Mosquitto keeps its dynamic-security plugin."""
    from tests.services import unavailable

    for base in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"):
        if Path(base, "mosquitto_dynamic_security.so").is_file():
            return f"{base}/mosquitto_dynamic_security.so"
    unavailable("mosquitto_dynamic_security.so not found (apt-get install mosquitto)")
    raise AssertionError("unreachable")


def _connack(port: int, client_id: str, login: tuple[str, str] | None, *, clean: bool = False) -> int:
    """The CONNACK return code the broker answers an MQTT 3.1.1 CONNECT with, as on the wire
    (0 accepted, 5 not authorised); the connection is then closed."""
    user, pw = login or (None, None)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(connect_packet(client_id, clean_session=clean, username=user, password=pw))
        data = b""
        while len(data) < 4:
            chunk = s.recv(4 - len(data))
            assert chunk, "connection closed before CONNACK"
            data += chunk
    assert data[:2] == b"\x20\x02", data.hex()
    return data[3]


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
        ("/usr/lib/mosquitto_dynamic_security.so", _dynsec_plugin()),  # the image's path, not Debian's
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


def test_compose_broker_refuses_anonymous_and_any_client_id_not_the_accounts_own(tmp_path: Path):
    auth = tmp_path / "auth"
    write_auth(auth, [("E1", "elevator"), ("E2", "elevator")], ["F001"], collector_user=["semon-collector-1"],
               services=["semon-api"])  # fmt: skip
    assert (auth / DYNSEC_FILE).stat().st_mode & 0o777 == 0o600
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
        # MQTT 3.1.1 return codes on the wire: 5 = not authorised.
        assert _connack(m.port, "anon", None) == 5
        assert _connack(m.port, "E1", ("E1", "wrong-password")) == 5
        assert _connack(m.port, "E1", ("E1", pw["E1"])) == 0  # its own id
        for other in ("semon-collector-1", "E2", "firm-F001", "E1-2", ""):
            assert _connack(m.port, other, ("E1", pw["E1"]), clean=True) == 5, other
        assert _connack(m.port, "firm-F001", ("firm-F001", pw["firm-F001"])) == 0
        assert _connack(m.port, "semon-collector-1", ("firm-F001", pw["firm-F001"])) == 5
        assert _connack(m.port, "semon-collector-1", ("semon-collector-1", pw["semon-collector-1"])) == 0
        # MQTT 5 says the same with its reason code 135 (not authorised).
        v5 = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="semon-collector-1", protocol=mqtt.MQTTv5)
        v5.username_pw_set("E1", pw["E1"])
        codes: list[int] = []
        v5.on_connect = lambda _c, _u, _f, rc, _p=None: codes.append(rc.value)
        v5.connect("127.0.0.1", m.port, clean_start=False)
        deadline = time.monotonic() + 10
        while not codes and time.monotonic() < deadline:
            v5.loop(0.1)
        assert codes == [135]
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
    auth = {"plugin /usr/lib/mosquitto_dynamic_security.so",
            "plugin_opt_config_file /mosquitto/auth/dynamic-security.json"}  # fmt: skip
    assert auth <= set(conf)
    # Renaming an intruder (use_username_as_clientid) would accept it instead of refusing it, and the
    # client-id binding is global: no listener may have settings of its own.
    tls = (REPO / "config/mosquitto/tls/tls.conf").read_text()
    assert not any(o in text for text in ("\n".join(conf), tls) for o in ("use_username_as_clientid true",
                                                                           "per_listener_settings true"))  # fmt: skip


def test_real_collector_keeps_its_session_while_a_device_asks_for_its_client_id(tmp_path: Path):
    """The issue's session theft, against the real collector on the compose broker config: it logs
    in with its generated credential (user = its client id, persistent session), a device with
    its own valid password asks for the collector's client id again and again while two devices
    publish on their own ids: each attempt is refused at CONNACK, the collector is never knocked
    off, and every (device, seq) published is stored exactly once."""
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
        # Anonymous: refused at CONNECT, so nothing it could publish lands.
        assert _connack(m.port, "semon-collector-1", None) == 5
        devices = {d: _connect(m.port, d, (d, pw[d])) for d in ("E1", "E2")}  # each on its own id: accepted
        assert all(st["rc"] == [0] for _, st in devices.values())
        clients += [c for c, _ in devices.values()]
        t0 = now_ms() - 60_000
        refused = []
        for i in range(30):
            if i % 3 == 0:  # E1's credential, the collector's client id, persistent session asked for
                refused.append(_connack(m.port, "semon-collector-1", ("E1", pw["E1"])))
            dev = ("E1", "E2")[i % 2]
            devices[dev][0].publish(f"semon/v1/elevator/{dev}/status", elevator_payload(t0 + i * 1000, i // 2 + 1),
                                    qos=1).wait_for_publish(5)  # fmt: skip
        assert refused == [5] * 10
        wait_until(lambda: all(len(stack.seqs("elevator_status").get(d, [])) >= 15 for d in devices), 20,
                   "E1's and E2's 15 statuses each stored")  # fmt: skip
        stored = stack.seqs("elevator_status")
        assert {d: sorted(stored[d]) for d in devices} == {d: list(range(1, 16)) for d in devices}  # 0 lost, 0 twice
        assert col.connected.is_set() and col.source.gen == 1  # never reconnected: one session throughout
        assert col.sup.outage("broker") is None
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
        col.stop(10)
        stack.db.dispose()
        m.stop()
