"""``/channels``: a firm's (or owner's, or the regulator's) WeCom, DingTalk, e-mail and SMS
alert channels, per severity, and their deliveries.

A channel is a kind of outbox target (a ``webhooks`` row with its own ``kind``), so it has the
tenancy of webhooks — each caller manages its own, the regulator anyone's, another tenant's
answers 404 — and the same deliveries, retries and dead state. Credentials (robot key, DingTalk
secret, SMTP password, SMS AccessKey secret) are sealed at rest and never shown again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from semon.api.auth import AccessDep, PrincipalDep
from semon.api.deps import Limit, Offset
from semon.api.listing import page
from semon.api.openapi import problem_responses
from semon.api.problems import ProblemException
from semon.api.routes_webhooks import (
    DeliveryCounts,
    DeliveryPage,
    DeliveryQueryDep,
    Redelivered,
    RedeliverIn,
    Severity,
    apply_patch,
    check_events,
    deliveries_page,
    delivery_counts,
    remove,
    seal,
    subscriber,
    target_refused,
)
from semon.api.schemas import PageMeta, UtcDatetime
from semon.contract.schema_export import ALARM_EVENTS
from semon.notify import outbox
from semon.notify.channels import CHANNELS
from semon.notify.channels.email import smtp_url
from semon.notify.webhooks import audience, webhook, webhooks
from semon.store.notify_models import Webhook
from semon.timeutil import utc_now

router = APIRouter(prefix="/channels", tags=["channels"])

ChannelKind = Literal["wecom", "dingtalk", "email", "sms"]
# What a channel gets when created without an event filter: what a dispatcher acts on, not every
# comment or assignment (it can ask for more).
CHANNEL_DEFAULT_EVENTS = ["raised", "escalated", "cleared"]
_EXAMPLE_IN: dict[str, Any] = {
    "kind": "dingtalk", "description": "调度群 dispatch group", "severities": ["critical", "major"],
    "settings": {"at_mobiles": ["13800000000"]}, "credentials": {"access_token": "3f5c…", "secret": "SEC9a1…"},
}  # fmt: skip


class ChannelIn(BaseModel):
    """A new channel. ``settings`` and ``credentials`` depend on ``kind`` (docs/alerts.md):
    wecom ``{mentioned_mobiles}`` / ``{key}``; dingtalk ``{at_mobiles}`` / ``{access_token,
    secret}``; email ``{host, port, username, sender, recipients}`` / ``{password}``; sms
    ``{provider, access_key_id, sign_name, template_code, phone_numbers, region_id}`` /
    ``{access_key_secret}``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE_IN]})
    kind: ChannelKind
    description: str = Field("", max_length=200)
    active: bool = True
    severities: list[Severity] | None = Field(None, max_length=4, description="only these severities (null = all)")
    events: list[str] | None = Field(
        None, max_length=len(ALARM_EVENTS), description="only these transitions (null = raised, escalated, cleared)"
    )
    url: str | None = Field(
        None, min_length=8, max_length=2000, description="the service's address (default: its public one)"
    )
    settings: dict[str, Any] = Field(default_factory=dict)
    credentials: dict[str, Any] = Field(default_factory=dict)
    firm_id: str | None = Field(None, max_length=64, description="regulator only: on behalf of this firm")
    use_unit_id: str | None = Field(None, max_length=64, description="regulator only: on behalf of this owner")

    _events = field_validator("events")(check_events)


class ChannelPatch(BaseModel):
    """Changes to a channel; left out = unchanged. ``settings`` / ``credentials`` are replaced whole."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"severities": ["critical"]}]})
    description: str | None = Field(None, max_length=200)
    active: bool | None = None
    severities: list[Severity] | None = Field(None, max_length=4)
    events: list[str] | None = Field(None, max_length=len(ALARM_EVENTS))
    url: str | None = Field(None, min_length=8, max_length=2000)
    settings: dict[str, Any] | None = None
    credentials: dict[str, Any] | None = None

    _events = field_validator("events")(check_events)


class ChannelOut(BaseModel):
    """A channel (its credentials are never shown)."""

    id: int
    kind: ChannelKind
    audience: Literal["regulator", "firm", "owner"]
    firm_id: str | None
    use_unit_id: str | None
    url: str
    active: bool
    severities: list[str] | None
    events: list[str] | None
    settings: dict[str, Any]
    description: str
    created_by: str
    created_at: UtcDatetime
    updated_at: UtcDatetime
    deliveries: DeliveryCounts


class ChannelPage(PageMeta):
    """One page of channels."""

    items: list[ChannelOut]


def _valid(kind: str, part: Literal["settings", "credentials"], value: dict[str, Any]) -> dict[str, Any]:
    model = getattr(CHANNELS[kind], part)
    try:
        return model.model_validate(value).model_dump(exclude_none=True)
    except ValidationError as e:
        errors = [{"loc": ["body", part, *map(str, err["loc"])], "msg": err["msg"]} for err in e.errors()]
        raise ProblemException(
            422, f"{kind} {part}: " + "; ".join(f"{'.'.join(x['loc'][2:]) or part}: {x['msg']}" for x in errors),
            slug="invalid-parameter", title="Invalid request parameter", extra={"errors": errors},
        ) from e  # fmt: skip


def _address(request: Request, kind: str, url: str | None, settings: dict[str, Any]) -> str:
    """Where the channel sends; checked like a webhook URL (the same policy, the same pinning)."""
    if kind == "email":
        if url is not None:
            raise ProblemException(422, "an e-mail channel takes its relay from settings.host and settings.port",
                                   slug="invalid-parameter", title="Invalid request parameter")  # fmt: skip
        address = smtp_url(settings)
    else:
        address = url or str(CHANNELS[kind].default_url)
    if kind == "email":
        target_refused(request, address, ("body", "settings", "host"), ("smtp",))
    else:
        target_refused(request, address)
    return address


def _out(w: Webhook, counts: DeliveryCounts) -> ChannelOut:
    return ChannelOut(
        id=w.id, kind=w.kind, audience=audience(w), firm_id=w.firm_id, use_unit_id=w.use_unit_id, url=w.url,
        active=w.active, severities=w.severities, events=w.events, settings=w.config or {},
        description=w.description, created_by=w.created_by, created_at=w.created_at, updated_at=w.updated_at,
        deliveries=counts,
    )  # fmt: skip


def _sealed(request: Request, credentials: dict[str, Any]) -> str:
    return seal(request, orjson.dumps(credentials).decode())


_C404 = problem_responses({404: "unknown channel"})
ChannelId = Annotated[int, Path(ge=1, le=2**63 - 1, description="channel id", examples=[5])]


@router.post(
    "",
    response_model=ChannelOut,
    status_code=201,
    summary="Add an alert channel",
    responses=problem_responses({404: "unknown firm or owner", 422: "bad settings, credentials or target"}),
)
def create_channel(request: Request, access: AccessDep, who: PrincipalDep, body: ChannelIn) -> ChannelOut:
    """Add a WeCom / DingTalk / e-mail / SMS channel for the caller (the regulator: for itself or
    a firm or owner it names), for the severities listed."""
    firm_id, use_unit_id = subscriber(access, who, body.firm_id, body.use_unit_id)
    settings = _valid(body.kind, "settings", body.settings)
    credentials = _valid(body.kind, "credentials", body.credentials)
    url = _address(request, body.kind, body.url, settings)
    now = utc_now()
    w = Webhook(
        kind=body.kind, firm_id=firm_id, use_unit_id=use_unit_id, url=url, secret=_sealed(request, credentials),
        config=settings, active=body.active, severities=body.severities,
        events=body.events if body.events is not None else list(CHANNEL_DEFAULT_EVENTS),
        description=body.description, created_by=who.name, created_at=now, updated_at=now,
    )  # fmt: skip
    access.s.add(w)
    access.s.flush()
    return _out(w, DeliveryCounts())


@router.get("", response_model=ChannelPage, summary="List alert channels", responses=problem_responses())
def list_channels(
    access: AccessDep,
    kind: Annotated[ChannelKind | None, Query(description="only this kind")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> ChannelPage:
    """The caller's channels (the regulator: everyone's), oldest first."""
    stmt = webhooks(access, channels=True)
    if kind is not None:
        stmt = stmt.where(Webhook.kind == kind)
    total, rows = page(access.s, stmt, [Webhook.id], limit, offset)
    items = [r[0] for r in rows]
    counts = delivery_counts(access, [w.id for w in items])
    return ChannelPage(items=[_out(w, counts[w.id]) for w in items], total=total, limit=limit, offset=offset)


@router.get("/{channel_id}/deliveries", response_model=DeliveryPage, summary="Deliveries of a channel", responses=_C404)
def list_channel_deliveries(access: AccessDep, channel_id: ChannelId, q: DeliveryQueryDep) -> DeliveryPage:
    """What went (or did not go) to this channel, newest first, with each attempt's last error."""
    return deliveries_page(access, webhook(access, channel_id, channels=True), q)


@router.post(
    "/{channel_id}/redeliver", response_model=Redelivered, summary="Send a channel's dead deliveries again",
    responses=_C404,
)  # fmt: skip
def redeliver_channel(access: AccessDep, channel_id: ChannelId, body: RedeliverIn) -> Redelivered:
    """Make every dead (or delivered) delivery of the channel due again now."""
    w = webhook(access, channel_id, channels=True)
    return Redelivered(redelivered=outbox.redeliver(access.s, w.id, None, body.status))


@router.get("/{channel_id}", response_model=ChannelOut, summary="One alert channel", responses=_C404)
def get_channel(access: AccessDep, channel_id: ChannelId) -> ChannelOut:
    """A channel with its delivery counts."""
    w = webhook(access, channel_id, channels=True)
    return _out(w, delivery_counts(access, [w.id])[w.id])


@router.patch("/{channel_id}", response_model=ChannelOut, summary="Change an alert channel", responses=_C404)
def update_channel(request: Request, access: AccessDep, channel_id: ChannelId, body: ChannelPatch) -> ChannelOut:
    """Change severities, events, recipients, credentials or pause it (deliveries wait)."""
    w = webhook(access, channel_id, channels=True)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("settings") is not None:
        w.config = _valid(w.kind, "settings", changes["settings"])
    if changes.get("credentials") is not None:
        w.secret = _sealed(request, _valid(w.kind, "credentials", changes["credentials"]))
    if "url" in changes or changes.get("settings") is not None:
        w.url = _address(request, w.kind, changes.get("url") or (None if w.kind == "email" else w.url), w.config or {})
    apply_patch(access, w, changes, given=("active", "description"), clearable=("severities", "events"))
    return _out(w, delivery_counts(access, [w.id])[w.id])


@router.delete("/{channel_id}", status_code=204, summary="Delete an alert channel", responses=_C404)
def delete_channel(access: AccessDep, channel_id: ChannelId) -> Response:
    """Remove a channel and its delivery history."""
    return remove(access, webhook(access, channel_id, channels=True))
