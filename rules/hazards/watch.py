"""The hazard scan beside the API's dispatcher: every ``SEMON_HAZARD_SCAN_S`` it proposes
hazards from new alarms and escalates overdue ones (raising their compliance alarms); every
``SEMON_HAZARD_BOARD_S`` it writes the boards' ``hazard_indicators`` snapshot.

A failing scan (database away) is logged and retried at the next interval; it never stops the
API. Several processes may scan at once: proposals are idempotent per alarm, and the compliance
alarm store serializes raises per (device, type).
"""

from __future__ import annotations

import logging
import threading
import time

from semon.rules.hazards import service as hs
from semon.store.db import Database
from semon.store.telemetry import TelemetryStore
from semon.timeutil import utc_now

log = logging.getLogger(__name__)


class HazardWatch:
    """A daemon thread running :func:`scan_once` periodically."""

    def __init__(
        self,
        db: Database,
        interval_s: float,
        tz: str,
        telemetry: TelemetryStore | None = None,
        board_every_s: float = 900.0,
    ) -> None:
        self.db, self.interval_s, self.tz = db, interval_s, tz
        # The boards' hazard_indicators snapshot: heavier (a risk grade per device), so less often.
        self.telemetry, self.board_every_s = telemetry, board_every_s
        self._board_due = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hazard-watch", daemon=True)
        self.failures = 0

    def start(self) -> None:
        """Begin scanning."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current scan."""
        self._stop.set()
        self._thread.join(timeout=10)

    def scan_once(self) -> None:
        """One proposal and escalation pass."""
        now = utc_now()
        hs.propose_from_alarms(self.db, now)
        hs.escalate_overdue(self.db, now, self.tz)
        if self.telemetry is not None and time.monotonic() >= self._board_due:
            self.telemetry.write(hs.indicator_points(self.db, now, self.tz))
            self._board_due = time.monotonic() + self.board_every_s

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan_once()
                if self.failures:
                    log.warning("hazard scan recovered after %d failures", self.failures)
                self.failures = 0
            except Exception:
                self.failures += 1
                if self.failures == 1:  # once on entering the failure, not every minute
                    log.exception("hazard scan failed; retrying every %.0f s", self.interval_s)
            self._stop.wait(self.interval_s)
