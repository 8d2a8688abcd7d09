"""``/maintenance/…`` and ``/devices/{id}/maintenance``: "3+2" on-demand maintenance.

Plans in force and their reasons, the decision history of an elevator (audit: "why was E123
on 90 days in May?"), maintenance records, per-firm rates, inspections due, registry facts
(set one by one or imported from CSV / Excel) and planning runs. docs/maintenance.md.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from semon.api.auth import AccessDep, OperatorDep, PrincipalDep, RegulatorDep
from semon.api.deps import DbDep, Limit, NowMs, Offset, TelemetryDep, TzDep
from semon.api.listing import page, parse_sort
from semon.api.openapi import problem_responses
from semon.api.problems import ProblemException, invalid_parameter, not_found
from semon.rules.maintenance.calendar import ITEM_CLASSES
from semon.rules.maintenance.facts import (
    DEVICE_FACTS,
    FactsError,
    UnknownEntity,
    import_facts,
    parse_values,
    update_device_facts,
    update_firm,
    update_use_unit,
)
from semon.rules.maintenance.inspection import inspection_frame
from semon.rules.maintenance.policy import Policy, PolicyError, load_policy
from semon.rules.maintenance.records import RecordError, record_visit
from semon.rules.maintenance.service import firm_rates, registry_frame, run_planning, summarise_modes
from semon.store.access import visible_device_ids
from semon.store.maintenance import DeviceFacts, MaintenanceDecision, MaintenancePlan, MaintenanceRecord
from semon.store.models import Device
from semon.timeutil import TimeParseError, from_ms, local_date, parse_time

router = APIRouter(tags=["maintenance"])
DeviceId = Annotated[str, Path(description="registry id of the device", examples=["E000005"])]
_policy_cache: dict[tuple[str, float], Policy] = {}


def current_policy() -> Policy:
    """The policy in force (re-read when the file changes, so an edit takes effect without restart)."""
    from semon.rules.maintenance.policy import ENV_VAR, default_policy_path

    path = os.environ.get(ENV_VAR) or str(default_policy_path())
    try:
        key = (path, os.stat(path).st_mtime)
        if key not in _policy_cache:
            _policy_cache.clear()
            _policy_cache[key] = load_policy(path)
        return _policy_cache[key]
    except (OSError, PolicyError) as e:
        raise ProblemException(500, f"maintenance policy unusable: {e}", slug="policy-invalid",
                               title="Invalid maintenance policy") from e  # fmt: skip


# ----------------------------------------------------------------------------- schemas
class PlanOut(BaseModel):
    """The maintenance interval in force for an elevator and its due dates."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "device_id": "E000005", "firm_id": "F001", "mode": "on_demand_90", "interval_days": 90, "eligible": True,
        "score": 91.3, "reasons": ["score 91.30: score ≥ 85 and credit grade A → on_demand_90 (half-month items "
                                   "within 90 days)"], "reverted": False, "decision_id": 12,
        "decided_at": "2026-11-26T08:00:00Z", "mode_since": "2026-11-26", "half_month_due": "2027-02-20",
        "quarterly_due": "2026-12-31", "half_year_due": "2026-12-31", "yearly_due": "2026-12-31",
        "overdue": [],
    }]})  # fmt: skip
    device_id: str
    firm_id: str | None
    mode: str = Field(description="standard_15 | on_demand_30 | on_demand_90 (policy modes)")
    interval_days: int = Field(description="half-month items due within this many days")
    eligible: bool = Field(description="every gate passed and no reversion trigger fired")
    score: float | None
    reasons: list[str]
    reverted: bool = Field(description="put back on the standard cycle by a reversion trigger")
    decision_id: int
    decided_at: datetime
    mode_since: date
    half_month_due: date
    quarterly_due: date
    half_year_due: date
    yearly_due: date
    overdue: list[str] = Field(default_factory=list, description="item classes overdue today")


class PlanPage(BaseModel):
    """One page of plans."""

    items: list[PlanOut]
    total: int
    limit: int
    offset: int


class DecisionOut(BaseModel):
    """A stored decision with everything it was made from."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    device_id: str
    decided_at: datetime
    as_of: date
    trigger: str = Field(description="plan | reversion")
    policy_version: str
    policy_sha256: str
    mode: str
    interval_days: int
    eligible: bool
    score: float | None
    reasons: list[str]
    gates: list[dict[str, Any]]
    triggers: list[dict[str, Any]]
    breakdown: dict[str, Any]
    inputs: dict[str, Any]
    due: dict[str, Any]


class FactsIn(BaseModel):
    """Device facts to set; fields left out stay as they are, ``null`` clears one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "commission_date": "2024-06-01", "inspection_valid_until": "2027-05-31", "liability_insurance": True,
    }]})  # fmt: skip
    commission_date: date | None = None
    inspection_valid_until: date | None = None
    last_inspection_date: date | None = None
    liability_insurance: bool | None = None
    safety_grade: int | None = Field(None, ge=1, le=5, description="pressure vessels: safety grade 1–5")


class FactsOut(FactsIn):
    """A device's maintenance facts."""

    model_config = ConfigDict(from_attributes=True, extra="ignore")
    device_id: str
    updated_at: datetime | None = None


class FirmFactsIn(BaseModel):
    """Firm facts of the policy."""

    model_config = ConfigDict(extra="forbid")
    tech_level: int | None = Field(None, ge=0, le=10)
    credit_grade: str | None = Field(None, max_length=8, examples=["A"])
    credit_score: float | None = Field(None, ge=0, le=100)


class UseUnitFactsIn(BaseModel):
    """Use-unit facts of the policy."""

    model_config = ConfigDict(extra="forbid")
    mgmt_level: int | None = Field(None, ge=0, le=10)


class RecordIn(BaseModel):
    """A maintenance visit."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "device_id": "E000005", "item_classes": ["quarterly"], "performed_at": "2026-11-26T09:30:00+08:00",
        "technician": "Li Wei (T-0042)", "paperless": True,
    }]})  # fmt: skip
    device_id: str
    item_classes: list[str] = Field(min_length=1, description="half_month, quarterly, half_year, yearly")
    performed_at: datetime | None = Field(None, description="default: now")
    technician: str = Field(min_length=1, max_length=200)
    paperless: bool = True
    notes: str = Field("", max_length=2000)


class RecordOut(BaseModel):
    """A stored maintenance visit."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    device_id: str
    firm_id: str | None
    performed_at: datetime
    item_class: str = Field(description="highest class done (classes are cumulative)")
    item_classes: list[str]
    technician: str
    paperless: bool
    on_time: bool
    due: dict[str, Any]
    notes: str
    recorded_at: datetime


class RecordPage(BaseModel):
    """One page of maintenance records."""

    items: list[RecordOut]
    total: int
    limit: int
    offset: int


class RunIn(BaseModel):
    """What to plan."""

    model_config = ConfigDict(extra="forbid")
    device_ids: list[str] | None = Field(None, description="default: every elevator")
    dry_run: bool = Field(False, description="decide only: store nothing, raise no alarm")


def _plan_out(p: MaintenancePlan, day: date) -> PlanOut:
    out = PlanOut.model_validate(p)
    out.overdue = [c for c in ITEM_CLASSES if getattr(p, f"{c}_due") < day]
    return out


def _iso_day(ts: Any) -> str | None:
    """A pandas timestamp as YYYY-MM-DD; NaT → None."""
    return None if pd.isna(ts) else pd.Timestamp(ts).date().isoformat()


def _time(name: str, value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return parse_time(value)
    except TimeParseError as e:
        raise invalid_parameter(name, str(e)) from None


# ------------------------------------------------------------------------------- plans
_PLAN_SORT = {"device_id": MaintenancePlan.device_id, "score": MaintenancePlan.score, "mode": MaintenancePlan.mode,
              "half_month_due": MaintenancePlan.half_month_due, "firm_id": MaintenancePlan.firm_id,
              "decided_at": MaintenancePlan.decided_at}  # fmt: skip


@router.get("/maintenance/plans", response_model=PlanPage, summary="Maintenance plans in force",
            responses=problem_responses())
def list_plans(
    access: AccessDep,
    now: NowMs,
    tz: TzDep,
    firm_id: Annotated[str | None, Query(description="maintenance firm")] = None,
    mode: Annotated[str | None, Query(examples=["on_demand_90"])] = None,
    overdue: Annotated[bool | None, Query(description="only elevators with (true) / without (false) overdue items")]
    = None,
    reverted: Annotated[bool | None, Query(description="only elevators put back by a reversion trigger")] = None,
    sort: Annotated[str, Query(description=f"keys: {', '.join(_PLAN_SORT)}; '-' for descending")] = "device_id",
    limit: Limit = 100,
    offset: Offset = 0,
) -> PlanPage:
    """One row per planned elevator: mode, interval, score, reasons, next due dates (local days)."""
    day = local_date(now, tz)
    stmt = access.scoped(select(MaintenancePlan), MaintenancePlan.device_id)
    for col, val in ((MaintenancePlan.firm_id, firm_id), (MaintenancePlan.mode, mode),
                     (MaintenancePlan.reverted, reverted)):  # fmt: skip
        if val is not None:
            stmt = stmt.where(col == val)
    if overdue is not None:
        late = (MaintenancePlan.half_month_due < day) | (MaintenancePlan.quarterly_due < day) | (
            MaintenancePlan.half_year_due < day) | (MaintenancePlan.yearly_due < day)
        stmt = stmt.where(late if overdue else ~late)
    order = parse_sort(sort, _PLAN_SORT, MaintenancePlan.device_id.asc())
    total, rows = page(access.s, stmt, order, limit, offset)
    items = [_plan_out(r[0], day) for r in rows]
    return PlanPage(items=items, total=total, limit=limit, offset=offset)


@router.post("/maintenance/plans/run", summary="Run planning now", responses=problem_responses())
async def run_plans(
    db: DbDep, _: RegulatorDep, telemetry: TelemetryDep, now: NowMs, tz: TzDep,
    body: Annotated[RunIn | None, Body()] = None,
) -> dict[str, Any]:
    """Plan (default: every elevator) from current facts and live data; store decisions, sync alarms."""
    body = body or RunIn()
    policy = current_policy()
    run = await run_in_threadpool(
        run_planning, db, telemetry, policy, device_ids=body.device_ids, store=not body.dry_run,
        alarms=not body.dry_run, board=not body.dry_run, at_ms=now, tz=tz,
    )  # fmt: skip
    summary = summarise_modes(run)
    return {
        "as_of": run.as_of.isoformat(), "policy_version": policy.version, "elevators": len(run.plan),
        "decisions_written": run.decisions_written, "alarm_transitions": len(run.alarm_messages),
        "modes": {m: int(summary.at[m, "elevators"]) for m in policy.modes},
        "timings_s": {k: round(v, 3) for k, v in run.timings.items()},
        "plans": None if not body.dry_run else [
            {"device_id": d, "mode": r["mode"], "score": float(r["score"]), "reasons": list(r["reasons"])}
            for d, r in run.plan.iterrows()
        ],
    }  # fmt: skip


@router.get("/maintenance/policy", summary="The maintenance policy in force", responses=problem_responses())
def get_policy(_: PrincipalDep) -> dict[str, Any]:
    """Version, file hash and content of the policy every new decision uses."""
    p = current_policy()
    return {"version": p.version, "sha256": p.sha256, "source": p.source,
            "policy": p.model_dump(mode="json", by_alias=True)}  # fmt: skip


# ------------------------------------------------------------------------------ device
@router.get("/devices/{device_id}/maintenance", summary="Maintenance of one device",
            responses=problem_responses({404: "unknown device"}))
def device_maintenance(
    db: DbDep,
    access: AccessDep,
    device_id: DeviceId,
    now: NowMs,
    tz: TzDep,
    at: Annotated[str | None, Query(description="the decision in force at this time (ISO-8601 or epoch ms); "
                                               "default: now", examples=["2026-05-15"])] = None,
) -> dict[str, Any]:
    """Plan in force, the decision behind it (gates, score breakdown, inputs with evidence), facts,
    periodic inspection status and the last records. With ``at``, the decision in force then."""
    at_ms = _time("at", at)
    day = local_date(now, tz)
    access.device(device_id)  # another tenant's device does not exist for this caller
    with db.session() as s:
        dev = s.get(Device, device_id)
        if dev is None:
            raise not_found("device", device_id)
        plan = s.get(MaintenancePlan, device_id)
        facts = s.get(DeviceFacts, device_id)
        stmt = select(MaintenanceDecision).where(MaintenanceDecision.device_id == device_id)
        if at_ms is not None:
            stmt = stmt.where(MaintenanceDecision.decided_at <= from_ms(at_ms))
        decision = s.scalars(stmt.order_by(MaintenanceDecision.decided_at.desc(), MaintenanceDecision.id.desc())
                             .limit(1)).first()  # fmt: skip
        records = s.scalars(select(MaintenanceRecord).where(MaintenanceRecord.device_id == device_id)
                            .order_by(MaintenanceRecord.performed_at.desc()).limit(20)).all()  # fmt: skip
        kind = dev.kind
        plan_out = _plan_out(plan, day).model_dump(mode="json") if plan is not None else None
        decision_out = DecisionOut.model_validate(decision).model_dump(mode="json") if decision else None
        facts_out = FactsOut.model_validate(facts).model_dump(mode="json") if facts else None
        recs = [RecordOut.model_validate(r).model_dump(mode="json") for r in records]
    reg = registry_frame(db, None, [device_id])
    ins = inspection_frame(reg, current_policy(), day).iloc[0]
    inspection = {"due": _iso_day(ins["inspection_due"]), "status": ins["inspection_status"],
                  "basis": ins["inspection_basis"]}  # fmt: skip
    return {"device_id": device_id, "kind": kind, "plan": plan_out if at_ms is None else None,
            "decision": decision_out, "facts": facts_out, "inspection": inspection, "records": recs}  # fmt: skip


@router.get("/devices/{device_id}/maintenance/decisions", response_model=list[DecisionOut],
            summary="Decision history of a device", responses=problem_responses({404: "unknown device"}))
def device_decisions(
    db: DbDep, access: AccessDep, device_id: DeviceId, limit: Limit = 100, offset: Offset = 0
) -> list[DecisionOut]:
    """Every stored decision, newest first: the audit trail of the device's interval."""
    access.device(device_id)
    with db.session() as s:
        if s.get(Device, device_id) is None:
            raise not_found("device", device_id)
        rows = s.scalars(select(MaintenanceDecision).where(MaintenanceDecision.device_id == device_id)
                         .order_by(MaintenanceDecision.decided_at.desc(), MaintenanceDecision.id.desc())
                         .limit(limit).offset(offset)).all()  # fmt: skip
        return [DecisionOut.model_validate(r) for r in rows]


@router.patch("/devices/{device_id}/maintenance/facts", response_model=FactsOut, summary="Set device facts",
              responses=problem_responses({404: "unknown device"}))
def set_device_facts(db: DbDep, _: RegulatorDep, device_id: DeviceId, body: FactsIn) -> FactsOut:
    """Commission date, inspection valid-until / last inspection, liability insurance, safety grade."""
    values = body.model_dump(exclude_unset=True)
    try:
        f = update_device_facts(db, device_id, {k: v for k, v in values.items() if k in DEVICE_FACTS})
    except UnknownEntity:
        raise not_found("device", device_id) from None
    return FactsOut.model_validate(f)


@router.patch("/maintenance/firms/{firm_id}", summary="Set firm facts",
              responses=problem_responses({404: "unknown firm"}))
def set_firm_facts(db: DbDep, _: RegulatorDep, firm_id: str, body: FirmFactsIn) -> dict[str, Any]:
    """Technical level, credit grade and credit score of a maintenance firm."""
    values = {f"firm_{k}": v for k, v in body.model_dump(exclude_unset=True).items()}
    try:
        firm = update_firm(db, firm_id, parse_values(values))
    except UnknownEntity:
        raise not_found("firm", firm_id) from None
    except ValueError as e:
        raise invalid_parameter("body", str(e)) from None
    return {"id": firm.id, "name": firm.name, "tech_level": firm.tech_level, "credit_grade": firm.credit_grade,
            "credit_score": firm.credit_score}  # fmt: skip


@router.patch("/maintenance/use-units/{use_unit_id}", summary="Set use-unit facts",
              responses=problem_responses({404: "unknown use unit"}))
def set_use_unit_facts(db: DbDep, _: RegulatorDep, use_unit_id: str, body: UseUnitFactsIn) -> dict[str, Any]:
    """Management level of a use unit."""
    values = {f"use_unit_{k}": v for k, v in body.model_dump(exclude_unset=True).items()}
    try:
        unit = update_use_unit(db, use_unit_id, parse_values(values))
    except UnknownEntity:
        raise not_found("use unit", use_unit_id) from None
    return {"id": unit.id, "name": unit.name, "mgmt_level": unit.mgmt_level}


@router.post("/maintenance/facts/import", summary="Import facts (CSV or Excel)",
             responses=problem_responses({400: "invalid file (every bad row listed)"}),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string"}},
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
                     {"schema": {"type": "string", "format": "binary"}}}}})  # fmt: skip
async def import_facts_file(request: Request, db: DbDep, _: RegulatorDep) -> dict[str, int]:
    """The request body is the file: ``text/csv`` or an ``.xlsx`` workbook (columns in docs/maintenance.md)."""
    body = await request.body()
    ctype = request.headers.get("content-type", "")
    name = "upload.xlsx" if "spreadsheet" in ctype or body[:2] == b"PK" else "upload.csv"
    try:
        return await run_in_threadpool(import_facts, db, body, name)
    except FactsError as e:
        raise ProblemException(400, str(e), slug="invalid-facts-file", title="Invalid facts file") from None


# ----------------------------------------------------------------------------- records
_REC_SORT = {"performed_at": MaintenanceRecord.performed_at, "device_id": MaintenanceRecord.device_id,
             "firm_id": MaintenanceRecord.firm_id, "id": MaintenanceRecord.id}  # fmt: skip


@router.post("/maintenance/records", response_model=RecordOut, status_code=201, summary="Record a maintenance visit",
             responses=problem_responses({404: "unknown device"}))
def create_record(db: DbDep, access: AccessDep, _: OperatorDep, now: NowMs, tz: TzDep, body: RecordIn) -> RecordOut:
    """Store a visit; the elevator's due dates recompute and the overdue alarms it settles clear."""
    access.device(body.device_id)  # a firm records visits on the equipment it maintains only
    at = from_ms(now)
    try:
        rec, _settled = record_visit(db, current_policy(), device_id=body.device_id, item_classes=body.item_classes,
                              performed_at=body.performed_at or at, technician=body.technician,
                              paperless=body.paperless, notes=body.notes, now=at, tz=tz)  # fmt: skip
    except LookupError:
        raise not_found("device", body.device_id) from None
    except RecordError as e:
        raise invalid_parameter("body", str(e)) from None
    return RecordOut.model_validate(rec)


@router.get("/maintenance/records", response_model=RecordPage, summary="Maintenance records",
            responses=problem_responses())
def list_records(
    access: AccessDep,
    device_id: str | None = None,
    firm_id: str | None = None,
    since: Annotated[str | None, Query(description="performed at or after (ISO-8601 / epoch ms)")] = None,
    until: Annotated[str | None, Query(description="performed before")] = None,
    sort: str = "-performed_at",
    limit: Limit = 100,
    offset: Offset = 0,
) -> RecordPage:
    """Visits matching every filter, newest first."""
    stmt = access.scoped(select(MaintenanceRecord), MaintenanceRecord.device_id)
    if device_id is not None:
        stmt = stmt.where(MaintenanceRecord.device_id == device_id)
    if firm_id is not None:
        stmt = stmt.where(MaintenanceRecord.firm_id == firm_id)
    for name, val, op in (("since", since, "ge"), ("until", until, "lt")):
        ms = _time(name, val)
        if ms is not None:
            t = from_ms(ms)
            stmt = stmt.where(MaintenanceRecord.performed_at >= t if op == "ge" else MaintenanceRecord.performed_at < t)
    order = parse_sort(sort, _REC_SORT, MaintenanceRecord.id.desc())
    total, rows = page(access.s, stmt, order, limit, offset)
    return RecordPage(items=[RecordOut.model_validate(r[0]) for r in rows], total=total, limit=limit,
                      offset=offset)  # fmt: skip


@router.get("/maintenance/records/{record_id}", response_model=RecordOut, summary="One maintenance record",
            responses=problem_responses({404: "unknown record"}))
def get_record(access: AccessDep, record_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> RecordOut:
    """A stored visit."""
    stmt = access.scoped(select(MaintenanceRecord), MaintenanceRecord.device_id)
    r = access.s.scalar(stmt.where(MaintenanceRecord.id == record_id))
    if r is None:
        raise not_found("maintenance record", record_id)
    return RecordOut.model_validate(r)


# ----------------------------------------------------------------------- firms, inspections
@router.get("/maintenance/firms", summary="Per-firm on-time and paperless rates", responses=problem_responses())
def list_firm_rates(db: DbDep, who: PrincipalDep, now: NowMs, tz: TzDep) -> list[dict[str, Any]]:
    """Elevators maintained, visits in the last year, on-time and paperless rates, Guangzhou pilot flags."""
    df = firm_rates(db, local_date(now, tz), tz=tz)
    if not who.is_regulator:
        # A firm sees its own rates; an owner sees none (they rate firms, not owners).
        df = df[df.index == who.firm_id] if who.role == "firm" else df.iloc[0:0]
    df = df.astype(object).where(df.notna(), None)
    return [{"firm_id": fid, **row} for fid, row in df.to_dict("index").items()]


@router.get("/maintenance/inspections", summary="Periodic inspection due dates", responses=problem_responses())
def list_inspections(
    db: DbDep,
    access: AccessDep,
    now: NowMs,
    tz: TzDep,
    status: Annotated[str | None, Query(description="ok | due_soon | overdue | unknown")] = None,
    kind: Annotated[str | None, Query(description="elevator | vessel")] = None,
    firm_id: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Every device's inspection due date and status (elevators yearly; vessels by safety grade)."""
    reg = registry_frame(db, kind)
    if not access.p.is_regulator:
        reg = reg[reg["device_id"].isin(set(access.s.scalars(visible_device_ids(access.p))))]
    if firm_id is not None:
        reg = reg[reg["firm_id"] == firm_id]
    ins = inspection_frame(reg, current_policy(), local_date(now, tz))
    df = reg[["device_id", "kind", "firm_id"]].join(ins)
    if status is not None:
        df = df[df["inspection_status"] == status]
    total = len(df)
    df = df.iloc[offset:offset + limit]
    items = [{"device_id": r.device_id, "kind": r.kind, "firm_id": r.firm_id,
              "due": _iso_day(r.inspection_due), "status": r.inspection_status, "basis": r.inspection_basis}
             for r in df.itertuples(index=False)]  # fmt: skip
    return {"items": items, "total": total, "limit": limit, "offset": offset}
