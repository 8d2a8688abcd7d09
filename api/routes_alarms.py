"""``/alarms``: raised and cleared alarms with their transitions."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from sqlalchemy import select

from semon.api.auth import AccessDep, OperatorDep
from semon.api.deps import DbDep, Limit, Offset
from semon.api.listing import page, parse_sort, sort_query
from semon.api.openapi import problem_responses
from semon.api.problems import ProblemException, not_found
from semon.api.schemas import (
    AlarmAction,
    AlarmAssign,
    AlarmClear,
    AlarmComment,
    AlarmDetailOut,
    AlarmEventOut,
    AlarmOut,
    AlarmPage,
)
from semon.rules.alarms import AlarmConflict, AlarmNotFound, AlarmStore
from semon.store.access import Principal
from semon.store.models import Alarm, AlarmEvent

router = APIRouter(prefix="/alarms", tags=["alarms"])

_SORTABLE = {
    "id": Alarm.id,
    "start_ts": Alarm.start_ts,
    "onset_ts": Alarm.onset_ts,
    "end_ts": Alarm.end_ts,
    "severity": Alarm.severity,
    "type": Alarm.type,
    "device_id": Alarm.device_id,
    "firm_id": Alarm.firm_id,
    "created_at": Alarm.created_at,
    "updated_at": Alarm.updated_at,
}


class AlarmState(StrEnum):
    """Which alarms to list."""

    active = "active"
    cleared = "cleared"
    all = "all"


@router.get("", response_model=AlarmPage, summary="List alarms", responses=problem_responses())
def list_alarms(
    access: AccessDep,
    state: Annotated[AlarmState, Query(description="active, cleared or all")] = AlarmState.all,
    severity: Annotated[str | None, Query(examples=["critical"])] = None,
    type: Annotated[
        str | None, Query(description="alarm type", examples=["trapped_passenger"])
    ] = None,
    firm_id: Annotated[str | None, Query(description="maintenance firm id")] = None,
    device_id: Annotated[str | None, Query(examples=["EL-0001"])] = None,
    kind: Annotated[str | None, Query(description="elevator | vessel")] = None,
    sort: Annotated[str, sort_query(_SORTABLE, ["-start_ts", "severity,-start_ts"])] = "-start_ts",
    limit: Limit = 100,
    offset: Offset = 0,
) -> AlarmPage:
    """Alarms matching every given filter; newest raised first unless ``sort`` says otherwise."""
    # Newest id last among equal sort values: ids grow with raising order, like start_ts.
    order = parse_sort(sort, _SORTABLE, Alarm.id.desc())
    stmt = access.alarms()
    if state is AlarmState.active:
        stmt = stmt.where(Alarm.active.is_(True))
    elif state is AlarmState.cleared:
        stmt = stmt.where(Alarm.active.is_(False))
    for column, value in (
        (Alarm.severity, severity),
        (Alarm.type, type),
        (Alarm.firm_id, firm_id),
        (Alarm.device_id, device_id),
        (Alarm.kind, kind),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    total, rows = page(access.s, stmt, order, limit, offset)
    items = [AlarmOut.model_validate(row[0]) for row in rows]
    return AlarmPage(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/{alarm_id}",
    response_model=AlarmDetailOut,
    summary="One alarm with its transitions",
    responses=problem_responses({404: "unknown alarm"}),
)
def get_alarm(
    access: AccessDep, alarm_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="alarm id", examples=[42])]
) -> AlarmDetailOut:
    """The alarm and every transition recorded for it, in the order they were recorded."""
    alarm = access.alarm(alarm_id)
    events = access.s.scalars(
        select(AlarmEvent).where(AlarmEvent.alarm_id == alarm_id).order_by(AlarmEvent.id)
    ).all()
    base = AlarmOut.model_validate(alarm).model_dump(exclude={"start_iso", "end_iso"})
    return AlarmDetailOut(**base, events=[AlarmEventOut.model_validate(e) for e in events])


def _act(db: DbDep, access: AccessDep, alarm_id: int, op: Callable[[AlarmStore], Alarm]) -> AlarmOut:
    """Run one lifecycle operation; the transition is stored now and announced by a collector."""
    access.alarm(alarm_id)  # another tenant's alarm does not exist for this caller
    try:
        return AlarmOut.model_validate(op(AlarmStore(db)))
    except AlarmNotFound as e:
        raise not_found("alarm", alarm_id) from e
    except AlarmConflict as e:
        raise ProblemException(409, str(e), slug="alarm-state-conflict", title="Alarm state conflict") from e


_ACTION_RESPONSES = problem_responses({404: "unknown alarm", 409: "not applicable in the alarm's current state"})
AlarmId = Annotated[int, Path(ge=1, le=2**63 - 1, description="alarm id", examples=[42])]


@router.post("/{alarm_id}/ack", operation_id="acknowledge_alarm", response_model=AlarmOut, summary="Acknowledge",
             responses=_ACTION_RESPONSES)  # fmt: skip
def acknowledge(db: DbDep, access: AccessDep, who: OperatorDep, alarm_id: AlarmId,
                body: Annotated[AlarmAction, Body(default_factory=AlarmAction)]) -> AlarmOut:  # no body = {}
    """Acknowledge an alarm (recorded with who and when)."""
    return _act(db, access, alarm_id, lambda st: st.acknowledge(alarm_id, _actor(who, body)))


@router.post("/{alarm_id}/clear", operation_id="clear_alarm", response_model=AlarmOut, summary="Clear by hand",
             responses=_ACTION_RESPONSES)  # fmt: skip
def clear(db: DbDep, access: AccessDep, who: OperatorDep, alarm_id: AlarmId,
          body: Annotated[AlarmClear, Body(default_factory=AlarmClear)]) -> AlarmOut:  # no body = no reason
    """Clear an alarm; if its condition still holds, the engine raises a new one."""
    return _act(db, access, alarm_id, lambda st: st.clear(alarm_id, _actor(who, body), body.reason))


@router.post("/{alarm_id}/comments", operation_id="comment_alarm", response_model=AlarmOut, summary="Comment",
             responses=_ACTION_RESPONSES)  # fmt: skip
def comment(db: DbDep, access: AccessDep, who: OperatorDep, alarm_id: AlarmId, body: AlarmComment) -> AlarmOut:
    """Add a comment to the alarm's history."""
    return _act(db, access, alarm_id, lambda st: st.comment(alarm_id, _actor(who, body), body.text))


@router.post("/{alarm_id}/assign", operation_id="assign_alarm", response_model=AlarmOut, summary="Assign",
             responses=_ACTION_RESPONSES)  # fmt: skip
def assign(db: DbDep, access: AccessDep, who: OperatorDep, alarm_id: AlarmId, body: AlarmAssign) -> AlarmOut:
    """Assign the alarm to someone, or unassign it."""
    return _act(db, access, alarm_id, lambda st: st.assign(alarm_id, _actor(who, body), body.assignee))


def _actor(who: Principal, body: AlarmAction) -> str:
    """The key's name; only an anonymous (demo) caller may name itself."""
    if who.is_anonymous and body.actor:
        return body.actor
    return who.name
