"""Webhooks: who owns a subscription, which transitions it wants, and how a delivery is signed.

A request carries the transition (``schemas/alarm.json``, the MQTT document) as its JSON body and

* ``X-Semon-Timestamp`` — Unix seconds when this attempt was signed;
* ``X-Semon-Signature`` — ``sha256=`` + hex HMAC-SHA256(secret, ``f"{timestamp}.{body}"``): the
  receiver recomputes it over the raw body and rejects stale timestamps (replays);
* ``Idempotency-Key`` — the same for every attempt and redelivery of one transition to one
  webhook: the receiver's dedupe key (at-least-once delivery sends duplicates now and then);
* ``X-Semon-Event``, ``X-Semon-Delivery`` — the event name and the outbox row id, for logs.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, select, true

from semon.store.access import Access, NotVisible, Principal
from semon.store.notify_models import Webhook
from semon.timeutil import as_utc

SIGNATURE_HEADER = "X-Semon-Signature"
TIMESTAMP_HEADER = "X-Semon-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Most severe first; a webhook's min_severity keeps transitions at that rank or better.
SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "warning": 3}
# A regulator webhook created without an event filter gets escalations only: the city is told
# what the firms did not handle, not every door fault (it can ask for more).
REGULATOR_DEFAULT_EVENTS = ["escalated"]
# Webhook.kind of a signed JSON webhook; every other kind is a channel (semon.notify.channels).
WEBHOOK_KIND = "webhook"


def new_secret() -> str:
    """A fresh signing secret (256 random bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``timestamp + "." + body``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str, *, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (no replay)."""
    try:
        fresh = abs(now - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), header)


def idempotency_key(event_id: int, webhook_id: int) -> str:
    """Stable per transition × webhook, across retries, restarts and manual redeliveries."""
    return f"semon-evt{event_id}-wh{webhook_id}"


def backoff_s(attempts: int, base_s: float, max_s: float, jitter: float = 0.1) -> float:
    """Wait after the ``attempts``-th failure: base·2^(n−1), capped, minus up to ``jitter``
    of it so retries of many deliveries spread out."""
    delay = min(base_s * 2 ** max(0, attempts - 1), max_s)
    return delay * (1 - random.random() * jitter)


# ---------------------------------------------------------------------------------- tenancy
def webhook_clause(p: Principal) -> ColumnElement[bool]:
    """Which subscriptions the caller may see and manage: its own, or all for the regulator."""
    if p.is_regulator:
        return true()
    if p.role == "firm":
        return Webhook.firm_id == p.firm_id
    return and_(Webhook.use_unit_id == p.use_unit_id, Webhook.firm_id.is_(None))


def webhooks(access: Access, *, channels: bool = False) -> Select[Any]:
    """Subscriptions in the caller's scope: webhooks, or (``channels``) WeCom/DingTalk/e-mail/SMS."""
    kind = Webhook.kind != WEBHOOK_KIND if channels else Webhook.kind == WEBHOOK_KIND
    return select(Webhook).where(webhook_clause(access.p), kind)


def webhook(access: Access, webhook_id: int, *, channels: bool = False) -> Webhook:
    """One subscription in scope, or :class:`NotVisible` (the API answers 404)."""
    w = access.s.scalar(webhooks(access, channels=channels).where(Webhook.id == webhook_id))
    if w is None:
        raise NotVisible("channel" if channels else "webhook", webhook_id)
    return w


def owner_of(p: Principal, firm_id: str | None, use_unit_id: str | None) -> tuple[str | None, str | None]:
    """Whose a new subscription is: firms and owners subscribe for themselves; the regulator for
    itself (both None) or on behalf of a firm or owner it names."""
    if p.role == "firm":
        return p.firm_id, None
    if p.role == "owner":
        return None, p.use_unit_id
    if firm_id and use_unit_id:
        raise ValueError("a webhook belongs to a firm or to an owner, not both")
    return firm_id, use_unit_id


def audience(w: Webhook) -> str:
    """``regulator``, ``firm`` or ``owner``."""
    return "firm" if w.firm_id else "owner" if w.use_unit_id else "regulator"


def wants(w: Webhook, *, firm_id: str | None, use_unit_id: str | None, event: str, severity: str, at: datetime) -> bool:
    """Whether a transition (of a device with this firm and owner, recorded at ``at``) goes to ``w``.

    Firms get their devices' transitions, owners theirs, the regulator every device's; then the
    severity filters (``min_severity``, and a channel's ``severities`` list) and the event filter
    apply. Transitions older than the subscription are not sent.
    """
    if not w.active or as_utc(at) < as_utc(w.created_at):
        return False
    if w.firm_id is not None and w.firm_id != firm_id:
        return False
    if w.firm_id is None and w.use_unit_id is not None and w.use_unit_id != use_unit_id:
        return False
    if w.min_severity is not None and SEVERITY_RANK.get(severity, 99) > SEVERITY_RANK.get(w.min_severity, 99):
        return False
    if w.severities is not None and severity not in w.severities:
        return False
    return w.events is None or event in w.events
