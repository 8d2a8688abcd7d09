"""The dispatcher: scan new transitions, escalate, open rescues, drain the webhook outbox.

One loop, every ``dispatcher_poll_s`` (sooner while there is work):

1. :class:`~semon.notify.outbox.Scanner` turns new ``alarm_events`` into delivery rows and opens
   rescue records for trapped-passenger alarms;
2. :mod:`~semon.notify.escalation` escalates unacknowledged alarms and overdue rescue arrivals;
3. due deliveries are claimed and POSTed, one webhook's in event order on one worker, different
   webhooks in parallel (``webhook_concurrency``). When an endpoint fails, that webhook's other
   claimed rows are not tried in the same round: they are released to retry with it, so a dead
   receiver costs one request per backoff step, not one per queued transition.

It runs in the API process (a thread started in the app lifespan, ``SEMON_DISPATCHER_ENABLED``)
or alone (``semon deliver``); any number may run against one database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import orjson

import semon
from semon.config import Settings
from semon.notify.escalation import escalate_rescue_arrivals, escalate_unacknowledged
from semon.notify.outbox import Claimed, Scanner, claim, record
from semon.notify.webhooks import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TargetRefused,
    check_target,
    idempotency_key,
    signature,
)
from semon.rules.rescue.service import open_rescue
from semon.store.db import Database

log = logging.getLogger(__name__)

CLAIM_PER_WORKER = 16


class Dispatcher:
    """Alert delivery worker over one database; ``start()``/``stop()`` or ``run_once()``."""

    def __init__(self, settings: Settings, db: Database, *, name: str = "dispatcher") -> None:
        self.settings = settings
        self.db = db
        self.name = name
        types = list(settings.rescue_alarm_types)
        self.scanner = Scanner(db, settings, hooks=[lambda s, ev, a: open_rescue(s, ev, a, types)])
        self.http = httpx.Client(
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,  # a redirect is a failure: the signed body goes where it was registered
            headers={"User-Agent": f"semon-webhooks/{semon.__version__}", "Content-Type": "application/json"},
        )
        self.pool = ThreadPoolExecutor(settings.webhook_concurrency, thread_name_prefix=f"{name}-http")
        # A claim outlives the longest attempt (connect + read timeouts) with room to record it.
        self.lease_s = 2 * settings.webhook_timeout_s + 5
        self.stats: dict[str, int] = defaultdict(int)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one round -----------------------------------------------------------------------
    def run_once(self) -> int:
        """Scan, escalate and deliver once; returns how much work there was (0 = idle)."""
        work = self.scanner.scan()
        now = datetime.now(UTC)
        work += escalate_unacknowledged(self.db, self.settings, now)
        work += escalate_rescue_arrivals(self.db, self.settings, now)
        work += self.deliver()
        return work

    def deliver(self) -> int:
        """Claim due deliveries and send them; returns how many were claimed."""
        claimed = claim(self.db, self.settings.webhook_concurrency * CLAIM_PER_WORKER, self.lease_s)
        if not claimed:
            return 0
        by_webhook: dict[int, list[Claimed]] = defaultdict(list)
        for c in claimed:
            by_webhook[c.webhook_id].append(c)
        for f in [self.pool.submit(self._send_all, rows) for rows in by_webhook.values()]:
            f.result()
        return len(claimed)

    def _send_all(self, rows: list[Claimed]) -> None:
        for i, c in enumerate(rows):
            retry_at = self._send(c)
            if retry_at is not None:
                # The endpoint is failing: the rest of its rows retry together with this one.
                for rest in rows[i + 1 :]:
                    record(self.db, rest, self.settings, ok=False, status_code=None, error=None, attempted=False,
                           retry_at=retry_at)  # fmt: skip
                return

    def _send(self, c: Claimed) -> datetime | None:
        """One attempt; returns when to retry if it failed and the delivery is not dead yet."""
        body = orjson.dumps(c.payload)
        ts = str(int(time.time()))
        headers = {
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: signature(c.secret, ts, body),
            IDEMPOTENCY_HEADER: idempotency_key(c.event_id, c.webhook_id),
            "X-Semon-Event": str(c.payload.get("event", "")),
            "X-Semon-Delivery": str(c.id),
        }
        code: int | None = None
        error: str | None = None
        try:
            check_target(c.url, self.settings.webhook_allow_private)
            resp = self.http.post(c.url, content=body, headers=headers)
            code = resp.status_code
            ok = 200 <= code < 300
            if not ok:
                error = f"HTTP {code}: {resp.text[:300]}"
        except (httpx.HTTPError, TargetRefused, OSError) as e:
            ok, error = False, f"{type(e).__name__}: {e}"
        try:
            status, retry_at = record(self.db, c, self.settings, ok=ok, status_code=code, error=error)
        except Exception:  # the database hiccupped: the lease runs out and the row is sent again
            log.exception("recording delivery %d failed", c.id)
            return datetime.now(UTC) + timedelta(seconds=self.lease_s)
        if ok:
            self.stats["deliveries_delivered"] += 1
            return None
        self.stats["deliveries_dead" if status == "dead" else "delivery_failures"] += 1
        log.info("webhook delivery failed", extra={"delivery_id": c.id, "webhook_id": c.webhook_id,
                                                    "error": error, "status": status})  # fmt: skip
        return retry_at

    # -- thread --------------------------------------------------------------------------
    def run(self) -> None:
        """Loop until :meth:`stop`; errors (database away…) are logged and retried."""
        log.info("dispatcher running", extra={"dispatcher": self.name})
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("dispatcher round failed; retrying")
                busy = 0
            if not busy:
                self._stop.wait(self.settings.dispatcher_poll_s)

    def start(self) -> None:
        """Run in a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current round and stop; claimed rows not recorded return after their lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.http.close()
