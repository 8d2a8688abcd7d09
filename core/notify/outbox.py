"""The persistent outbox: new ``alarm_events`` → delivery rows → claimed, sent, recorded.

**Filling.** :class:`Scanner` reads transitions by id above a watermark kept in the database
(``notify_state``), so it sees whatever process stored them (collector, API, maintenance run)
and resumes after a restart. Ids are handed out at insert but become visible at commit, so a
lower id may appear after a higher one; the watermark therefore stops below any missing id
until it shows up or :attr:`Settings.notify_gap_timeout_s` passes (then it was a rolled-back
insert — concurrent raisers leave those — or an id a collector reserved for a database outage;
such a transition, stored later, is queued in ``notify_late`` and taken from there). Rows above
a gap are processed at once, and every write is idempotent (unique keys + ``ON CONFLICT DO
NOTHING``), so a rescan after a restart, or two dispatchers scanning together, add nothing twice.

**Draining.** :func:`claim` takes due ``pending`` rows by moving their ``next_attempt_at`` a lease
ahead (``UPDATE … WHERE status='pending' AND next_attempt_at <= now … RETURNING``, with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so several dispatchers never send one row at the same
time and a dispatcher killed mid-send leaves the row due again when the lease ends.
:func:`record` writes the outcome: delivered, retry later (exponential backoff), or dead after
``webhook_max_attempts`` failures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from semon.config import Settings
from semon.notify.texts import alert_text
from semon.notify.webhooks import WEBHOOK_KIND, backoff_s, wants
from semon.rules.alarms import event_message
from semon.store.db import Database, insert_ignore
from semon.store.models import Alarm, AlarmEvent, Device
from semon.store.notify_models import NotifyLate, NotifyState, Webhook, WebhookDelivery
from semon.timeutil import as_utc, utc_now

log = logging.getLogger(__name__)

SCAN_STATE = "alarm_events_scan"
SCAN_BATCH = 500
# A hole this wide is a sequence jump (restored backup, manual setval), not open transactions.
MAX_TRACKED_GAP = 1000

# Called with each newly seen transition inside the scan's transaction (rescue records…).
EventHook = Callable[[Session, AlarmEvent, Alarm], object]  # what it returns is ignored




def read_watermark(db: Database) -> int:
    """Highest ``alarm_events`` id below which every transition has been fanned out."""
    with db.session() as s:
        st = s.get(NotifyState, SCAN_STATE)
        return st.value if st is not None else 0


class _Targets:
    """Active webhooks indexed by audience, so fan-out looks at the few that can match."""

    def __init__(self, hooks: Iterable[Webhook]) -> None:
        self.by_firm: dict[str, list[Webhook]] = {}
        self.by_unit: dict[str, list[Webhook]] = {}
        self.regulator: list[Webhook] = []
        for w in hooks:
            if w.firm_id is not None:
                self.by_firm.setdefault(w.firm_id, []).append(w)
            elif w.use_unit_id is not None:
                self.by_unit.setdefault(w.use_unit_id, []).append(w)
            else:
                self.regulator.append(w)

    def candidates(self, firm_id: str | None, use_unit_id: str | None) -> list[Webhook]:
        """Subscriptions of the device's firm, its owner and the regulator."""
        return [
            *(self.by_firm.get(firm_id, []) if firm_id else []),
            *(self.by_unit.get(use_unit_id, []) if use_unit_id else []),
            *self.regulator,
        ]


class Scanner:
    """Turns new ``alarm_events`` rows into outbox rows (and runs the hooks) exactly once each."""

    def __init__(self, db: Database, settings: Settings, hooks: Iterable[EventHook] = ()) -> None:
        self.db = db
        self.settings = settings
        self.hooks = list(hooks)
        self.cursor: int | None = None  # highest id processed by this scanner
        self.gaps: dict[int, float] = {}  # missing id -> when first noticed (monotonic)
        self.watermark = 0

    def _start(self, s: Session) -> None:
        st = s.get(NotifyState, SCAN_STATE)
        if st is None:
            # Fresh database: the migration seeds the row; a missing one means "from the start".
            insert_ignore(s, NotifyState, [{"name": SCAN_STATE, "value": 0, "updated_at": utc_now()}])
            st = s.get(NotifyState, SCAN_STATE)
        self.watermark = self.cursor = st.value if st is not None else 0

    def scan(self) -> int:
        """Process transitions stored since the last call; returns how many were new."""
        total = 0
        while True:
            n, more = self._scan_once()
            total += n
            if not more:
                return total

    def _scan_once(self) -> tuple[int, bool]:
        now_mono = time.monotonic()
        with self.db.session() as s:
            if self.cursor is None:
                self._start(s)
            assert self.cursor is not None
            q = (
                select(AlarmEvent, Alarm, Device.firm_id, Device.use_unit_id, Device.address)
                .join(Alarm, Alarm.id == AlarmEvent.alarm_id)
                .join(Device, Device.id == Alarm.device_id)
            )
            fresh = s.execute(q.where(AlarmEvent.id > self.cursor).order_by(AlarmEvent.id).limit(SCAN_BATCH)).all()
            late: list[Any] = list(s.execute(q.where(AlarmEvent.id.in_(list(self.gaps)))).all()) if self.gaps else []
            # Transitions a collector stored after a database outage, under ids it had reserved
            # (and published them with): below the scan position by now, so queued for us.
            queued = list(s.scalars(select(NotifyLate.event_id).order_by(NotifyLate.event_id).limit(SCAN_BATCH)))
            if queued:
                seen = {r[0].id for r in (*fresh, *late)}
                late += [r for r in s.execute(q.where(AlarmEvent.id.in_(queued))).all() if r[0].id not in seen]
                s.execute(delete(NotifyLate).where(NotifyLate.event_id.in_(queued)))
            rows = sorted([*late, *fresh], key=lambda r: r[0].id)
            # Ids skipped by the fresh rows are transactions not yet committed (or rolled back).
            expected = self.cursor + 1
            for r in fresh:
                if r[0].id > expected and r[0].id - expected <= MAX_TRACKED_GAP:
                    for missing in range(expected, r[0].id):
                        self.gaps.setdefault(missing, now_mono)
                expected = r[0].id + 1
            for r in late:
                self.gaps.pop(r[0].id, None)
            if rows:
                targets = _Targets(s.scalars(select(Webhook).where(Webhook.active)))
                deliveries = []
                for ev, alarm, firm_id, use_unit_id, address in rows:
                    payload: dict[str, Any] | None = None
                    text: dict[str, Any] | None = None
                    for w in targets.candidates(firm_id, use_unit_id):
                        if wants(w, firm_id=firm_id, use_unit_id=use_unit_id, event=ev.event,
                                 severity=ev.severity, at=ev.at):  # fmt: skip
                            payload = payload or event_message(ev, alarm)
                            # A channel's row carries the words it sends (every retry the same).
                            if w.kind != WEBHOOK_KIND:
                                text = text or alert_text(payload, address)
                            deliveries.append({
                                "webhook_id": w.id, "event_id": ev.id, "status": "pending",
                                "payload": payload if w.kind == WEBHOOK_KIND else text,
                                "attempts": 0, "next_attempt_at": utc_now(), "created_at": utc_now(),
                            })  # fmt: skip
                    for hook in self.hooks:
                        hook(s, ev, alarm)
                insert_ignore(s, WebhookDelivery, deliveries)
            if fresh:
                self.cursor = fresh[-1][0].id
            timeout = self.settings.notify_gap_timeout_s
            given_up = [missing for missing, noticed in self.gaps.items() if now_mono - noticed >= timeout]
            for missing in given_up:
                del self.gaps[missing]
            if given_up:
                log.info(
                    "%d alarm_events ids (%d…%d) never appeared in %.0f s: rolled back, or reserved by a "
                    "collector (stored later through notify_late)",
                    len(given_up), min(given_up), max(given_up), timeout,
                )  # fmt: skip
            mark = min(self.gaps) - 1 if self.gaps else self.cursor
            if mark > self.watermark:
                # Monotonic: another dispatcher may already be further along.
                s.execute(
                    update(NotifyState)
                    .where(NotifyState.name == SCAN_STATE, NotifyState.value < mark)
                    .values(value=mark, updated_at=utc_now())
                )
                self.watermark = mark
        return len(rows), len(fresh) == SCAN_BATCH


# ------------------------------------------------------------------------------------ draining
@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this dispatcher holds until ``lease_until``."""

    id: int
    webhook_id: int
    event_id: int
    url: str
    secret: str  # sealed (semon.notify.sealed)
    payload: dict[str, Any]
    attempts: int
    lease_until: datetime
    kind: str = WEBHOOK_KIND
    config: dict[str, Any] | None = None


def claim(db: Database, limit: int, lease_s: float) -> list[Claimed]:
    """Take up to ``limit`` due deliveries of active webhooks, oldest due first."""
    now = utc_now()
    until = now + timedelta(seconds=lease_s)
    due = (
        select(WebhookDelivery.id)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now, Webhook.active)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    with db.session() as s:
        if s.get_bind().dialect.name == "postgresql":
            # A materialized CTE runs once: as an IN (subquery) the planner may rescan it, and
            # with SKIP LOCKED every rescan returns other rows — LIMIT would not hold.
            cte = due.with_for_update(of=WebhookDelivery, skip_locked=True).cte("due").prefix_with("MATERIALIZED")
            target: Any = WebhookDelivery.id == cte.c.id
        else:
            target = WebhookDelivery.id.in_(due)  # SQLite: one writer at a time, no row locks
        ids = list(
            s.scalars(
                update(WebhookDelivery)
                .where(
                    target,
                    # Re-checked on the row itself: a row another dispatcher claimed meanwhile
                    # has a future next_attempt_at and is skipped.
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=until)
                .returning(WebhookDelivery.id)
                .execution_options(synchronize_session=False)
            )
        )
        if not ids:
            return []
        rows = s.execute(
            select(WebhookDelivery, Webhook.url, Webhook.secret, Webhook.kind, Webhook.config)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id.in_(ids))
            .order_by(WebhookDelivery.event_id)
        ).all()
        return [
            Claimed(d.id, d.webhook_id, d.event_id, url, secret, d.payload, d.attempts, until, kind, config)
            for d, url, secret, kind, config in rows
        ]


def record(
    db: Database,
    c: Claimed,
    settings: Settings,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    attempted: bool = True,
    retry_at: datetime | None = None,
) -> tuple[str, datetime | None]:
    """Write an attempt's outcome; returns the row's new status and, if pending, when it is due.

    ``attempted=False`` releases a row that was not sent (its webhook's endpoint just failed on
    an earlier row): it becomes due with that row at ``retry_at`` without counting an attempt.
    """
    now = utc_now()
    with db.session() as s:
        d = s.get(WebhookDelivery, c.id, with_for_update=True)
        if d is None or d.status != "pending":
            return (d.status if d is not None else "deleted"), None
        if not ok and as_utc(d.next_attempt_at) != as_utc(c.lease_until):
            # Our lease ran out and another dispatcher holds the row now: its outcome counts.
            return d.status, None
        if not attempted:
            d.next_attempt_at = retry_at or now
            return d.status, d.next_attempt_at
        d.attempts += 1
        d.last_attempt_at = now
        d.last_status_code = status_code
        d.last_error = None if ok else (error or "")[:2000]
        if ok:
            d.status, d.delivered_at = "delivered", now
        elif d.attempts >= settings.webhook_max_attempts:
            d.status, d.dead_at = "dead", now
            log.warning("webhook delivery %d dead after %d attempts: %s", d.id, d.attempts, d.last_error)
        else:
            wait = backoff_s(d.attempts, settings.webhook_backoff_base_s, settings.webhook_backoff_max_s)
            d.next_attempt_at = now + timedelta(seconds=wait)
            return d.status, d.next_attempt_at
        return d.status, None


def redeliver(session: Session, webhook_id: int, delivery_ids: list[int] | None, status: str = "dead") -> int:
    """Make deliveries of one webhook due again now with a fresh attempt budget.

    ``delivery_ids`` None = every delivery of the webhook in ``status``. The idempotency key stays
    the same, so a receiver that did get an earlier attempt recognises the redelivery.
    """
    stmt = update(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    stmt = (
        stmt.where(WebhookDelivery.id.in_(delivery_ids))
        if delivery_ids is not None
        else stmt.where(WebhookDelivery.status == status)
    )
    res = session.execute(
        stmt.values(status="pending", attempts=0, next_attempt_at=utc_now(), dead_at=None).execution_options(
            synchronize_session=False
        )
    )
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
