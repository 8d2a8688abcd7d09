"""Real services for the tests and the benchmark, started on free ports from the repo's configs.

Mosquitto (``config/mosquitto/mosquitto-test.conf.template``), InfluxDB 1.x
(``config/influxdb/influxdb-test.conf.template``) and a temporary database on a PostgreSQL server:
one launcher for both ``tests/`` and ``bench/`` (``bench/fleetbench/services.py`` adds the
benchmark's broker settings and process accounting on top of this module).

It lives in ``tests/`` because the test suite is its main user and neither ``tests/`` nor
``bench/`` is shipped in the wheel; the benchmark puts the repo root on ``sys.path`` and imports
``tests.services``. Nothing here imports pytest: a missing binary or server raises
:class:`ServiceMissing`, and ``tests/conftest.py`` installs :data:`on_missing` so that under pytest
it skips — or fails when ``SEMON_REQUIRE_SERVICES=1`` (CI), so a green CI always means the services
were exercised.

Nothing here touches a service it did not start: every process is tracked by its PID and stopped
by it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import httpx

from semon.ports import free_port, wait_port

REPO = Path(__file__).resolve().parent.parent


class ServiceMissing(RuntimeError):
    """A binary or service the launcher needs is not available."""


# What a missing service does besides raising: tests/conftest.py turns it into skip / fail.
on_missing: Callable[[str], None] | None = None


def unavailable(reason: str) -> NoReturn:
    """Report a missing service: :data:`on_missing` (under pytest: skip or fail), else :class:`ServiceMissing`."""
    if on_missing is not None:
        on_missing(reason)
    raise ServiceMissing(reason)


def which(name: str, *extra: str) -> str | None:
    """A binary on PATH or at one of ``extra`` paths."""
    found = shutil.which(name)
    if found:
        return found
    return next((p for p in extra if Path(p).exists()), None)


def make_pki(out: Path, *names: str) -> Path:
    """A CA, a server certificate for ``names`` (default localhost, 127.0.0.1) and a client
    certificate, issued by the shipped ``config/mosquitto/make-certs.sh`` (docs/tls.md)."""
    if shutil.which("openssl") is None:
        unavailable("openssl not found (apt-get install openssl)")
    subprocess.run([str(REPO / "config/mosquitto/make-certs.sh"), str(out), *(names or ("localhost", "127.0.0.1"))],
                   check=True, capture_output=True)  # fmt: skip
    return out


# ------------------------------------------------------------------------------ processes
_STARTED: list[Proc] = []  # every process started here, so an interrupted run can stop them


def stop_all() -> None:
    """Stop every process started here that still runs (by its PID: SIGTERM, then SIGKILL)."""
    for p in reversed(_STARTED):
        if p.alive():
            try:
                p.stop(timeout=15)
            except OSError:
                pass


@dataclass
class Proc:
    """A process started by this module (or a benchmark), known by its PID."""

    name: str
    popen: subprocess.Popen[bytes] | None
    pid: int
    log: Path | None = None

    @classmethod
    def start(
        cls, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Proc:
        """Start ``cmd`` with stdout and stderr appended to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        fh = log.open("ab")
        # Same process group as the caller: whoever kills the caller's group kills its services too.
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        fh.close()
        proc = cls(name, p, p.pid, log)
        _STARTED.append(proc)
        return proc

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None if self.popen is not None else Path(f"/proc/{self.pid}").exists()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Signal the process (by its own PID) and wait; SIGKILL after ``timeout``."""
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen is not None else None
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(10)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or acknowledge."""
        self.stop(signal.SIGKILL, 10)


# ------------------------------------------------------------------------------ services
class Mosquitto:
    """A Mosquitto process with ``config/mosquitto/mosquitto-test.conf.template``.

    With ``tls_dir`` (a :func:`make_pki` directory) also the shipped TLS listener
    (``config/mosquitto/tls/tls.conf``) on ``tls_port``; ``persistence=False`` turns the broker's
    store off, ``sys_interval`` makes it publish ``$SYS`` (the message-store size) that often.
    """

    def __init__(
        self, workdir: Path, tls_dir: Path | None = None, *, persistence: bool = True, sys_interval: int | None = None
    ) -> None:
        binary = which("mosquitto", "/usr/sbin/mosquitto")
        if binary is None:
            unavailable("mosquitto binary not found (apt-get install mosquitto)")
        self.binary = binary
        self.port = free_port()
        self.dir = workdir
        (workdir / "persist").mkdir(parents=True, exist_ok=True)
        template = (REPO / "config/mosquitto/mosquitto-test.conf.template").read_text()
        conf = template.format(port=self.port, persistence_dir=workdir / "persist")
        if not persistence:
            conf = conf.replace("persistence true", "persistence false")
        if sys_interval is not None:
            conf += f"\n# the broker's store size ($SYS) every {sys_interval} s\nsys_interval {sys_interval}\n"
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
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """``mqtts://localhost:TLS_PORT`` (the name the test certificate carries)."""
        assert self.tls_port is not None, "started without tls_dir"
        return f"mqtts://localhost:{self.tls_port}"

    def start(self) -> Proc:
        """Start and wait for the listener(s)."""
        self.proc = Proc.start("mosquitto", [self.binary, "-c", str(self.conf)], self.dir / "mosquitto.log")
        wait_port(self.port)
        if self.tls_port is not None:
            wait_port(self.tls_port)
        return self.proc

    def stop(self) -> None:
        """Terminate (Mosquitto saves its persistence file on SIGTERM)."""
        if self.proc:
            self.proc.stop(timeout=20)


class Influx:
    """An ``influxd`` (1.x) with ``config/influxdb/influxdb-test.conf.template`` on free ports."""

    def __init__(self, workdir: Path) -> None:
        binary = which("influxd")
        if binary is None:
            unavailable("influxd binary not found (apt-get install influxdb)")
        self.binary = binary
        self.http_port = free_port()
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        template = (REPO / "config/influxdb/influxdb-test.conf.template").read_text()
        self.conf = workdir / "influxdb.conf"
        self.conf.write_text(template.format(bind_port=free_port(), http_port=self.http_port, dir=workdir))
        self.proc: Proc | None = None
        self.http = httpx.Client(base_url=self.url, timeout=120)

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 60.0) -> Proc:
        """Start and wait (at most ``timeout`` s) until ``/ping`` answers; a stopped one starts again."""
        if self.http.is_closed:  # stop() closed it: tests restart InfluxDB to fake an outage
            self.http = httpx.Client(base_url=self.url, timeout=120)
        self.proc = Proc.start("influxd", [self.binary, "run", "-config", str(self.conf)], self.dir / "influxd.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.http.get("/ping", timeout=0.5).status_code == 204:
                    return self.proc
            except httpx.HTTPError:
                pass
            if not self.proc.alive():
                raise RuntimeError(f"influxd exited: {(self.dir / 'influxd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        raise TimeoutError("influxd did not answer /ping")

    def stop(self) -> None:
        """Terminate."""
        self.http.close()
        if self.proc:
            self.proc.stop(timeout=30)

    def query(self, q: str, db: str | None = None) -> list[dict[str, object]]:
        """InfluxQL; the ``series`` of the first statement."""
        params = {"q": q, "epoch": "ms"}
        if db:
            params["db"] = db
        write = q.split()[0].upper() in ("CREATE", "DROP")
        r = self.http.post("/query", params=params) if write else self.http.get("/query", params=params)
        r.raise_for_status()
        res = r.json()["results"][0]
        if "error" in res:
            raise RuntimeError(f"InfluxQL error for {q!r}: {res['error']}")
        return list(res.get("series", []))

    def recreate(self, db: str) -> None:
        """Drop and create a database."""
        self.query(f'DROP DATABASE "{db}"')
        self.query(f'CREATE DATABASE "{db}"')

    def points_written(self) -> int:
        """InfluxDB's own counter of points written through HTTP (``/debug/vars``)."""
        d = self.http.get("/debug/vars", timeout=10).json()
        for v in d.values():
            if isinstance(v, dict) and v.get("name") == "httpd":
                return int(v["values"].get("pointsWrittenOK", 0))
        return 0


@dataclass
class Postgres:
    """A temporary database on the PostgreSQL server of ``base_url``, dropped at the end."""

    base_url: str
    name: str = field(default_factory=lambda: f"semon_test_{uuid.uuid4().hex[:10]}")

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the temporary database."""
        server = self._conninfo().rsplit("/", 1)[0].removeprefix("postgresql://")
        return f"postgresql+psycopg://{server}/{self.name}"

    def _conninfo(self) -> str:
        return self.base_url.replace("postgresql+psycopg://", "postgresql://")

    def create(self) -> None:
        """CREATE DATABASE (the schema comes from the migrations when semon opens it)."""
        import psycopg

        try:
            with psycopg.connect(self._conninfo(), autocommit=True, connect_timeout=5) as c:
                c.execute(f'CREATE DATABASE "{self.name}"')
        except psycopg.Error as e:
            unavailable(f"PostgreSQL at {self.base_url} not usable: {e}")

    def drop(self) -> None:
        """DROP DATABASE … WITH (FORCE)."""
        import psycopg

        with psycopg.connect(self._conninfo(), autocommit=True, connect_timeout=5) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def backend_pids(self) -> list[int]:
        """Server processes serving the temporary database (for CPU accounting)."""
        import psycopg

        with psycopg.connect(self._conninfo(), autocommit=True, connect_timeout=5) as c:
            rows = c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.name,)).fetchall()
        return [int(r[0]) for r in rows]


def _test_pg_url() -> str:
    base = os.environ.get("SEMON_TEST_PG_URL")
    if not base:
        unavailable("SEMON_TEST_PG_URL not set (e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    return base


def postgres_database() -> tuple[str, str]:
    """Create a fresh database on ``SEMON_TEST_PG_URL``'s server; return (url, name)."""
    pg = Postgres(_test_pg_url())
    pg.create()
    return pg.url, pg.name


def drop_postgres_database(name: str) -> None:
    """Drop a database made by :func:`postgres_database`."""
    Postgres(_test_pg_url(), name).drop()


__all__ = [
    "REPO",
    "Influx",
    "Mosquitto",
    "Postgres",
    "Proc",
    "ServiceMissing",
    "drop_postgres_database",
    "free_port",
    "make_pki",
    "on_missing",
    "postgres_database",
    "stop_all",
    "unavailable",
    "wait_port",
    "which",
]
