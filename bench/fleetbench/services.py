"""The benchmark's services: the launchers of ``tests/services.py`` with the benchmark's settings,
and the process accounting (CPU seconds, RSS) the reports need.

One launcher serves tests and benchmark (``tests.services``; neither folder is shipped in the
wheel). Here only what differs: the broker runs without persistence and publishes ``$SYS`` every
second, and the temporary database is named ``semon_bench_…``.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/run.py runs as a script: make the repo's tests package importable
    sys.path.insert(0, str(REPO))

from tests import services  # noqa: E402
from tests.services import Influx, Proc, ServiceMissing, free_port, stop_all  # noqa: E402, F401  (bench's modules import them here)

CLK = os.sysconf("SC_CLK_TCK")


class Mosquitto(services.Mosquitto):
    """The test broker with persistence off and ``sys_interval 1``.

    The benchmark compares pipelines behind one broker, not broker durability: with persistence
    on, Mosquitto rewrites its whole store (the backlog) every second and that CPU is taken from
    every system under test (the peer baseline ran it off as well). ``$SYS`` every second gives the
    broker's message-store size, the backlog.
    """

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, persistence=False, sys_interval=1)


@dataclass
class Postgres(services.Postgres):
    """A temporary ``semon_bench_…`` database on the local server, dropped at the end."""

    name: str = field(default_factory=lambda: f"semon_bench_{uuid.uuid4().hex[:10]}")


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

