"""The benchmark's own services: Mosquitto and InfluxDB on free ports from the repo's templates,
a temporary PostgreSQL database, and helpers to start, watch and stop processes.

Nothing here touches a service the harness did not start: every process is tracked by its
PID and stopped by it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from semon.ports import free_port, wait_port

REPO = Path(__file__).resolve().parents[2]
CLK = os.sysconf("SC_CLK_TCK")


class ServiceMissing(RuntimeError):
    """A binary or service the harness needs is not available."""




def which(name: str, *extra: str) -> str | None:
    """A binary on PATH or at one of ``extra`` paths."""
    found = shutil.which(name)
    if found:
        return found
    return next((p for p in extra if Path(p).exists()), None)


# ------------------------------------------------------------------------------ processes
def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, seconds."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK
    except (OSError, IndexError, ValueError):
        return None


def rss_mb(pid: int) -> tuple[float, float] | None:
    """(current RSS, peak RSS "high water mark") of a live process, MB."""
    try:
        rss = hwm = 0.0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
        return rss, hwm
    except (OSError, ValueError):
        return None


_STARTED: list[Proc] = []  # every process this run started, so an interrupted run can stop them


def stop_all() -> None:
    """Stop every process this run started that still runs (by its PID: SIGTERM, then SIGKILL)."""
    for p in reversed(_STARTED):
        if p.alive():
            try:
                p.stop(timeout=15)
            except OSError:
                pass


@dataclass
class Proc:
    """A process the harness started."""

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
        # Same process group as the harness: whoever kills the harness's group kills its services too.
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
    """Mosquitto from ``config/mosquitto/mosquitto-test.conf.template`` on a free port.

    Two changes to the rendered file: persistence off (as in the peer baseline) and
    ``sys_interval 1`` so the broker publishes its message-store size (the backlog) every second.
    """

    def __init__(self, workdir: Path) -> None:
        binary = which("mosquitto", "/usr/sbin/mosquitto")
        if binary is None:
            raise ServiceMissing("mosquitto not found (apt-get install mosquitto)")
        self.binary = binary
        self.port = free_port()
        self.dir = workdir
        (workdir / "persist").mkdir(parents=True, exist_ok=True)
        template = (REPO / "config/mosquitto/mosquitto-test.conf.template").read_text()
        conf = template.format(port=self.port, persistence_dir=workdir / "persist")
        # The benchmark compares pipelines behind one broker, not broker durability: with
        # persistence on, Mosquitto rewrites its whole store (the backlog) every second and that
        # CPU is taken from every system under test. The peer baseline ran it off as well.
        conf = conf.replace("persistence true", "persistence false")
        conf += "\n# added by bench/: the broker's store size ($SYS) every second = the backlog\nsys_interval 1\n"
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(conf)
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Proc:
        """Start and wait for the listener."""
        self.proc = Proc.start("mosquitto", [self.binary, "-c", str(self.conf)], self.dir / "mosquitto.log")
        wait_port(self.port)
        return self.proc

    def stop(self) -> None:
        """Terminate (it saves its persistence file on SIGTERM)."""
        if self.proc:
            self.proc.stop(timeout=20)


class Influx:
    """``influxd`` (1.x) from ``config/influxdb/influxdb-test.conf.template`` on free ports."""

    def __init__(self, workdir: Path) -> None:
        binary = which("influxd")
        if binary is None:
            raise ServiceMissing("influxd not found (apt-get install influxdb)")
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

    def start(self) -> Proc:
        """Start and wait until ``/ping`` answers."""
        self.proc = Proc.start("influxd", [self.binary, "run", "-config", str(self.conf)], self.dir / "influxd.log")
        deadline = time.monotonic() + 60
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

    # -- helpers ---------------------------------------------------------------------------
    def query(self, q: str, db: str | None = None) -> list[dict[str, object]]:
        """InfluxQL; the ``series`` of the first statement."""
        params = {"q": q, "epoch": "ms"}
        if db:
            params["db"] = db
        r = self.http.post("/query", params=params) if q.split()[0].upper() in ("CREATE", "DROP") else self.http.get(
            "/query", params=params
        )
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
    """A temporary database on the local server, dropped at the end."""

    base_url: str
    name: str = field(default_factory=lambda: f"semon_bench_{uuid.uuid4().hex[:10]}")

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the temporary database."""
        server = self._conninfo().rsplit("/", 1)[0].removeprefix("postgresql://")
        return f"postgresql+psycopg://{server}/{self.name}"

    def _conninfo(self) -> str:
        return self.base_url.replace("postgresql+psycopg://", "postgresql://")

    def create(self) -> None:
        """CREATE DATABASE (schema comes from the migrations when semon opens it)."""
        import psycopg

        try:
            with psycopg.connect(self._conninfo(), autocommit=True, connect_timeout=5) as c:
                c.execute(f'CREATE DATABASE "{self.name}"')
        except psycopg.Error as e:
            raise ServiceMissing(f"PostgreSQL at {self.base_url} not usable: {e}") from e

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
