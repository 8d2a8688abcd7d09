"""The systems under test: semon's collectors, and the Node-RED flows of the peer baseline.

Each system starts fresh for a case (its own MQTT client ids, so no session carries a backlog
from one case into the next), can be stopped, killed (SIGKILL) and restarted on the same
persistent session, and forgets its sessions at the end of a case.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fleetbench.services import Influx, Mosquitto, Postgres, Proc, free_port
from semon.simulators.loadgen import LoadFleet
from semon.simulators.rawpub import RawPublisher
from semon.store.telemetry import STATUS_MEASUREMENT

STATUS_MEASUREMENTS = tuple(STATUS_MEASUREMENT.values())


def forget_session(port: int, client_id: str) -> None:
    """Connect once with a clean session: the broker drops that client's session and queue."""
    p = RawPublisher("127.0.0.1", port, client_id, clean_session=True)
    try:
        p.connect(5)
    finally:
        p.close()


@dataclass
class Context:
    """Everything a case needs: services, the fleet, where to put files."""

    mq: Mosquitto
    influx: Influx
    pg: Postgres
    workdir: Path
    fleet: LoadFleet
    devices: int
    vessel_share: float
    seed: int
    cache_dir: Path
    templates: int = 500
    trace_s: float = 300.0
    python: str = sys.executable
    loadgen_procs: int = 1


class System:
    """A pipeline under test."""

    name = "system"
    db = "semon"
    alarm_prefix = "semon/v1/alarms/"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.procs: list[Proc] = []
        self.case = ""
        self.generation = 0

    def start(self, case: str, persistent: bool = False) -> list[Proc]:  # pragma: no cover - interface
        """Start fresh for ``case`` and wait until it takes messages; returns its processes."""
        raise NotImplementedError

    def restart(self) -> list[Proc]:  # pragma: no cover - interface
        """Start again on the same (persistent) sessions after :meth:`kill`."""
        raise NotImplementedError

    def client_ids(self) -> list[str]:  # pragma: no cover - interface
        """MQTT client ids of the current case."""
        raise NotImplementedError

    def stop(self) -> None:
        """SIGTERM: a clean stop (semon flushes and acknowledges what it took)."""
        for p in self.procs:
            p.stop(timeout=60)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or acknowledge."""
        for p in self.procs:
            p.kill()

    def forget_sessions(self) -> None:
        """Drop the case's broker sessions, so nothing queues for them any more."""
        for cid in self.client_ids():
            try:
                forget_session(self.ctx.mq.port, cid)
            except OSError:
                pass


# ----------------------------------------------------------------------------------- semon
class Semon(System):
    """``semon collect`` processes (``collectors`` of them; partitioned by device when > 1)."""

    name = "semon"
    db = "semon"

    def __init__(self, ctx: Context, collectors: int = 1, label: str | None = None, db: str = "semon") -> None:
        super().__init__(ctx)
        self.db = db
        self.collectors = collectors
        if label:
            self.name = label
        self.health_ports: list[int] = []

    def client_ids(self) -> list[str]:
        base = [f"bench-{self.case}-c{i}" for i in range(self.collectors)]
        if self.collectors == 1:
            return base
        # A partitioned collector appends its partition to the configured id (ingest/collector.py).
        return [f"{b}-p{i}of{self.collectors}" for i, b in enumerate(base)]

    def _env(self, i: int) -> dict[str, str]:
        ctx = self.ctx
        env = {
            **os.environ,
            "SEMON_MQTT_URL": ctx.mq.url,
            "SEMON_MQTT_CLIENT_ID": f"bench-{self.case}-c{i}",
            "SEMON_INFLUX_URL": ctx.influx.url,
            "SEMON_INFLUX_DB": self.db,
            "SEMON_DB_URL": ctx.pg.url,
            "SEMON_DATA_DIR": str(ctx.workdir / self.case / f"c{i}"),
            "SEMON_HEALTH_PORT": str(self.health_ports[i]),
            "SEMON_LOG_LEVEL": "WARNING",
        }
        if self.collectors > 1:
            env["SEMON_COLLECTOR_PARTITION"] = f"{i}/{self.collectors}"
        else:
            env.pop("SEMON_COLLECTOR_PARTITION", None)
        return env

    def _launch(self, suffix: str) -> list[Proc]:
        self.health_ports = [free_port() for _ in range(self.collectors)]
        self.procs = [
            Proc.start(
                f"collector{i}{suffix}",
                [self.ctx.python, "-m", "semon", "collect"],
                self.ctx.workdir / self.case / f"collector{i}.log",
                env=self._env(i),
            )
            for i in range(self.collectors)
        ]
        self.wait_ready()
        return self.procs

    def start(self, case: str, persistent: bool = False) -> list[Proc]:
        self.case = case
        self.generation = 0
        return self._launch("")

    def restart(self) -> list[Proc]:
        self.generation += 1
        return self._launch(f"-r{self.generation}")

    def health(self) -> list[dict[str, Any]]:
        """``/health`` of every collector (empty dict when it does not answer)."""
        out = []
        for port in self.health_ports:
            try:
                out.append(httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json())
            except (httpx.HTTPError, ValueError):
                out.append({})
        return out

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Until every collector is connected and its pipeline runs (100 k devices take a while)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hs = self.health()
            # "ready" (pipeline running) where the collector reports it; connected is the minimum.
            if all(h.get("mqtt_connected") and h.get("ready", True) for h in hs):
                return
            dead = [p for p in self.procs if not p.alive()]
            if dead:
                log = dead[0].log.read_text()[-3000:] if dead[0].log else ""
                raise RuntimeError(f"{dead[0].name} exited during start-up:\n{log}")
            time.sleep(0.5)
        raise TimeoutError(f"collectors not ready after {timeout}s")


# ----------------------------------------------------------------------------------- Node-RED
NODE_RED_PACKAGES = ("node-red@4", "node-red-contrib-influxdb@0.7")

# Function node: one point per message (contract v1 fields of both kinds) and the peers' rule,
# reduced to its instantaneous checks against the registry's ratings (see flow_nodes).
FUNC = r"""
const p = msg.payload;
const parts = msg.topic.split('/');            // semon/v1/{kind}/{device}/status
const kind = parts[2], device = parts[3];
let fields, alarm = null;
if (kind === 'elevator') {
    fields = { seq: p.seq, mode: p.mode, running: p.running, dir: p.dir, floor: p.floor,
               door_zone: p.door_zone, door: p.door, occupied: p.occupied, speed: p.speed,
               load: p.load, run_count: p.run_count, run_hours: p.run_hours,
               alarm_button: p.alarm_button, faults: (p.faults || []).join(',') };
    const rated = context.get('rated')(device);
    const overspeed = p.speed > 1.2 * rated;
    if (overspeed || p.alarm_button) alarm = overspeed ? 'overspeed' : 'alarm_button';
} else {
    fields = { seq: p.seq, pressure: p.pressure, temperature: p.temperature,
               valve_discharge: p.valve_discharge };
    if (p.level !== null && p.level !== undefined) fields.level = p.level;
    if (p.gas_lel !== null && p.gas_lel !== undefined) fields.gas_lel = p.gas_lel;
    if (p.pressure >= context.get('setp')(device) || p.valve_discharge) alarm = 'overpressure';
}
const point = { measurement: kind + '_status', tags: { device_id: device, kind: kind }, fields: fields,
                timestamp: p.ts };
let out = null;
if (alarm) out = { topic: 'semon/v1/alarms/nodered/' + device,
                   payload: JSON.stringify({ device_id: device, type: alarm, ts: p.ts, seq: p.seq }) };
return [ { payload: %s }, out ];
"""

# Ratings by device number: the bench fleet gives device n the ratings of template n mod T.
INIT = r"""
const RATED = %s, SETP = %s;
context.set('rated', d => RATED[(parseInt(d.slice(1), 10) - 1) %% RATED.length] || 1.75);
context.set('setp', d => SETP[(parseInt(d.slice(1), 10) - 1) %% SETP.length] || 1e9);
"""


def flow_nodes(
    fleet: LoadFleet, mq_port: int, influx_port: int, db: str, client_id: str, batch: int, persistent: bool
) -> list[dict[str, Any]]:
    """The peers' flow (``make_flows.py``): mqtt in → json → function → [join] → influxdb batch, + mqtt out.

    Differences, all to keep the comparison fair on semon's stream: both equipment kinds
    (topic ``semon/v1/+/+/status``), every contract field stored (semon stores them too),
    ``device_id``/``kind`` tags, and of the peers' threshold rule only the instantaneous checks
    — overspeed against each device's rated speed, the alarm button, vessel overpressure — since
    its stateless "trapped" check fires on every car that closes its doors on a passenger
    (a normal state many times a minute on a realistic stream).
    """
    # Device E<n> has the ratings of elevator template (n-1) mod T_e, V<n> of vessel template (n-1) mod T_v.
    rated = [s.elevator.rated_speed for s in fleet.template_specs if s.elevator]
    setp = [s.vessel.set_pressure for s in fleet.template_specs if s.vessel]
    tab = "bench_tab"
    nodes: list[dict[str, Any]] = [{"id": tab, "type": "tab", "label": "semon bench peer", "disabled": False}]
    nodes.append({
        "id": "bench_broker", "type": "mqtt-broker", "name": "bench mosquitto", "broker": "127.0.0.1",
        "port": str(mq_port), "clientid": client_id, "autoConnect": True, "usetls": False, "protocolVersion": "4",
        "keepalive": "60", "cleansession": not persistent, "autoUnsubscribe": not persistent,
        "birthTopic": "", "closeTopic": "", "willTopic": "", "userProps": "", "sessionExpiry": "",
    })  # fmt: skip
    nodes.append({
        "id": "bench_influx", "type": "influxdb", "hostname": "127.0.0.1", "port": str(influx_port),
        "protocol": "http", "database": db, "name": "bench influx", "usetls": False, "tls": "",
        "influxdbVersion": "1.x", "url": f"http://127.0.0.1:{influx_port}", "timeout": "10",
        "rejectUnauthorized": False,
    })  # fmt: skip
    first = "bench_join" if batch else "bench_write"
    nodes += [
        {"id": "bench_in", "type": "mqtt in", "z": tab, "name": "status", "topic": "semon/v1/+/+/status", "qos": "1",
         "datatype": "utf8", "broker": "bench_broker", "nl": False, "rap": True, "rh": 0, "inputs": 0,
         "x": 120, "y": 100, "wires": [["bench_json"]]},
        {"id": "bench_json", "type": "json", "z": tab, "name": "", "property": "payload", "action": "obj",
         "pretty": False, "x": 300, "y": 100, "wires": [["bench_fn"]]},
        {"id": "bench_fn", "type": "function", "z": tab, "name": "point + rule",
         "func": FUNC % ("point" if batch else "[ point ]"), "outputs": 2, "timeout": 0, "noerr": 0,
         "initialize": INIT % (json.dumps(rated), json.dumps(setp)), "finalize": "", "libs": [],
         "x": 480, "y": 100, "wires": [[first], ["bench_alarm"]]},
        {"id": "bench_alarm", "type": "mqtt out", "z": tab, "name": "alarms", "topic": "", "qos": "1",
         "retain": "false", "broker": "bench_broker", "x": 700, "y": 160, "wires": []},
        {"id": "bench_write", "type": "influxdb batch", "z": tab, "influxdb": "bench_influx", "precision": "ms",
         "retentionPolicy": "", "name": "influx write", "database": "database", "precisionV18FluxV20": "ms",
         "retentionPolicyV18Flux": "", "org": "organisation", "bucket": "bucket", "x": 880, "y": 100, "wires": []},
    ]  # fmt: skip
    if batch:
        nodes.append({
            "id": "bench_join", "type": "join", "z": tab, "name": f"batch {batch}", "mode": "custom",
            "build": "array", "property": "payload", "propertyType": "msg", "key": "topic", "joiner": "\\n",
            "joinerType": "str", "useparts": False, "accumulate": False, "timeout": "0.2", "count": str(batch),
            "reduceRight": False, "reduceExp": "", "reduceInit": "", "reduceInitType": "", "reduceFixup": "",
            "x": 700, "y": 100, "wires": [["bench_write"]],
        })  # fmt: skip
    return nodes


SETTINGS_JS = """module.exports = {
    flowFile: 'flows.json', credentialSecret: false, flowFilePretty: true, uiHost: '127.0.0.1',
    diagnostics: { enabled: false, ui: false }, runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    logging: { console: { level: 'warn', metrics: false, audit: false } },
    exportGlobalContextKeys: false, externalModules: {}, functionExternalModules: false,
    functionTimeout: 0, functionGlobalContext: {}, debugMaxLength: 1000,
    editorTheme: { projects: { enabled: false } },
};
"""


@dataclass
class NodeRedInstall:
    """Node-RED installed from npm into ``home`` (not a project dependency)."""

    home: Path
    versions: dict[str, str] = field(default_factory=dict)
    problem: str | None = None

    @property
    def red_js(self) -> Path:
        """The Node-RED entry point."""
        return self.home / "node_modules" / "node-red" / "red.js"

    def ensure(self, log: Path) -> bool:
        """``npm install --prefix home node-red node-red-contrib-influxdb`` unless already there."""
        node, npm = shutil.which("node"), shutil.which("npm")
        if not node or not npm:
            self.problem = "node/npm not found (Node.js 18+ is needed for the Node-RED peer)"
            return False
        if not (self.red_js.exists() and (self.home / "node_modules" / "node-red-contrib-influxdb").exists()):
            self.home.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as fh:
                r = subprocess.run(
                    [npm, "install", "--no-audit", "--no-fund", "--prefix", str(self.home), *NODE_RED_PACKAGES],
                    stdout=fh, stderr=subprocess.STDOUT, timeout=900,
                )  # fmt: skip
            if r.returncode != 0 or not self.red_js.exists():
                self.problem = f"npm install failed (see {log})"
                return False
        for pkg in ("node-red", "node-red-contrib-influxdb"):
            try:
                meta = json.loads((self.home / "node_modules" / pkg / "package.json").read_text())
                self.versions[pkg] = meta.get("version", "?")
            except (OSError, ValueError):
                self.versions[pkg] = "?"
        self.versions["node"] = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        return True


class NodeRed(System):
    """Node-RED running one of the two peer flows: per-message writes (``batch=0``) or a join of 500."""

    db = "nodered"
    alarm_prefix = "semon/v1/alarms/nodered/"

    def __init__(self, ctx: Context, install: NodeRedInstall, batch: int, db: str = "nodered") -> None:
        super().__init__(ctx)
        self.db = db
        self.install = install
        self.batch = batch
        self.name = f"nodered-batch{batch}" if batch else "nodered-permsg"
        self.persistent = False
        self.port = 0

    def client_ids(self) -> list[str]:
        return [f"bench-{self.case}-nr"]

    def _launch(self, suffix: str) -> list[Proc]:
        ctx = self.ctx
        user = ctx.workdir / self.case / "nodered-user"
        user.mkdir(parents=True, exist_ok=True)
        (user / "settings.js").write_text(SETTINGS_JS)
        nodes = flow_nodes(
            ctx.fleet, ctx.mq.port, ctx.influx.http_port, self.db, self.client_ids()[0], self.batch, self.persistent
        )
        (user / "flows.json").write_text(json.dumps(nodes, indent=1))
        self.port = free_port()
        p = Proc.start(
            f"node-red{suffix}",
            ["node", str(self.install.red_js), "-u", str(user), "-p", str(self.port), "flows.json"],
            ctx.workdir / self.case / "nodered.log",
        )
        self.procs = [p]
        self._wait_connected(p)
        return self.procs

    def _wait_connected(self, p: Proc, timeout: float = 60.0) -> None:
        """Until the broker logged our client id connecting (the mqtt in node is subscribed soon after)."""
        cid = self.client_ids()[0]
        log = self.ctx.mq.dir / "mosquitto.log"
        start = log.stat().st_size if log.exists() else 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not p.alive():
                raise RuntimeError(f"Node-RED exited: {(p.log.read_text()[-3000:] if p.log else '')}")
            with log.open("rb") as f:
                f.seek(start)
                if f" as {cid} ".encode() in f.read():
                    time.sleep(1.0)  # SUBSCRIBE follows the CONNECT
                    return
            time.sleep(0.2)
        raise TimeoutError("Node-RED did not connect to the broker")

    def start(self, case: str, persistent: bool = False) -> list[Proc]:
        self.case = case
        self.persistent = persistent
        self.generation = 0
        return self._launch("")

    def restart(self) -> list[Proc]:
        self.generation += 1
        return self._launch(f"-r{self.generation}")
