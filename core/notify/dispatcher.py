"""The dispatcher: scan new transitions, escalate, open rescues, drain the webhook outbox.

One loop, every ``dispatcher_poll_s`` (sooner while there is work):

1. :class:`~semon.notify.outbox.Scanner` turns new ``alarm_events`` into delivery rows and opens
   rescue records for trapped-passenger alarms;
2. :mod:`~semon.notify.escalation` escalates unacknowledged alarms and overdue rescue arrivals;
3. due deliveries are claimed and sent — signed POSTs for webhooks, the service's own request for
   channels (:mod:`semon.notify.channels`: WeCom, DingTalk, e-mail, SMS) — one target's in event
   order on one worker, different targets in parallel (``webhook_concurrency``). Every target is
   resolved, checked and pinned for the attempt (:mod:`semon.notify.targets`). When an endpoint
   fails, that target's other claimed rows are not tried in the same round: they are released to
   retry with it, so a dead receiver costs one request per backoff step, not one per queued transition.

It runs in the API process (a thread started in the app lifespan, ``SEMON_DISPATCHER_ENABLED``)
or alone (``semon deliver``); any number may run against one database.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
import orjson
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

import semon
from semon.config import Settings
from semon.notify.channels import CHANNELS, DeliveryFailed, SendContext
from semon.notify.channels.base import tls_context
from semon.notify.escalation import escalate_rescue_arrivals, escalate_unacknowledged
from semon.notify.outbox import Claimed, Scanner, claim, record
from semon.notify.sealed import Sealer, SecretKeyError
from semon.notify.targets import TargetPolicy, TargetRefused, post_pinned, resolve
from semon.notify.webhooks import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_KIND,
    idempotency_key,
    signature,
)
from semon.rules.rescue.service import open_rescue
from semon.store.db import Database
from semon.store.notify_models import Webhook
from semon.timeutil import now_ms, utc_now

log = logging.getLogger(__name__)

CLAIM_PER_WORKER = 16


def check_secret_key(db: Database, sealer: Sealer) -> None:
    """Fail at start, in one line, when targets exist whose secrets this key cannot open —
    rather than letting every delivery fail until it is dead."""
    with db.session() as s:
        stored = s.scalar(select(Webhook.secret).order_by(Webhook.id).limit(1))
    if stored is not None:
        sealer.open(stored)


class Dispatcher:
    """Alert delivery worker over one database; ``start()``/``stop()`` or ``run_once()``."""

    def __init__(self, settings: Settings, db: Database, *, name: str = "dispatcher") -> None:
        self.settings = settings
        self.db = db
        self.name = name
        types = list(settings.rescue_alarm_types)
        self.scanner = Scanner(db, settings, hooks=[lambda s, ev, a: open_rescue(s, ev, a, types)])
        self.sealer = Sealer(settings.secret_key)
        self._key_ok = False
        try:
            self._check_key()
        except SQLAlchemyError:  # the database is away: start anyway (alarms wait), check later
            log.warning("dispatcher: database unavailable, SEMON_SECRET_KEY is checked once it is back")
        self.policy = TargetPolicy.from_settings(settings)
        self.http = httpx.Client(
            timeout=settings.webhook_timeout_s,
            verify=tls_context(settings.notify_ca_file),
            follow_redirects=False,  # a redirect is a failure: the signed body goes where it was registered
            headers={"User-Agent": f"semon-webhooks/{semon.__version__}"},
        )
        self.channel_ctx = SendContext(self.http, self.policy, settings.webhook_timeout_s, settings.notify_ca_file)
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
        now = utc_now()
        work += escalate_unacknowledged(self.db, self.settings, now)
        work += escalate_rescue_arrivals(self.db, self.settings, now)
        work += self.deliver()
        return work

    def _check_key(self) -> None:
        check_secret_key(self.db, self.sealer)
        self._key_ok = True

    def deliver(self) -> int:
        """Claim due deliveries and send them; returns how many were claimed.

        Nothing is claimed while the key does not open the stored secrets: the deliveries stay
        pending (not burnt to dead) and each round logs the one-line reason."""
        if not self._key_ok:
            self._check_key()
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

    def _post_webhook(self, c: Claimed, secret: str) -> int:
        """The signed POST of a webhook delivery; its status code (:class:`DeliveryFailed` if not 2xx)."""
        body = orjson.dumps(c.payload)
        ts = str(now_ms() // 1000)  # the signature's timestamp is in seconds
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: signature(secret, ts, body),
            IDEMPOTENCY_HEADER: idempotency_key(c.event_id, c.webhook_id),
            "X-Semon-Event": str(c.payload.get("event", "")),
            "X-Semon-Delivery": str(c.id),
        }
        resp = post_pinned(self.http, resolve(c.url, self.policy), content=body, headers=headers)
        if not 200 <= resp.status_code < 300:
            raise DeliveryFailed(f"HTTP {resp.status_code}: {resp.text[:300]}", resp.status_code)
        return resp.status_code

    def _attempt(self, c: Claimed) -> int | None:
        """Send one claimed delivery to its webhook or channel; raises on any failure."""
        secret = self.sealer.open(c.secret)
        if c.kind == WEBHOOK_KIND:
            return self._post_webhook(c, secret)
        channel = CHANNELS.get(c.kind)
        if channel is None:
            raise DeliveryFailed(f"unknown channel kind {c.kind!r}")
        return channel.send(self.channel_ctx, c.url, orjson.loads(secret), c.config or {}, c.payload)

    def _send(self, c: Claimed) -> datetime | None:
        """One attempt; returns when to retry if it failed and the delivery is not dead yet."""
        code: int | None = None
        error: str | None = None
        try:
            code = self._attempt(c)
            ok = True
        except DeliveryFailed as e:
            ok, code, error = False, e.status_code, str(e)
        except SecretKeyError as e:
            log.error("delivery %d: %s", c.id, e)
            ok, error = False, str(e)
        except (httpx.HTTPError, TargetRefused, OSError, ValueError, KeyError) as e:
            ok, error = False, f"{type(e).__name__}: {e}"
        try:
            status, retry_at = record(self.db, c, self.settings, ok=ok, status_code=code, error=error)
        except Exception:  # the database hiccupped: the lease runs out and the row is sent again
            log.exception("recording delivery %d failed", c.id)
            return utc_now() + timedelta(seconds=self.lease_s)
        if ok:
            self.stats["deliveries_delivered"] += 1
            return None
        self.stats["deliveries_dead" if status == "dead" else "delivery_failures"] += 1
        log.info("delivery failed", extra={"delivery_id": c.id, "webhook_id": c.webhook_id, "kind": c.kind,
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
