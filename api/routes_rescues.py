"""``/rescues``: trapped-passenger rescues, their steps and the city's rescue KPIs.

A rescue is opened for every trapped-passenger alarm; the firm records ``dispatch`` (with the
Guangzhou 96333 tier: own firm, nearest rescue station, fire service), ``arrive`` and
``release`` (with the cause). Owners read; another tenant's rescue answers 404.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from semon.api.auth import AccessDep, OperatorDep
from semon.api.deps import Limit, Offset
from semon.api.listing import page, parse_sort
from semon.api.openapi import problem_responses
from semon.api.problems import ProblemException, invalid_parameter
from semon.api.routes_maintenance import current_policy
from semon.api.schemas import AlarmEventOut, PageMeta, UtcDatetime
from semon.rules.maintenance.policy import default_policy_path, load_policy
from semon.rules.rescue import kpis as rk
from semon.rules.rescue.service import (
    RescueCauseInvalid,
    RescueConflict,
    RescueTimeInvalid,
    Step,
    record_step,
    rescue,
    rescue_causes,
    rescue_events,
    rescues,
)
from semon.store.access import Principal
from semon.store.models import Device
from semon.store.rescue import Rescue
from semon.timeutil import TimeParseError, as_utc, from_ms, parse_time, utc_now

router = APIRouter(prefix="/rescues", tags=["rescues"])

Tier = Literal["own_firm", "rescue_station", "fire_service"]
# Causes are the maintenance policy's list (a configuration file), checked when a release is
# recorded; the schema shows the packaged default's.
_DEFAULT_CAUSES = rescue_causes(load_policy(default_policy_path()))

_RESCUE_EXAMPLE: dict[str, Any] = {
    "id": 17, "alarm_id": 1842, "device_id": "gz-el-00042", "firm_id": "F-GZ-017", "district": "Tianhe",
    "status": "arrived", "alarm_at": "2024-05-01T08:00:20Z", "tier": "own_firm", "responder": "Wang Wei",
    "dispatched_at": "2024-05-01T08:02:05Z", "dispatched_by": "f017-desk", "arrived_at": "2024-05-01T08:14:40Z",
    "arrived_by": "f017-desk", "released_at": None, "released_by": None, "cause": None, "arrival_breached": False,
    "breach_escalated_at": None, "notes": [], "dispatch_s": 105.0, "arrival_s": 860.0, "release_s": None,
}  # fmt: skip


class RescueStatus(StrEnum):
    """Where a rescue stands."""

    open = "open"
    dispatched = "dispatched"
    arrived = "arrived"
    released = "released"


class RescueOut(BaseModel):
    """A rescue record; ``*_s`` are seconds from the alarm (release: from the arrival)."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_RESCUE_EXAMPLE]})
    id: int
    alarm_id: int
    device_id: str
    firm_id: str | None
    district: str | None
    status: RescueStatus
    alarm_at: UtcDatetime
    tier: str | None
    responder: str | None
    dispatched_at: UtcDatetime | None
    dispatched_by: str | None
    arrived_at: UtcDatetime | None
    arrived_by: str | None
    released_at: UtcDatetime | None
    released_by: str | None
    cause: str | None
    arrival_breached: bool = Field(description="arrival later than the limit (30 min), or escalated for it")
    breach_escalated_at: UtcDatetime | None
    notes: list[dict[str, Any]]
    dispatch_s: float | None
    arrival_s: float | None
    release_s: float | None = Field(description="on-site time, arrival → release")


class RescueDetail(RescueOut):
    """A rescue with every transition of its alarm (raise, steps, escalations, clear…)."""

    events: list[AlarmEventOut]


class RescuePage(PageMeta):
    """One page of rescues."""

    items: list[RescueOut]


class StepIn(BaseModel):
    """A step; ``at`` defaults to now (enter it when recording afterwards)."""

    model_config = ConfigDict(extra="forbid")
    at: datetime | None = Field(None, description="when it happened (ISO-8601; naive = UTC)")
    note: str | None = Field(None, max_length=1000)
    actor: str | None = Field(
        None, min_length=1, max_length=64, description="ignored with an API key (its name is used); demo mode only"
    )


class DispatchIn(StepIn):
    """Who was sent, and from which 96333 tier."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tier": "own_firm",
                                                                               "responder": "Wang Wei"}]})  # fmt: skip
    tier: Tier = "own_firm"
    responder: str | None = Field(None, max_length=100, description="technician or team sent")


class ArriveIn(StepIn):
    """Arrival on site (``tier`` if another tier took over on the way)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})
    tier: Tier | None = None


class ReleaseIn(StepIn):
    """Passengers out; the cause of the entrapment."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"cause": "equipment"}]})
    cause: str = Field(
        "unknown", min_length=1, max_length=32, examples=list(_DEFAULT_CAUSES),
        description="a cause the maintenance policy names (default policy: " + ", ".join(_DEFAULT_CAUSES) + ")",
    )  # fmt: skip


class Period(StrEnum):
    """KPI period."""

    day = "day"
    week = "week"
    month = "month"


class KpiRow(BaseModel):
    """KPIs of one group; times in minutes; rates are shares 0–1 (null: nothing to measure)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "firm_id": "F-GZ-017", "period": "2024-05-01", "days": 1.0, "entrapments": 3, "elevators": 1200,
        "entrapments_per_10k_elevators_per_day": 25.0, "dispatch_min_mean": 2.1, "dispatch_min_p90": 2.8,
        "arrival_min_mean": 14.2, "arrival_min_p90": 21.0, "release_min_mean": 6.5, "release_min_p90": 8.0,
        "total_min_mean": 20.7, "total_min_p90": 28.1, "response_rate": 0.667, "arrival_rate": 1.0,
        "arrival_breaches": 0, "causes": {"external": 2, "equipment": 1}, "tiers": {"own_firm": 3},
    }]})  # fmt: skip
    firm_id: str | None = None
    district: str | None = None
    period: str | None = Field(None, description="first day of the period (local calendar)")
    days: float
    entrapments: int
    elevators: int
    entrapments_per_10k_elevators_per_day: float | None
    dispatch_min_mean: float | None
    dispatch_min_p90: float | None
    arrival_min_mean: float | None
    arrival_min_p90: float | None
    release_min_mean: float | None = Field(description="on site: arrival → release")
    release_min_p90: float | None
    total_min_mean: float | None
    total_min_p90: float | None
    response_rate: float | None = Field(description="share dispatched within the response limit (3 min)")
    arrival_rate: float | None = Field(description="share arrived within the arrival limit (30 min)")
    arrival_breaches: int
    causes: dict[str, int]
    tiers: dict[str, int]


class KpiOut(BaseModel):
    """Rescue KPIs of the caller's equipment."""

    since: UtcDatetime
    until: UtcDatetime
    group_by: list[str]
    period: str
    timezone: str
    response_limit_s: float
    arrival_limit_s: float
    rows: list[KpiRow]


def _secs(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return (as_utc(b) - as_utc(a)).total_seconds()


def _out(r: Rescue, district: str | None) -> dict[str, Any]:
    data = {c: getattr(r, c) for c in RescueOut.model_fields if hasattr(r, c)}
    data.update(
        district=district, notes=r.notes or [], dispatch_s=_secs(r.alarm_at, r.dispatched_at),
        arrival_s=_secs(r.alarm_at, r.arrived_at), release_s=_secs(r.arrived_at, r.released_at),
    )  # fmt: skip
    return data


def _when(name: str, value: str | None, default: datetime) -> datetime:
    if value is None:
        return default
    try:
        return from_ms(parse_time(value))
    except TimeParseError as e:
        raise invalid_parameter(name, str(e)) from e


_SORT = {"id": Rescue.id, "alarm_at": Rescue.alarm_at, "status": Rescue.status, "firm_id": Rescue.firm_id,
         "device_id": Rescue.device_id}  # fmt: skip


@router.get("", response_model=RescuePage, summary="List rescues", responses=problem_responses())
def list_rescues(
    access: AccessDep,
    status: Annotated[RescueStatus | None, Query()] = None,
    firm_id: Annotated[str | None, Query(max_length=64)] = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    breached: Annotated[bool | None, Query(description="only arrival breaches (true) or the others")] = None,
    since: Annotated[str | None, Query(description="alarm at or after (ISO-8601 or epoch ms)")] = None,
    until: Annotated[str | None, Query(description="alarm before")] = None,
    sort: Annotated[str, Query(description=f"keys, '-' for descending: {', '.join(_SORT)}")] = "-alarm_at",
    limit: Limit = 100,
    offset: Offset = 0,
) -> RescuePage:
    """Rescues of the caller's equipment, newest alarm first."""
    stmt = rescues(access).add_columns(Device.district).join(Device, Device.id == Rescue.device_id)
    for col, value in ((Rescue.status, status.value if status else None), (Rescue.firm_id, firm_id),
                       (Rescue.device_id, device_id)):  # fmt: skip
        if value is not None:
            stmt = stmt.where(col == value)
    if breached is not None:
        stmt = stmt.where(Rescue.arrival_breached.is_(breached))
    if since is not None:
        stmt = stmt.where(Rescue.alarm_at >= _when("since", since, utc_now()))
    if until is not None:
        stmt = stmt.where(Rescue.alarm_at < _when("until", until, utc_now()))
    total, rows = page(access.s, stmt, parse_sort(sort, _SORT, Rescue.id.desc()), limit, offset)
    return RescuePage(items=[RescueOut(**_out(r, d)) for r, d in rows], total=total, limit=limit, offset=offset)


@router.get("/kpis", response_model=KpiOut, summary="Rescue KPIs", responses=problem_responses())
def rescue_kpis(
    request: Request,
    access: AccessDep,
    group_by: Annotated[
        str, Query(description="comma-separated: firm, district, period (empty = one row)", examples=["firm,period"])
    ] = "",
    period: Annotated[Period, Query(description="period length when grouping by period")] = Period.day,
    since: Annotated[str | None, Query(description="alarms at or after (default: 30 days ago)")] = None,
    until: Annotated[str | None, Query(description="alarms before (default: now)")] = None,
) -> KpiOut:
    """Mean / p90 dispatch, arrival, on-site release and total times; 3-min response and 30-min
    arrival rates; entrapments per 10,000 elevators per day; causes and tiers — of the caller's
    equipment, by firm, district and/or period."""
    cfg = request.app.state.settings
    now = utc_now()
    until_dt = _when("until", until, now)
    since_dt = _when("since", since, until_dt - timedelta(days=30))
    dims = [g.strip() for g in group_by.split(",") if g.strip()]
    try:
        q = rk.KpiQuery(
            since=since_dt, until=until_dt, group_by=dims, period=period.value, timezone=cfg.timezone,
            response_limit_s=cfg.rescue_response_limit_s, arrival_limit_s=cfg.rescue_arrival_limit_s, now=now,
        )  # fmt: skip
    except ValueError as e:
        raise invalid_parameter("group_by" if "group" in str(e) else "until", str(e)) from e
    rows = rk.rescue_kpis(access, q)
    return KpiOut(
        since=since_dt, until=until_dt, group_by=dims, period=period.value, timezone=cfg.timezone,
        response_limit_s=cfg.rescue_response_limit_s, arrival_limit_s=cfg.rescue_arrival_limit_s,
        rows=[KpiRow(**r) for r in rows],
    )  # fmt: skip


RescueId = Annotated[int, Path(ge=1, le=2**63 - 1, description="rescue id", examples=[17])]


@router.get("/{rescue_id}", response_model=RescueDetail, summary="One rescue", responses=problem_responses(
    {404: "unknown rescue"}))  # fmt: skip
def get_rescue(access: AccessDep, rescue_id: RescueId) -> RescueDetail:
    """A rescue and its alarm's transitions."""
    r = rescue(access, rescue_id)
    district = access.s.scalar(select(Device.district).where(Device.id == r.device_id))
    events = [AlarmEventOut.model_validate(e) for e in rescue_events(access, r)]
    return RescueDetail(**_out(r, district), events=events)


def _step(request: Request, access: AccessDep, who: Principal, rescue_id: int, step: str, body: StepIn) -> RescueOut:
    actor = body.actor if who.is_anonymous and body.actor else who.name
    fields = Step(
        at=body.at, note=body.note, tier=getattr(body, "tier", None), responder=getattr(body, "responder", None),
        cause=getattr(body, "cause", None),
    )  # fmt: skip
    try:
        r = record_step(access, rescue_id, step, actor, fields, request.app.state.settings.rescue_arrival_limit_s,
                        rescue_causes(current_policy()))  # fmt: skip
    except RescueCauseInvalid as e:
        raise invalid_parameter("cause", str(e)) from e
    except RescueConflict as e:
        raise ProblemException(409, str(e), slug="rescue-state-conflict", title="Rescue state conflict") from e
    except RescueTimeInvalid as e:
        raise invalid_parameter("at", str(e)) from e
    district = access.s.scalar(select(Device.district).where(Device.id == r.device_id))
    return RescueOut(**_out(r, district))


_STEP_RESPONSES = problem_responses(
    {403: "owners read only", 404: "unknown rescue", 409: "steps go dispatch → arrive → release",
     422: "step time before the previous step or in the future"}
)  # fmt: skip


@router.post("/{rescue_id}/dispatch", response_model=RescueOut, summary="Record the dispatch",
             operation_id="record_rescue_dispatch", responses=_STEP_RESPONSES)  # fmt: skip
def dispatch(request: Request, access: AccessDep, who: OperatorDep, rescue_id: RescueId,
            body: Annotated[DispatchIn, Body(default_factory=DispatchIn)]) -> RescueOut:
    """Someone is on the way (96333 tier and responder); an ``alarm_events`` row ``dispatched``."""
    return _step(request, access, who, rescue_id, "dispatch", body)


@router.post("/{rescue_id}/arrive", response_model=RescueOut, summary="Record the arrival",
             operation_id="record_rescue_arrival", responses=_STEP_RESPONSES)  # fmt: skip
def arrive(request: Request, access: AccessDep, who: OperatorDep, rescue_id: RescueId,
            body: Annotated[ArriveIn, Body(default_factory=ArriveIn)]) -> RescueOut:
    """On site; later than the arrival limit (30 min) after the alarm is flagged as a breach."""
    return _step(request, access, who, rescue_id, "arrive", body)


@router.post("/{rescue_id}/release", response_model=RescueOut, summary="Record the release",
             operation_id="record_rescue_release", responses=_STEP_RESPONSES)  # fmt: skip
def release(request: Request, access: AccessDep, who: OperatorDep, rescue_id: RescueId,
            body: Annotated[ReleaseIn, Body(default_factory=ReleaseIn)]) -> RescueOut:
    """Passengers out, with the cause (one the maintenance policy names: equipment, its external causes, unknown)."""
    return _step(request, access, who, rescue_id, "release", body)
