"""A private PostgreSQL cluster on a free port, for tests that stop and start the database.

The machine's shared PostgreSQL (``SEMON_TEST_PG_URL``) must never be stopped by a test, so a
fault-injection test runs its own: ``initdb`` into a temporary directory, ``pg_ctl start`` on a
free port with the socket in that directory, trust authentication on loopback only. As root
(CI) the server runs as the ``postgres`` user, which owns the directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from semon.ports import free_port
from tests.services import unavailable


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


class PrivatePostgres:
    """``start()``, ``stop()`` (fast shutdown: connections are cut, as in a crash of the server)."""

    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bin = bindir
        # Its own top-level temporary directory: the server's user must reach it, and pytest's
        # tmp_path lies under a directory only the test's user may enter.
        workdir = Path(tempfile.mkdtemp(prefix="semon-pg-"))
        self.dir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root without a postgres user to run a private cluster")
            os.chown(workdir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{workdir}'\n"
                "fsync = off\nshared_buffers = 32MB\nmax_connections = 50\n"
            )

    def _run(self, *cmd: str) -> None:
        r = subprocess.run([*self._as, *cmd], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stdout[-1500:]} {r.stderr[-1500:]}")

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "start")

    def stop(self) -> None:
        """Fast shutdown: every open connection is terminated."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        """Stop if running and remove the cluster."""
        if self.running():
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def running(self) -> bool:
        """Whether the server is up."""
        r = subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "status"], capture_output=True)
        return r.returncode == 0
