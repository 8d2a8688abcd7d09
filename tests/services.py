"""Real services for tests: Mosquitto and InfluxDB started on free ports with the repo's configs,
PostgreSQL from ``SEMON_TEST_PG_URL``. Missing binaries skip — or fail when
``SEMON_REQUIRE_SERVICES=1`` (CI), so a green CI always means the services were exercised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from semon.ports import free_port, wait_port

REPO = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("SEMON_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    """Skip (locally) or fail (when services are required) with the reason."""
    if REQUIRE:
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)




def make_pki(out: Path, *names: str) -> Path:
    """A CA, a server certificate for ``names`` (default localhost, 127.0.0.1) and a client
    certificate, issued by the shipped ``config/mosquitto/make-certs.sh`` (docs/tls.md)."""
    if shutil.which("openssl") is None:
        unavailable("openssl not found (apt-get install openssl)")
    subprocess.run([str(REPO / "config/mosquitto/make-certs.sh"), str(out), *(names or ("localhost", "127.0.0.1"))],
                   check=True, capture_output=True)  # fmt: skip
    return out


class Mosquitto:
    """A Mosquitto process with ``config/mosquitto/mosquitto-test.conf.template``; with
    ``tls_dir`` (a :func:`make_pki` directory) also the shipped TLS listener
    (``config/mosquitto/tls/tls.conf``) on ``tls_port``."""

    def __init__(self, workdir: Path, tls_dir: Path | None = None) -> None:
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if binary is None:
            unavailable("mosquitto binary not found (apt-get install mosquitto)")
        self.binary = str(binary)
        self.port = free_port()
        self.dir = workdir
        (workdir / "persist").mkdir(parents=True, exist_ok=True)
        template = (REPO / "config/mosquitto/mosquitto-test.conf.template").read_text()
        self.conf = workdir / "mosquitto.conf"
        conf = template.format(port=self.port, persistence_dir=workdir / "persist")
        self.tls_port: int | None = None
        if tls_dir is not None:
            self.tls_port = free_port()
            tls = (REPO / "config/mosquitto/tls/tls.conf").read_text()
            listener = "listener 8883 0.0.0.0"
            assert listener in tls and "/mosquitto/certs/" in tls, "tls.conf changed: update this helper"
            tls = tls.replace(listener, f"listener {self.tls_port} 127.0.0.1")
            conf += "\n" + tls.replace("/mosquitto/certs/", f"{tls_dir}/")
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(conf)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """``mqtts://localhost:TLS_PORT`` (the name the test certificate carries)."""
        assert self.tls_port is not None, "started without tls_dir"
        return f"mqtts://localhost:{self.tls_port}"

    def start(self) -> None:
        """Start and wait for the listener."""
        log = open(self.dir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port)
        if self.tls_port is not None:
            wait_port(self.tls_port)

    def stop(self) -> None:
        """Terminate (Mosquitto saves its persistence file on SIGTERM)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Influx:
    """An ``influxd`` (1.x) with ``config/influxdb/influxdb-test.conf.template``."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("influxd")
        if binary is None:
            unavailable("influxd binary not found (apt-get install influxdb)")
        self.binary = str(binary)
        self.http_port = free_port()
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        template = (REPO / "config/influxdb/influxdb-test.conf.template").read_text()
        self.conf = workdir / "influxdb.conf"
        self.conf.write_text(template.format(bind_port=free_port(), http_port=self.http_port, dir=workdir))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        """Start and wait until ``/ping`` answers."""
        log = open(self.dir / "influxd.log", "ab")
        self.proc = subprocess.Popen([self.binary, "run", "-config", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ping", timeout=0.5).status_code == 204:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited: {(self.dir / 'influxd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        raise TimeoutError("influxd did not answer /ping")

    def stop(self) -> None:
        """Terminate."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


def postgres_database() -> tuple[str, str]:
    """Create a fresh database on ``SEMON_TEST_PG_URL``'s server; return (url, name)."""
    base = os.environ.get("SEMON_TEST_PG_URL")
    if not base:
        unavailable("SEMON_TEST_PG_URL not set (e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    import psycopg

    name = f"semon_test_{uuid.uuid4().hex[:10]}"
    conninfo = base.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as e:
        unavailable(f"PostgreSQL at SEMON_TEST_PG_URL not usable: {e}")
    url = conninfo.rsplit("/", 1)[0] + f"/{name}"
    return "postgresql+psycopg://" + url.removeprefix("postgresql://"), name


def drop_postgres_database(name: str) -> None:
    """Drop a database made by :func:`postgres_database`."""
    import psycopg

    conninfo = os.environ["SEMON_TEST_PG_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
