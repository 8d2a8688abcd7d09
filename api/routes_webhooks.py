"""``/webhooks``: subscriptions of firms, owners and the regulator, and their deliveries.

Each caller manages its own subscriptions (the regulator may manage anyone's); another tenant's
subscription answers 404. Deliveries are listed per subscription with their status — ``pending``
(waiting for its next attempt), ``delivered`` or ``dead`` (gave up after
``SEMON_WEBHOOK_MAX_ATTEMPTS`` failures) — and can be sent again by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, func, select

from semon.api.auth import AccessDep, PrincipalDep
from semon.api.deps import Limit, Offset
from semon.api.listing import page, parse_sort
from semon.api.openapi import problem_responses
from semon.api.problems import ProblemException
from semon.api.schemas import PageMeta, UtcDatetime
from semon.contract.schema_export import ALARM_EVENTS
from semon.notify import outbox
from semon.notify.sealed import Sealer, SecretKeyError
from semon.notify.targets import TargetPolicy, TargetRefused, check_target
from semon.notify.webhooks import (
    REGULATOR_DEFAULT_EVENTS,
    audience,
    idempotency_key,
    new_secret,
    owner_of,
    webhook,
    webhooks,
)
from semon.store.access import Access, NotVisible, Principal
from semon.store.models import Firm, UseUnit
from semon.store.notify_models import Webhook, WebhookDelivery
from semon.timeutil import utc_now

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

Severity = Literal["critical", "major", "minor", "warning"]
_EXAMPLE_IN: dict[str, Any] = {
    "url": "https://ops.f001.example/semon-hook", "min_severity": "major", "description": "dispatch desk",
}


def check_events(v: list[str] | None) -> list[str] | None:
    """Validator of an ``events`` filter: only known transition names."""
    if v is not None:
        unknown = sorted(set(v) - set(ALARM_EVENTS))
        if unknown:
            raise ValueError(f"unknown event(s) {', '.join(unknown)}; known: {', '.join(ALARM_EVENTS)}")
    return v


class WebhookIn(BaseModel):
    """A new subscription. Firms and owners subscribe for themselves; the regulator for itself
    (escalations by default) or, naming ``firm_id`` or ``use_unit_id``, for a firm or owner."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE_IN]})
    url: str = Field(min_length=8, max_length=2000, description="http(s) endpoint receiving POSTs")
    secret: str | None = Field(
        None, min_length=16, max_length=200, description="HMAC key; generated (and returned once) when omitted"
    )
    active: bool = True
    min_severity: Severity | None = Field(None, description="only transitions at least this severe")
    events: list[str] | None = Field(
        None, max_length=len(ALARM_EVENTS), description="only these transitions (null = all; regulator: escalated)"
    )
    description: str = Field("", max_length=200)
    firm_id: str | None = Field(None, max_length=64, description="regulator only: subscribe on behalf of this firm")
    use_unit_id: str | None = Field(None, max_length=64, description="regulator only: on behalf of this owner")

    _events = field_validator("events")(check_events)


class WebhookPatch(BaseModel):
    """Changes to a subscription; a field left out stays as it is (``null`` clears a filter)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"active": False}]})
    url: str | None = Field(None, min_length=8, max_length=2000)
    secret: str | None = Field(None, min_length=16, max_length=200)
    active: bool | None = None
    min_severity: Severity | None = None
    events: list[str] | None = Field(None, max_length=len(ALARM_EVENTS))
    description: str | None = Field(None, max_length=200)

    _events = field_validator("events")(check_events)


class DeliveryCounts(BaseModel):
    """Deliveries of a subscription by status."""

    pending: int = 0
    delivered: int = 0
    dead: int = 0


class WebhookOut(BaseModel):
    """A subscription (its secret is shown only when created)."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [{
            "id": 3, "audience": "firm", "firm_id": "F001", "use_unit_id": None, **_EXAMPLE_IN, "active": True,
            "events": None, "created_by": "f001-dispatch", "created_at": "2024-05-01T08:00:00Z",
            "updated_at": "2024-05-01T08:00:00Z", "deliveries": {"pending": 0, "delivered": 41, "dead": 1},
        }]},
    )  # fmt: skip
    id: int
    audience: Literal["regulator", "firm", "owner"]
    firm_id: str | None
    use_unit_id: str | None
    url: str
    active: bool
    min_severity: str | None
    events: list[str] | None
    description: str
    created_by: str
    created_at: UtcDatetime
    updated_at: UtcDatetime
    deliveries: DeliveryCounts


class WebhookCreated(WebhookOut):
    """A new subscription with its signing secret — keep it: it is not shown again."""

    secret: str


class WebhookPage(PageMeta):
    """One page of subscriptions."""

    items: list[WebhookOut]


class DeliveryStatus(StrEnum):
    """Where a delivery stands."""

    pending = "pending"
    delivered = "delivered"
    dead = "dead"


class DeliveryOut(BaseModel):
    """One transition to one subscription."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [{
            "id": 812, "webhook_id": 3, "event_id": 90817, "idempotency_key": "semon-evt90817-wh3", "status": "dead",
            "attempts": 25, "next_attempt_at": "2024-05-01T08:12:00Z", "last_attempt_at": "2024-05-01T08:11:30Z",
            "last_status_code": 503, "last_error": "HTTP 503: upstream unavailable",
            "created_at": "2024-05-01T08:00:00Z", "delivered_at": None, "dead_at": "2024-05-01T08:11:30Z",
            "payload": {"event_id": 90817, "event": "raised", "device_id": "gz-el-00042"},
        }]},
    )  # fmt: skip
    id: int
    webhook_id: int
    event_id: int
    idempotency_key: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: UtcDatetime
    last_attempt_at: UtcDatetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: UtcDatetime
    delivered_at: UtcDatetime | None
    dead_at: UtcDatetime | None
    payload: dict[str, Any] = Field(description="the body sent (schemas/alarm.json)")


class DeliveryPage(PageMeta):
    """One page of deliveries, newest first."""

    items: list[DeliveryOut]


class RedeliverIn(BaseModel):
    """Which deliveries of the subscription to send again (each with a fresh attempt budget)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "dead"}]})
    status: Literal["dead", "delivered"] = Field("dead", description="every delivery in this status")


class Redelivered(BaseModel):
    """How many deliveries are due again."""

    redelivered: int


# ------------------------------------------------------------------------------------ helpers
def delivery_counts(access: Access, ids: list[int]) -> dict[int, DeliveryCounts]:
    """Deliveries by status of each webhook or channel id."""
    out = {i: DeliveryCounts() for i in ids}
    if ids:
        rows = access.s.execute(
            select(WebhookDelivery.webhook_id, WebhookDelivery.status, func.count())
            .where(WebhookDelivery.webhook_id.in_(ids))
            .group_by(WebhookDelivery.webhook_id, WebhookDelivery.status)
        )
        for wid, status, n in rows:
            setattr(out[wid], status, n)
    return out


def _out(w: Webhook, counts: DeliveryCounts) -> WebhookOut:
    return WebhookOut(
        id=w.id, audience=audience(w), firm_id=w.firm_id, use_unit_id=w.use_unit_id, url=w.url, active=w.active,
        min_severity=w.min_severity, events=w.events, description=w.description, created_by=w.created_by,
        created_at=w.created_at, updated_at=w.updated_at, deliveries=counts,
    )  # fmt: skip


def _delivery(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut.model_validate(
        {**{c: getattr(d, c) for c in DeliveryOut.model_fields if hasattr(d, c)},
         "idempotency_key": idempotency_key(d.event_id, d.webhook_id)}
    )  # fmt: skip


def target_refused(
    request: Request, url: str, loc: tuple[str, ...] = ("body", "url"), schemes: tuple[str, ...] = ("http", "https")
) -> None:
    """422 unless ``url`` passes the target check (semon.notify.targets) under the operator's policy."""
    try:
        check_target(url, TargetPolicy.from_settings(request.app.state.settings), schemes)
    except TargetRefused as e:
        raise ProblemException(
            422, str(e), slug="webhook-target-refused", title="Webhook URL refused",
            extra={"errors": [{"loc": list(loc), "msg": str(e)}]},
        ) from e  # fmt: skip


def subscriber(
    access: Access, who: Principal, firm_id: str | None, use_unit_id: str | None
) -> tuple[str | None, str | None]:
    """Whose a new webhook or channel is (firm, owner; both None = the regulator's): 422 when a
    firm or owner names someone else, 404 for an unknown firm or owner."""
    if not who.is_regulator and (firm_id or use_unit_id):
        raise ProblemException(
            422, "only the regulator subscribes on behalf of a firm or owner", slug="invalid-parameter",
            title="Invalid request parameter",
        )  # fmt: skip
    try:
        firm_id, use_unit_id = owner_of(who, firm_id, use_unit_id)
    except ValueError as e:
        raise ProblemException(422, str(e), slug="invalid-parameter", title="Invalid request parameter") from e
    if firm_id and access.s.get(Firm, firm_id) is None:
        raise NotVisible("firm", firm_id)
    if use_unit_id and access.s.get(UseUnit, use_unit_id) is None:
        raise NotVisible("use unit", use_unit_id)
    return firm_id, use_unit_id


def apply_patch(
    access: Access, w: Webhook, changes: dict[str, Any], *, given: tuple[str, ...], clearable: tuple[str, ...]
) -> None:
    """Write a PATCH into a subscription (webhook or channel) and stamp it.

    ``given`` fields change only when sent non-null (null keeps them); ``clearable`` fields take
    whatever was sent, null included (a null filter means "every severity / event").
    """
    for name in given:
        if changes.get(name) is not None:
            setattr(w, name, changes[name])
    for name in clearable:
        if name in changes:
            setattr(w, name, changes[name])
    w.updated_at = utc_now()
    access.s.flush()


def remove(access: Access, w: Webhook) -> Response:
    """Delete a webhook or channel with its delivery history (204)."""
    access.s.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == w.id))
    access.s.execute(delete(Webhook).where(Webhook.id == w.id))
    return Response(status_code=204)


def seal(request: Request, secret: str) -> str:
    """A secret as stored; 503 in one line when ``SEMON_SECRET_KEY`` is missing."""
    try:
        return Sealer(request.app.state.settings.secret_key).seal(secret)
    except SecretKeyError as e:
        raise ProblemException(503, str(e), slug="secret-key-missing", title="Secrets cannot be stored") from e


_W404 = problem_responses({404: "unknown webhook"})
WebhookId = Annotated[int, Path(ge=1, le=2**63 - 1, description="webhook id", examples=[3])]


# ------------------------------------------------------------------------------------- routes
@router.post(
    "",
    response_model=WebhookCreated,
    status_code=201,
    summary="Subscribe a webhook",
    responses=problem_responses({404: "unknown firm or owner", 422: "bad URL, filter or scope"}),
)
def create_webhook(request: Request, access: AccessDep, who: PrincipalDep, body: WebhookIn) -> WebhookCreated:
    """Subscribe an endpoint to alarm transitions; the response carries the signing secret once."""
    firm_id, use_unit_id = subscriber(access, who, body.firm_id, body.use_unit_id)
    target_refused(request, body.url)
    events = body.events
    if events is None and firm_id is None and use_unit_id is None:
        events = list(REGULATOR_DEFAULT_EVENTS)
    now = utc_now()
    secret = body.secret or new_secret()
    w = Webhook(
        firm_id=firm_id, use_unit_id=use_unit_id, url=body.url, secret=seal(request, secret),
        active=body.active, min_severity=body.min_severity, events=events, description=body.description,
        created_by=who.name, created_at=now, updated_at=now,
    )  # fmt: skip
    access.s.add(w)
    access.s.flush()
    return WebhookCreated(**_out(w, DeliveryCounts()).model_dump(), secret=secret)


@router.get("", response_model=WebhookPage, summary="List webhooks", responses=problem_responses())
def list_webhooks(
    access: AccessDep,
    active: Annotated[bool | None, Query(description="only active (true) or paused (false) ones")] = None,
    firm_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> WebhookPage:
    """The caller's subscriptions (the regulator: everyone's), oldest first."""
    stmt = webhooks(access)
    if active is not None:
        stmt = stmt.where(Webhook.active.is_(active))
    if firm_id is not None:
        stmt = stmt.where(Webhook.firm_id == firm_id)
    total, rows = page(access.s, stmt, [Webhook.id], limit, offset)
    hooks = [r[0] for r in rows]
    counts = delivery_counts(access, [w.id for w in hooks])
    return WebhookPage(items=[_out(w, counts[w.id]) for w in hooks], total=total, limit=limit, offset=offset)


_DELIVERY_SORT = {"id": WebhookDelivery.id, "event_id": WebhookDelivery.event_id,
                  "next_attempt_at": WebhookDelivery.next_attempt_at, "attempts": WebhookDelivery.attempts}  # fmt: skip
DeliverySort = Annotated[str, Query(description=f"keys, '-' for descending: {', '.join(_DELIVERY_SORT)}")]


@dataclass(frozen=True)
class DeliveryQuery:
    """What a deliveries listing asks for: a status, one transition, the order and the page."""

    status: DeliveryStatus | None
    event_id: int | None
    sort: str
    limit: int
    offset: int


def delivery_query(
    status: Annotated[DeliveryStatus | None, Query(description="pending, delivered or dead")] = None,
    event_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="one transition's delivery")] = None,
    sort: DeliverySort = "-id",
    limit: Limit = 100,
    offset: Offset = 0,
) -> DeliveryQuery:
    """The query parameters of a webhook's or channel's deliveries listing (a FastAPI dependency)."""
    return DeliveryQuery(status, event_id, sort, limit, offset)


DeliveryQueryDep = Annotated[DeliveryQuery, Depends(delivery_query)]


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage, summary="Deliveries of a webhook", responses=_W404)
def list_deliveries(access: AccessDep, webhook_id: WebhookId, q: DeliveryQueryDep) -> DeliveryPage:
    """What went (or did not go) to this subscription, newest first; ``status=dead`` lists the
    deliveries that gave up."""
    return deliveries_page(access, webhook(access, webhook_id), q)


def deliveries_page(access: Access, w: Webhook, q: DeliveryQuery) -> DeliveryPage:
    """One page of a webhook's or channel's deliveries."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == w.id)
    if q.status is not None:
        stmt = stmt.where(WebhookDelivery.status == q.status.value)
    if q.event_id is not None:
        stmt = stmt.where(WebhookDelivery.event_id == q.event_id)
    order = parse_sort(q.sort, _DELIVERY_SORT, WebhookDelivery.id.desc())
    total, rows = page(access.s, stmt, order, q.limit, q.offset)
    return DeliveryPage(items=[_delivery(r[0]) for r in rows], total=total, limit=q.limit, offset=q.offset)


def _one_delivery(access: Access, webhook_id: int, delivery_id: int) -> WebhookDelivery:
    w = webhook(access, webhook_id)
    d = access.s.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.webhook_id == w.id)
    )
    if d is None:
        raise NotVisible("delivery", delivery_id)
    return d


DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="delivery id", examples=[812])]
_D404 = problem_responses({404: "unknown webhook or delivery"})


@router.get(
    "/{webhook_id}/deliveries/{delivery_id}", response_model=DeliveryOut, summary="One delivery", responses=_D404
)
def get_delivery(access: AccessDep, webhook_id: WebhookId, delivery_id: DeliveryId) -> DeliveryOut:
    """A delivery with its last error and the body it sends."""
    return _delivery(_one_delivery(access, webhook_id, delivery_id))


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryOut,
    summary="Send one delivery again",
    responses=_D404,
)
def redeliver_one(access: AccessDep, webhook_id: WebhookId, delivery_id: DeliveryId) -> DeliveryOut:
    """Make a delivery (dead, or already delivered) due now with a fresh attempt budget; it keeps
    its idempotency key."""
    d = _one_delivery(access, webhook_id, delivery_id)
    outbox.redeliver(access.s, webhook_id, [d.id])
    access.s.refresh(d)
    return _delivery(d)


@router.post(
    "/{webhook_id}/redeliver", response_model=Redelivered, summary="Send dead deliveries again", responses=_W404
)
def redeliver_all(access: AccessDep, webhook_id: WebhookId, body: RedeliverIn) -> Redelivered:
    """Make every dead (or every delivered) delivery of the subscription due again now."""
    w = webhook(access, webhook_id)
    return Redelivered(redelivered=outbox.redeliver(access.s, w.id, None, body.status))


# Registered last so the OpenAPI spec lists the sub-resources first (DELETE comes after them).
@router.get("/{webhook_id}", response_model=WebhookOut, summary="One webhook", responses=_W404)
def get_webhook(access: AccessDep, webhook_id: WebhookId) -> WebhookOut:
    """A subscription with its delivery counts."""
    w = webhook(access, webhook_id)
    return _out(w, delivery_counts(access, [w.id])[w.id])


@router.patch("/{webhook_id}", response_model=WebhookOut, summary="Change a webhook", responses=_W404)
def update_webhook(request: Request, access: AccessDep, webhook_id: WebhookId, body: WebhookPatch) -> WebhookOut:
    """Change URL, secret, filters or pause it (``active: false``: deliveries wait, none are lost)."""
    w = webhook(access, webhook_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("url"):
        target_refused(request, changes["url"])
    if changes.get("secret") is not None:
        changes["secret"] = seal(request, changes["secret"])
    given = ("url", "secret", "active", "description")
    apply_patch(access, w, changes, given=given, clearable=("min_severity", "events"))
    return _out(w, delivery_counts(access, [w.id])[w.id])


@router.delete("/{webhook_id}", status_code=204, summary="Delete a webhook", responses=_W404)
def delete_webhook(access: AccessDep, webhook_id: WebhookId) -> Response:
    """Remove a subscription and its delivery history."""
    return remove(access, webhook(access, webhook_id))
