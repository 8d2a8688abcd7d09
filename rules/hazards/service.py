"""Hazard records against the stores: find, propose from alarms, step through the lifecycle,
attach evidence, escalate overdue ones, and gather the inputs of risk grades and indicators.

Lifecycle (docs/hazards.md)::

    candidate ──confirm──▶ open ──rectify──▶ rectified ──verify──▶ closed
        └──reject──▶ rejected      ▲                 │
                                   └────reopen───────┘

Hazards found by a person start ``open``; proposals from alarms start as ``candidate`` until a
person confirms or rejects them. ``open`` starts the deadline of the hazard's class. Verifying
and reopening are the regulator's; a firm records, confirms and rectifies its own. Every step
is a ``hazard_steps`` row with its actor and time.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from semon.rules.base import RuleSpec, Severity
from semon.rules.hazards.catalog import HazardCatalog, default_catalog
from semon.rules.hazards.indicators import AccidentRow, HazardRow, Unit
from semon.rules.hazards.risk import InspectionState, RiskGrade, RiskInputs, RiskPolicy, default_risk_policy, grade
from semon.rules.maintenance.compliance import Notifier, Wanted, device_info, sync_alarms
from semon.store.access import Access, NotVisible
from semon.store.db import Database
from semon.store.hazards import Accident, Hazard, HazardEvidence, HazardStep
from semon.store.maintenance import DeviceFacts, MaintenanceRecord
from semon.store.models import Alarm, Device, Firm
from semon.timeutil import as_utc, local_date, local_day_start_ms, to_ms

log = logging.getLogger(__name__)

OPEN_STATES = ("candidate", "open", "rectified")
# step -> (statuses it may start from, status after, needs the regulator)
STEPS: dict[str, tuple[tuple[str, ...], str, bool]] = {
    "confirm": (("candidate",), "open", False),
    "reject": (("candidate",), "rejected", False),
    "assign": (("open",), "open", False),
    "rectify": (("open",), "rectified", False),
    "verify": (("rectified",), "closed", True),
    "reopen": (("rectified",), "open", True),
}
NEEDS_NOTE = ("reject", "rectify", "reopen")
OVERDUE_TYPE = "hazard_overdue"
# How far back the proposal scan looks for alarms (it is idempotent: proposed alarms are skipped).
PROPOSAL_LOOKBACK = timedelta(days=2)


class HazardConflict(ValueError):
    """The step does not follow from the hazard's status."""


class HazardInvalid(ValueError):
    """The request names an unknown hazard code, a code of another kind, or lacks a note."""


def local_day(at: datetime, tz: str) -> date:
    """The local calendar day of an instant."""
    return local_date(to_ms(at), tz)


def hazards(access: Access) -> Select[Any]:
    """Hazards of devices in the caller's scope."""
    return access.scoped(select(Hazard), Hazard.device_id)


def hazard(access: Access, hazard_id: int, *, lock: bool = False) -> Hazard:
    """One hazard in scope, or :class:`NotVisible` (404)."""
    stmt = hazards(access).where(Hazard.id == hazard_id)
    h = access.s.scalar(stmt.with_for_update() if lock else stmt)
    if h is None:
        raise NotVisible("hazard", hazard_id)
    return h


def _step(s: Session, h: Hazard, step: str, actor: str, at: datetime, note: str = "", **details: Any) -> None:
    s.add(HazardStep(hazard_id=h.id, step=step, actor=actor, at=at, note=note, details=details))


def _deadline(cat: HazardCatalog, cls: str, opened: datetime, tz: str) -> date:
    return local_day(opened, tz) + timedelta(days=cat.deadline_days[cls])


@dataclass(frozen=True, slots=True)
class Finding:
    """What a person records when they find a hazard."""

    device_id: str
    code: str
    description: str = ""
    source: str = "inspection"
    at: datetime | None = None


def record(
    access: Access, f: Finding, actor: str, tz: str, now: datetime, catalog: HazardCatalog | None = None
) -> Hazard:
    """A hazard found by an inspector, a firm or an import: ``open``, deadline by its class."""
    access.require_operator()
    cat = catalog or default_catalog()
    dev = access.device(f.device_id)
    ht = cat.types.get(f.code)
    if ht is None:
        raise HazardInvalid(f"unknown hazard code {f.code!r}")
    if ht.kind != dev.kind:
        raise HazardInvalid(f"hazard {f.code} is for {ht.kind}s; {f.device_id} is a {dev.kind}")
    at = as_utc(f.at) if f.at is not None else now
    if at > now + timedelta(minutes=1):
        raise HazardInvalid("the time it was found is in the future")
    deadline = _deadline(cat, ht.class_, at, tz)
    h = Hazard(
        device_id=dev.id,
        kind=dev.kind,
        code=ht.code,
        hazard_class=ht.class_,
        status="open",
        source=f.source,
        description=f.description,
        firm_id=dev.firm_id,
        use_unit_id=dev.use_unit_id,
        district=dev.district,
        alarm_ids=[],
        found_at=at,
        found_by=actor,
        deadline=deadline,
        updated_at=now,
    )
    access.s.add(h)
    access.s.flush()
    _step(access.s, h, "found", actor, at, f.description, source=f.source, deadline=deadline.isoformat())
    return h


@dataclass(frozen=True, slots=True)
class StepBody:
    """What a person records at one step."""

    note: str = ""
    assignee: str | None = None
    deadline: date | None = None
    code: str | None = None  # confirm: the hazard it really is, if the proposal was close but wrong


def advance(
    access: Access,
    hazard_id: int,
    step: str,
    actor: str,
    body: StepBody,
    tz: str,
    now: datetime,
    catalog: HazardCatalog | None = None,
) -> Hazard:
    """Move a hazard by one step; raises :class:`HazardConflict` if the step does not fit."""
    access.require_operator()
    cat = catalog or default_catalog()
    starts, after, regulator_only = STEPS[step]
    h = hazard(access, hazard_id, lock=True)
    if regulator_only and not access.p.is_regulator:
        raise PermissionError(f"only the regulator may {step} a hazard")
    if h.status not in starts:
        raise HazardConflict(f"hazard {h.id} is {h.status}; {step} needs it {' or '.join(starts)}")
    if step in NEEDS_NOTE and not body.note.strip():
        raise HazardInvalid(f"{step} needs a note saying what was done or why")
    details: dict[str, Any] = {"from": h.status, "to": after}
    if step == "confirm":
        if body.code and body.code != h.code:
            ht = cat.types.get(body.code)
            if ht is None or ht.kind != h.kind:
                raise HazardInvalid(f"unknown hazard code {body.code!r} for a {h.kind}")
            details["code"] = {"from": h.code, "to": ht.code}
            h.code, h.hazard_class = ht.code, ht.class_
        h.deadline = _deadline(cat, h.hazard_class, now, tz)
        details["deadline"] = h.deadline.isoformat()
    if step == "assign":
        if body.assignee is None and body.deadline is None:
            raise HazardInvalid("assign needs an assignee or a deadline")
        if body.deadline is not None:
            if not access.p.is_regulator and (h.deadline is None or body.deadline > h.deadline):
                raise PermissionError("only the regulator may move a deadline later")
            details["deadline"] = {
                "from": h.deadline.isoformat() if h.deadline else None,
                "to": body.deadline.isoformat(),
            }
            h.deadline = body.deadline
    if body.assignee is not None and step in ("confirm", "assign"):
        details["assignee"] = body.assignee
        h.assignee = body.assignee
    if step == "rectify":
        h.rectified_at = now
        details["evidence"] = [e.id for e in evidence(access, h.id)]
    if step == "verify":
        h.closed_at, h.closed_by = now, actor
        details["on_time"] = h.deadline is None or local_day(now, tz) <= h.deadline
    if step == "reopen":
        h.rectified_at = None
    h.status, h.updated_at = after, now
    _step(access.s, h, step, actor, now, body.note, **details)
    access.s.flush()
    return h


def steps(access: Access, h: Hazard) -> list[HazardStep]:
    """The hazard's steps, oldest first."""
    return list(access.s.scalars(select(HazardStep).where(HazardStep.hazard_id == h.id).order_by(HazardStep.id)))


def evidence(access: Access, hazard_id: int) -> list[HazardEvidence]:
    """Evidence files of a hazard in scope (metadata and content)."""
    hazard(access, hazard_id)
    q = select(HazardEvidence).where(HazardEvidence.hazard_id == hazard_id).order_by(HazardEvidence.id)
    return list(access.s.scalars(q))


def add_evidence(
    access: Access, hazard_id: int, filename: str, content_type: str, data: bytes, actor: str, now: datetime
) -> HazardEvidence:
    """Attach a file to an unfinished hazard."""
    access.require_operator()
    h = hazard(access, hazard_id, lock=True)
    if h.status in ("closed", "rejected"):
        raise HazardConflict(f"hazard {h.id} is {h.status}; evidence can no longer be added")
    if not data:
        raise HazardInvalid("the evidence file is empty")
    e = HazardEvidence(
        hazard_id=h.id,
        filename=filename[:200],
        content_type=content_type[:100],
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        uploaded_by=actor,
        uploaded_at=now,
    )
    access.s.add(e)
    access.s.flush()
    _step(access.s, h, "evidence", actor, now, filename, evidence_id=e.id, sha256=e.sha256, size=e.size)
    return e


def propose_from_alarms(db: Database, now: datetime, catalog: HazardCatalog | None = None) -> list[int]:
    """Open candidates for alarms that reveal a hazard; returns the ids of hazards touched.

    An alarm already behind a hazard (open, closed or rejected) is never proposed again; a
    further alarm on a device with an unfinished hazard of the same code is added to its
    ``alarm_ids`` instead of opening a second one.
    """
    cat = catalog or default_catalog()
    types = cat.proposing_types()
    touched: list[int] = []
    with db.session() as s:
        rows = s.execute(
            select(Alarm.id, Alarm.device_id, Alarm.kind, Alarm.type, Alarm.message, Alarm.created_at)
            .where(Alarm.type.in_(types), Alarm.created_at >= now - PROPOSAL_LOOKBACK)
            .order_by(Alarm.id)
        ).all()
        if not rows:
            return []
        devices = {r.device_id for r in rows}
        known = s.scalars(select(Hazard).where(Hazard.device_id.in_(devices))).all()
        seen = {a for h in known for a in (h.alarm_ids or [])}
        live = {(h.device_id, h.code): h for h in known if h.status in OPEN_STATES}
        for r in rows:
            ht = cat.proposal(r.kind, r.type)
            if ht is None or r.id in seen:
                continue
            h = live.get((r.device_id, ht.code))
            if h is not None:
                h.alarm_ids = [*h.alarm_ids, r.id]
                h.updated_at = now
                _step(s, h, "linked", "rules", now, alarm_id=r.id, alarm_type=r.type)
            else:
                dev = s.get(Device, r.device_id)
                if dev is None:
                    continue
                h = Hazard(
                    device_id=dev.id,
                    kind=dev.kind,
                    code=ht.code,
                    hazard_class=ht.class_,
                    status="candidate",
                    source="alarm",
                    description=f"{r.type}: {r.message}",
                    firm_id=dev.firm_id,
                    use_unit_id=dev.use_unit_id,
                    district=dev.district,
                    alarm_ids=[r.id],
                    found_at=as_utc(r.created_at),
                    found_by="rules",
                    updated_at=now,
                )
                s.add(h)
                s.flush()
                _step(s, h, "proposed", "rules", now, alarm_id=r.id, alarm_type=r.type)
                live[(r.device_id, ht.code)] = h
            seen.add(r.id)
            touched.append(h.id)
        s.commit()
    return touched


def overdue_spec(kind: str) -> RuleSpec:
    """Rule spec of the compliance alarm "major hazard overdue" (to the regulator and the firm)."""
    return RuleSpec(
        id="hazards.overdue",
        kind=kind,
        alarm_type=OVERDUE_TYPE,
        severity=Severity.major,
        explain="{device}: 重大隐患逾期未整改 (major hazard overdue): {codes}",
    )


def escalate_overdue(db: Database, now: datetime, tz: str, notify: Notifier | None = None) -> list[dict[str, Any]]:
    """Mark open hazards past their deadline escalated; keep one compliance alarm per device with
    an overdue major hazard, cleared once none is overdue. Returns the published transitions."""
    today = local_day(now, tz)
    with db.session() as s:
        late = s.scalars(select(Hazard).where(Hazard.status == "open", Hazard.deadline < today)).all()
        for h in late:
            if h.escalated_at is None:
                h.escalated_at = now
                _step(
                    s,
                    h,
                    "escalated",
                    "system",
                    now,
                    "",
                    **{"deadline": h.deadline.isoformat() if h.deadline else None, "class": h.hazard_class},
                )
        by_device: dict[str, list[Hazard]] = {}
        for h in late:
            if h.hazard_class == "major":
                by_device.setdefault(h.device_id, []).append(h)
        wanted = []
        for dev, hs in by_device.items():
            first = min(h.deadline for h in hs if h.deadline is not None)
            spec = overdue_spec(hs[0].kind)
            onset = local_day_start_ms(first + timedelta(days=1), tz)
            codes = ", ".join(f"#{h.id} {h.code}" for h in hs)
            wanted.append(
                Wanted(
                    spec,
                    device_info(dev, hs[0].kind, hs[0].firm_id, hs[0].district),
                    onset,
                    spec.explain.format(device=dev, codes=codes),
                    {"hazard_ids": [h.id for h in hs], "deadline": first.isoformat()},
                )
            )
        s.commit()
    return sync_alarms(db, wanted, None, to_ms(now), notify, types=(OVERDUE_TYPE,))


def _counts(s: Any, stmt: Any) -> dict[str, int]:
    return {k: int(v) for k, v in s.execute(stmt).all()}


def risk_inputs(access: Access, as_of: datetime, tz: str, policy: RiskPolicy | None = None) -> list[RiskInputs]:
    """The inputs of every device's risk grade in the caller's scope, as of an instant (counts over
    the policy's windows)."""
    p = policy or default_risk_policy()
    windows = {
        "recent_hazards": p.recent_hazards.window_days,
        "faults": p.faults.window_days,
        "entrapments": p.entrapments.window_days,
        "maintenance": p.maintenance.window_days,
    }
    s = access.s
    today = local_day(as_of, tz)
    devs = s.execute(
        access.devices().with_only_columns(Device.id, Device.kind, Device.install_date, Device.firm_id, Device.district)
    ).all()
    facts = {f.device_id: f for f in s.scalars(select(DeviceFacts))}
    grades = dict(s.execute(select(Firm.id, Firm.credit_grade)).all())

    def since(days: int) -> datetime:
        return as_of - timedelta(days=days)

    open_major = _counts(
        s,
        select(Hazard.device_id, func.count())
        .where(Hazard.status.in_(("open", "rectified")), Hazard.hazard_class == "major")
        .group_by(Hazard.device_id),
    )
    open_general = _counts(
        s,
        select(Hazard.device_id, func.count())
        .where(Hazard.status.in_(("open", "rectified")), Hazard.hazard_class == "general")
        .group_by(Hazard.device_id),
    )
    recent = _counts(
        s,
        select(Hazard.device_id, func.count())
        .where(
            Hazard.status.in_(("open", "rectified", "closed")),
            Hazard.found_at >= since(windows["recent_hazards"]),
            Hazard.found_at <= as_of,
        )
        .group_by(Hazard.device_id),
    )
    faults = _counts(
        s,
        select(Alarm.device_id, func.count())
        .where(
            Alarm.severity.in_(("critical", "major")),
            Alarm.type != "trapped_passenger",
            ~Alarm.rule_id.like("maintenance.%"),
            ~Alarm.rule_id.like("hazards.%"),
            Alarm.onset_ts >= to_ms(since(windows["faults"])),
            Alarm.onset_ts <= to_ms(as_of),
        )
        .group_by(Alarm.device_id),
    )
    trapped = s.execute(
        select(Alarm.device_id, Alarm.details).where(
            Alarm.type == "trapped_passenger",
            Alarm.onset_ts >= to_ms(since(windows["entrapments"])),
            Alarm.onset_ts <= to_ms(as_of),
        )
    ).all()
    entrap: dict[str, int] = {}
    for dev, details in trapped:
        if (details or {}).get("cause") not in ("external", "misuse", "vandalism", "power_grid"):
            entrap[dev] = entrap.get(dev, 0) + 1
    visits = s.execute(
        select(MaintenanceRecord.device_id, func.count(), func.sum(case((MaintenanceRecord.on_time, 1), else_=0)))
        .where(
            MaintenanceRecord.performed_at >= since(windows["maintenance"]),
            MaintenanceRecord.performed_at <= as_of,
        )
        .group_by(MaintenanceRecord.device_id)
    ).all()
    visit = {d: (int(n), int(ok or 0)) for d, n, ok in visits}
    out = []
    for d in devs:
        f = facts.get(d.id)
        commissioned = (f.commission_date if f and f.commission_date else None) or d.install_date
        out.append(
            RiskInputs(
                device_id=d.id,
                kind=d.kind,
                commissioned=commissioned,
                open_major=open_major.get(d.id, 0),
                open_general=open_general.get(d.id, 0),
                recent_hazards=recent.get(d.id, 0),
                faults=faults.get(d.id, 0),
                entrapments=entrap.get(d.id, 0),
                inspection=_inspection_state(f, commissioned, d.kind, today),
                visits=visit.get(d.id, (0, 0))[0],
                visits_on_time=visit.get(d.id, (0, 0))[1],
                credit_grade=grades.get(d.firm_id) if d.firm_id else None,
                district=d.district,
                firm_id=d.firm_id,
            )
        )
    return out


# First periodic inspection due after commissioning, in years (docs/domain.md §4.5, §5).
FIRST_INSPECTION_YEARS = {"elevator": 1, "vessel": 3}


def _inspection_state(f: DeviceFacts | None, commissioned: date | None, kind: str, today: date) -> InspectionState:
    if f is not None and f.inspection_valid_until is not None:
        return "valid" if f.inspection_valid_until >= today else "overdue"
    if commissioned is not None:
        years = FIRST_INSPECTION_YEARS.get(kind, 1)
        try:
            first_due = commissioned.replace(year=commissioned.year + years)
        except ValueError:  # 29 February
            first_due = commissioned.replace(year=commissioned.year + years, day=28)
        # Never inspected: fine until the first one falls due, overdue after (never "unknown").
        return "valid" if today <= first_due else "overdue"
    return "unknown"


def indicator_rows(access: Access, tz: str) -> tuple[list[Unit], list[HazardRow], list[AccidentRow]]:
    """The indicator inputs of the caller's scope."""
    s = access.s
    units = [
        Unit(d, dist, firm)
        for d, dist, firm in s.execute(
            access.devices().with_only_columns(Device.id, Device.district, Device.firm_id)
        ).all()
    ]
    hz = [
        HazardRow(
            h.device_id,
            h.hazard_class,
            h.status,
            local_day(as_utc(h.found_at), tz),
            h.deadline,
            local_day(as_utc(h.closed_at), tz) if h.closed_at else None,
        )
        for h in s.scalars(hazards(access))
    ]
    acc = [
        AccidentRow(a.device_id, a.occurred_on, a.deaths)
        for a in s.scalars(access.scoped(select(Accident), Accident.device_id))
    ]
    return units, hz, acc


def record_accident(
    access: Access,
    device_id: str,
    occurred_on: date,
    deaths: int,
    injuries: int,
    description: str,
    actor: str,
    now: datetime,
) -> Accident:
    """An accident, recorded by the regulator."""
    if not access.p.is_regulator:
        raise PermissionError("only the regulator records accidents")
    access.device(device_id)
    a = Accident(
        device_id=device_id,
        occurred_on=occurred_on,
        deaths=deaths,
        injuries=injuries,
        description=description,
        recorded_by=actor,
        recorded_at=now,
    )
    access.s.add(a)
    access.s.flush()
    return a


def risk_grades(access: Access, as_of: datetime, tz: str, policy: RiskPolicy | None = None) -> list[RiskGrade]:
    """Every device's risk grade in the caller's scope, as of an instant (API, CLI, boards)."""
    p = policy or default_risk_policy()
    today = local_day(as_of, tz)
    return [grade(x, today, p) for x in risk_inputs(access, as_of, tz, p)]


BOARD_MEASUREMENT = "hazard_indicators"


def indicator_points(db: Database, now: datetime, tz: str, since: date | None = None) -> list[Any]:
    """Points of ``hazard_indicators`` for the boards: one per district, from ``since`` (default:
    1 January of this local year) to today (docs/boards.md). Rates are absent when there is
    nothing to rate (no major hazard found)."""
    from semon.rules.hazards.indicators import indicators
    from semon.store.access import SYSTEM
    from semon.store.telemetry import Point

    today = local_day(now, tz)
    with db.session() as s:
        access = Access(s, SYSTEM)
        units, hz, acc = indicator_rows(access, tz)
        grades = {g.device_id: g.grade for g in risk_grades(access, now, tz)}
    start = since or date(today.year, 1, 1)
    rows = indicators(units, hz, acc, grades, start, today + timedelta(days=1), today, "district")
    out = []
    t_ns = to_ms(now) * 1_000_000
    for r in rows:
        fields: dict[str, Any] = {k: v for k, v in r.items() if k not in ("group", "grades") and v is not None}
        fields.update({f"grade_{k}": v for k, v in r["grades"].items()})
        district = r["group"] or "—"
        out.append(Point(BOARD_MEASUREMENT, {"district": district}, fields, t_ns, device_id=f"district/{district}"))
    return out
