"""A 3-node NATS cluster on loopback ports, JetStream and MQTT on every node, with semon's
subject mapping (``config/nats/mappings.conf``, included as compose's nodes include it)."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

from semon.ports import free_port, wait_port
from tests.services import REPO, unavailable

MAPPINGS = REPO / "config/nats/mappings.conf"


class NatsNode:
    """One ``nats-server`` of the cluster."""

    def __init__(self, binary: str, workdir: Path, name: str) -> None:
        self.binary, self.dir, self.name = binary, workdir, name
        self.port, self.cluster_port, self.mqtt_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, routes: list[int]) -> None:
        """The node's configuration, routes to every node of the cluster."""
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(MAPPINGS, self.dir / "mappings.conf")
        route_list = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
        (self.dir / "nats.conf").write_text(f"""
server_name: {self.name}
listen: 127.0.0.1:{self.port}
jetstream {{ store_dir: "{self.dir / 'js'}", max_mem: 64MB, max_file: 2GB }}
cluster {{ name: semon-test, listen: 127.0.0.1:{self.cluster_port}, routes: [{route_list}] }}
mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}
include ./mappings.conf
""")

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def mqtt_url(self) -> str:
        """The node's MQTT listener."""
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def start(self) -> None:
        """Start and wait for the client and MQTT listeners."""
        log = open(self.dir / "nats.log", "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.dir / "nats.conf")], stdout=log, stderr=log)
        wait_port(self.port)
        wait_port(self.mqtt_port)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Terminate."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


class NatsCluster:
    """Three nodes, all routed to each other."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        binary = shutil.which("nats-server") or next(
            (p for p in ("/usr/sbin/nats-server",) if Path(p).exists()), None
        )
        if binary is None:
            unavailable("nats-server binary not found (apt-get install nats-server)")
        self.nodes = [NatsNode(str(binary), workdir / f"n{i + 1}", f"n{i + 1}") for i in range(size)]
        routes = [n.cluster_port for n in self.nodes]
        for n in self.nodes:
            n.write_config(routes)

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (``SEMON_NATS_URLS``)."""
        return ",".join(n.url for n in self.nodes)

    def start(self) -> None:
        """Start every node."""
        for n in self.nodes:
            n.start()

    def stop(self) -> None:
        """Stop every node."""
        for n in self.nodes:
            n.stop()
