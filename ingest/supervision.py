"""Supervision of the collector's stages: no stage dies quietly, no outage goes unsaid.

* :meth:`Supervisor.spawn` runs a stage's loop in a thread. An exception that escapes it is
  unrecoverable by definition (the stage's own loop retries what it can): it is logged at
  CRITICAL with its traceback, ``/health`` turns 503 naming the stage, and ``fatal`` is set, on
  which ``semon collect`` stops and exits non-zero so the service manager restarts it.
* :meth:`Supervisor.degraded` / :meth:`Supervisor.recovered` record a store or broker outage:
  one WARNING on entering, one on leaving (with how long it lasted), whatever the retry rate.
* :meth:`Supervisor.beat` is a stage's heartbeat; a stage that stops beating while it has
  work is hung, and health says so.
* :class:`Backoff` spaces retries of an outage: doubling from ``first`` to ``cap``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Exit status of a collector whose stage failed (EX_SOFTWARE, sysexits.h): the service manager's
# cue to restart it.
EXIT_STAGE_FAILED = 70


@dataclass(slots=True)
class Outage:
    """A degraded condition currently in force."""

    reason: str
    since: float  # monotonic


class Backoff:
    """Retry spacing during an outage: ``first``, doubling up to ``cap``; ``reset()`` on success."""

    def __init__(self, first: float = 0.5, cap: float = 10.0) -> None:
        self.first, self.cap = first, cap
        self.delay = first
        self.next_at = 0.0

    def ready(self, now: float) -> bool:
        """Whether the next attempt is due."""
        return now >= self.next_at

    def failed(self, now: float) -> None:
        """An attempt failed: wait longer before the next one."""
        self.next_at = now + self.delay
        self.delay = min(self.delay * 2, self.cap)

    def reset(self) -> None:
        """An attempt succeeded."""
        self.delay, self.next_at = self.first, 0.0


class Supervisor:
    """Threads, heartbeats, outages and the fatal flag of one collector."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fatal = threading.Event()
        self.failures: dict[str, str] = {}  # stage → what killed it
        self.outages: dict[str, Outage] = {}  # condition key → outage
        self.beats: dict[str, float] = {}  # stage → monotonic time of its last heartbeat
        self.threads: list[threading.Thread] = []

    def spawn(self, stage: str, loop: Callable[[], None]) -> threading.Thread:
        """Start ``loop`` in a daemon thread named after the stage, under supervision."""

        def run() -> None:
            try:
                loop()
            except BaseException as e:  # a stage's own loop retries what it can: this is the end
                log.critical("collector stage %s failed: %r; the process must restart", stage, e, exc_info=True)
                with self._lock:
                    self.failures[stage] = f"{type(e).__name__}: {e}"[:300]
                self.fatal.set()

        t = threading.Thread(target=run, name=f"collector-{stage}", daemon=True)
        self.beats[stage] = time.monotonic()
        t.start()
        self.threads.append(t)
        return t

    def beat(self, stage: str) -> None:
        """The stage is alive and looping."""
        self.beats[stage] = time.monotonic()

    def beat_age(self, stage: str) -> float:
        """Seconds since the stage's last heartbeat."""
        return time.monotonic() - self.beats.get(stage, time.monotonic())

    def degraded(self, key: str, reason: str) -> None:
        """Enter (or stay in) an outage; logged once at WARNING on entering."""
        with self._lock:
            if key in self.outages:
                self.outages[key].reason = reason
                return
            self.outages[key] = Outage(reason, time.monotonic())
        log.warning("degraded: %s — %s", key, reason, extra={"condition": key})

    def recovered(self, key: str) -> None:
        """Leave an outage; logged once at WARNING with its length."""
        with self._lock:
            o = self.outages.pop(key, None)
        if o is not None:
            log.warning(
                "recovered: %s after %.1f s", key, time.monotonic() - o.since, extra={"condition": key, "was": o.reason}
            )

    def outage(self, key: str) -> Outage | None:
        """The outage in force under ``key``, if any."""
        with self._lock:
            return self.outages.get(key)

    def snapshot(self) -> tuple[dict[str, str], dict[str, Outage]]:
        """Failed stages and current outages (copies)."""
        with self._lock:
            return dict(self.failures), dict(self.outages)
