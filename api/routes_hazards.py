"""``/hazards``, ``/risk``, ``/inspections/draw``, ``/indicators``, ``/accidents``: the regulator's
"dual prevention" — hidden hazards tracked to closure, a risk grade per device, the
risk-weighted inspection draw and the plan's indicators (docs/hazards.md).

Tenancy as everywhere: a firm sees and changes the hazards of the equipment it maintains,
owners read, the regulator sees all and alone verifies, reopens and records accidents.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from semon.api.auth import AccessDep, OperatorDep, RegulatorDep
from semon.api.deps import Limit, NowMs, Offset
from semon.api.listing import page, parse_sort
from semon.api.openapi import problem_responses
from semon.api.problems import ProblemException, invalid_parameter
from semon.api.schemas import PageMeta, UtcDatetime
from semon.rules.hazards import service as hs
from semon.rules.hazards.catalog import default_catalog
from semon.rules.hazards.draw import draw
from semon.rules.hazards.indicators import indicators
from semon.rules.hazards.risk import default_risk_policy
from semon.store.access import Access
from semon.store.hazards import Hazard
from semon.timeutil import from_ms

router = APIRouter(tags=["hazards"])
T = TypeVar("T")

HazardStatus = Literal["candidate", "open", "rectified", "closed", "rejected"]
HazardId = Annotated[int, Path(ge=1, le=2**63 - 1, description="hazard id", examples=[12])]


def _tz(request: Request) -> str:
    return str(request.app.state.settings.timezone)


def _guard(fn: Callable[[], T]) -> T:
    """Domain errors → problem details."""
    try:
        return fn()
    except PermissionError as e:
        raise ProblemException(403, str(e), slug="forbidden", title="Forbidden") from e
    except hs.HazardConflict as e:
        raise ProblemException(409, str(e), slug="hazard-state-conflict", title="Hazard state conflict") from e
    except hs.HazardInvalid as e:
        raise ProblemException(422, str(e), slug="invalid-hazard", title="Invalid hazard") from e


class HazardTypeOut(BaseModel):
    """One kind of hazard of the catalog."""

    code: str
    kind: str
    hazard_class: str
    name_zh: str
    name_en: str
    basis: str
    proposed_by: list[str]
    deadline_days: int


class HazardOut(BaseModel):
    """A hazard record."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    device_id: str
    kind: str
    code: str
    name_zh: str = ""
    name_en: str = ""
    hazard_class: str
    status: HazardStatus
    source: str
    description: str
    firm_id: str | None
    use_unit_id: str | None
    district: str | None
    alarm_ids: list[int]
    found_at: UtcDatetime
    found_by: str
    assignee: str | None
    deadline: date | None = Field(description="last local day to rectify it")
    overdue: bool = False
    rectified_at: UtcDatetime | None
    closed_at: UtcDatetime | None
    closed_by: str | None
    escalated_at: UtcDatetime | None


class StepOut(BaseModel):
    """One step of a hazard's lifecycle."""

    model_config = ConfigDict(from_attributes=True)
    step: str
    actor: str
    at: UtcDatetime
    note: str
    details: dict[str, Any]


class EvidenceOut(BaseModel):
    """An evidence file's metadata (its content: ``GET …/evidence/{id}``)."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: UtcDatetime


class HazardDetail(HazardOut):
    """A hazard with its steps and evidence."""

    steps: list[StepOut]
    evidence: list[EvidenceOut]


class HazardPage(PageMeta):
    """One page of hazards."""

    items: list[HazardOut]


class FindingIn(BaseModel):
    """A hazard found on a device."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"device_id": "gz-el-00042", "code": "EL-M-DOORLOCK-BYPASS", "description": "层门门锁被短接线短接"}
            ]
        },
    )
    device_id: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=3, max_length=40, description="a code of GET /hazards/types")
    description: str = Field("", max_length=4000)
    source: Literal["inspection", "firm", "import"] = "inspection"
    found_at: datetime | None = Field(None, description="when it was found (default now)")


class StepIn(BaseModel):
    """A lifecycle step (every field optional; ``note`` required to reject, rectify, reopen)."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field("", max_length=4000)
    assignee: str | None = Field(None, min_length=1, max_length=200, description="the person who must rectify it")
    deadline: date | None = Field(None, description="assign: a new deadline (later only by the regulator)")
    code: str | None = Field(None, max_length=40, description="confirm: the hazard it really is")


def _out(h: Hazard, today: date) -> dict[str, Any]:
    cat = default_catalog()
    ht = cat.types.get(h.code)
    data = {c: getattr(h, c) for c in HazardOut.model_fields if hasattr(h, c)}
    data.update(
        name_zh=ht.name_zh if ht else h.code,
        name_en=ht.name_en if ht else h.code,
        alarm_ids=list(h.alarm_ids or []),
        overdue=h.status == "open" and h.deadline is not None and h.deadline < today,
    )
    return data


@router.get("/hazards/types", response_model=list[HazardTypeOut], summary="The hazard catalog")
def hazard_types(access: AccessDep) -> list[HazardTypeOut]:
    """Every hazard semon tracks: code, class (GB 45067-2024 major or general), names, the
    alarm types that propose it, and the rectification deadline of its class."""
    cat = default_catalog()
    return [
        HazardTypeOut(
            code=h.code,
            kind=h.kind,
            hazard_class=h.class_,
            name_zh=h.name_zh,
            name_en=h.name_en,
            basis=h.basis,
            proposed_by=h.proposed_by,
            deadline_days=cat.deadline_days[h.class_],
        )
        for h in cat.types.values()
    ]


_SORT = {
    "id": Hazard.id,
    "found_at": Hazard.found_at,
    "deadline": Hazard.deadline,
    "status": Hazard.status,
    "device_id": Hazard.device_id,
    "class": Hazard.hazard_class,
}


@router.get("/hazards", response_model=HazardPage, summary="List hazards", responses=problem_responses())
def list_hazards(
    request: Request,
    access: AccessDep,
    now_ms: NowMs,
    status: Annotated[HazardStatus | None, Query()] = None,
    hazard_class: Annotated[Literal["major", "general"] | None, Query(alias="class")] = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    firm_id: Annotated[str | None, Query(max_length=64)] = None,
    district: Annotated[str | None, Query(max_length=64)] = None,
    overdue: Annotated[bool | None, Query(description="only open hazards past their deadline")] = None,
    sort: Annotated[str, Query(description=f"keys, '-' for descending: {', '.join(_SORT)}")] = "-found_at",
    limit: Limit = 100,
    offset: Offset = 0,
) -> HazardPage:
    """Hazards of the caller's equipment."""
    today = hs.local_day(from_ms(now_ms), _tz(request))
    stmt = hs.hazards(access)
    for col, value in (
        (Hazard.status, status),
        (Hazard.hazard_class, hazard_class),
        (Hazard.device_id, device_id),
        (Hazard.firm_id, firm_id),
        (Hazard.district, district),
    ):
        if value is not None:
            stmt = stmt.where(col == value)
    if overdue is True:
        stmt = stmt.where(Hazard.status == "open", Hazard.deadline < today)
    elif overdue is False:
        stmt = stmt.where((Hazard.status != "open") | (Hazard.deadline >= today) | Hazard.deadline.is_(None))
    total, rows = page(access.s, stmt, parse_sort(sort, _SORT, Hazard.id.desc()), limit, offset)
    return HazardPage(items=[HazardOut(**_out(h, today)) for (h,) in rows], total=total, limit=limit, offset=offset)


_WRITE = problem_responses(
    {
        403: "not allowed for this role",
        404: "unknown hazard or device",
        409: "the step does not follow from the status",
        422: "invalid hazard or step",
    }
)


def _detail(access: Access, h: Hazard, today: date) -> HazardDetail:
    return HazardDetail(
        **_out(h, today),
        steps=[StepOut.model_validate(x) for x in hs.steps(access, h)],
        evidence=[EvidenceOut.model_validate(e) for e in hs.evidence(access, h.id)],
    )


@router.post("/hazards", response_model=HazardDetail, status_code=201, summary="Record a hazard", responses=_WRITE)
def create_hazard(
    request: Request, access: AccessDep, who: OperatorDep, now_ms: NowMs, body: FindingIn
) -> HazardDetail:
    """A hazard found by an inspector, a firm or an import: open, with the deadline of its class."""
    now, tz = from_ms(now_ms), _tz(request)
    f = hs.Finding(body.device_id, body.code, body.description, body.source, body.found_at)
    h = _guard(lambda: hs.record(access, f, who.name, tz, now))
    return _detail(access, h, hs.local_day(now, tz))


@router.get(
    "/hazards/{hazard_id}",
    response_model=HazardDetail,
    summary="One hazard",
    responses=problem_responses({404: "unknown hazard"}),
)
def get_hazard(request: Request, access: AccessDep, now_ms: NowMs, hazard_id: HazardId) -> HazardDetail:
    """A hazard with every step and its evidence files."""
    return _detail(access, hs.hazard(access, hazard_id), hs.local_day(from_ms(now_ms), _tz(request)))


def _advance(
    request: Request, access: Access, who: Any, now_ms: int, hazard_id: int, step: str, body: StepIn | None
) -> HazardDetail:
    b = body or StepIn()
    now, tz = from_ms(now_ms), _tz(request)
    sb = hs.StepBody(note=b.note, assignee=b.assignee, deadline=b.deadline, code=b.code)
    h = _guard(lambda: hs.advance(access, hazard_id, step, who.name, sb, tz, now))
    return _detail(access, h, hs.local_day(now, tz))


def _step_route(step: str, doc: str) -> None:
    def endpoint(
        request: Request,
        access: AccessDep,
        who: OperatorDep,
        now_ms: NowMs,
        hazard_id: HazardId,
        body: StepIn | None = None,
    ) -> HazardDetail:
        return _advance(request, access, who, now_ms, hazard_id, step, body)

    endpoint.__doc__ = doc
    endpoint.__name__ = f"{step}_hazard"
    router.add_api_route(
        f"/hazards/{{hazard_id}}/{step}",
        endpoint,
        methods=["POST"],
        response_model=HazardDetail,
        summary=f"{step.capitalize()} a hazard",
        responses=_WRITE,
        name=f"{step}_hazard",
    )


for _s, _doc in (
    ("confirm", "A proposed hazard is real: it opens, with the deadline of its class from today."),
    ("reject", "A proposed hazard is not one (a note says why)."),
    ("assign", "Name the person who must rectify it, or move its deadline (later: the regulator only)."),
    ("rectify", "Rectified (a note says what was done; attach photos with POST …/evidence first)."),
    ("verify", "The regulator verified the rectification: the hazard is closed."),
    ("reopen", "The regulator found the rectification insufficient: open again (a note says why)."),
):
    _step_route(_s, _doc)


@router.post(
    "/hazards/{hazard_id}/evidence",
    response_model=EvidenceOut,
    status_code=201,
    summary="Attach an evidence file",
    responses=_WRITE,
)
async def add_evidence(
    request: Request,
    access: AccessDep,
    who: OperatorDep,
    now_ms: NowMs,
    hazard_id: HazardId,
    filename: Annotated[str, Query(min_length=1, max_length=200, description="the file's name")] = "evidence",
) -> EvidenceOut:
    """The request body is the file itself (e.g. ``Content-Type: image/jpeg``), up to the API's
    body limit (``SEMON_API_MAX_BODY_BYTES``)."""
    data = await request.body()
    ctype = request.headers.get("content-type", "application/octet-stream")
    e = _guard(lambda: hs.add_evidence(access, hazard_id, filename, ctype, data, who.name, from_ms(now_ms)))
    return EvidenceOut.model_validate(e)


@router.get(
    "/hazards/{hazard_id}/evidence/{evidence_id}",
    summary="An evidence file",
    responses=problem_responses({404: "unknown hazard or file"}),
)
def get_evidence(
    access: AccessDep, hazard_id: HazardId, evidence_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> Response:
    """The file as uploaded, with its content type and SHA-256 (``ETag``)."""
    for e in hs.evidence(access, hazard_id):
        if e.id == evidence_id:
            return Response(e.data, media_type=e.content_type, headers={"ETag": f'"{e.sha256}"'})
    raise ProblemException(
        404, f"evidence {evidence_id} of hazard {hazard_id} does not exist", slug="not-found", title="Not found"
    )


# -- risk grades and the inspection draw -------------------------------------------------------


class FactorOut(BaseModel):
    """One factor of a risk grade."""

    factor: str
    value: Any
    points: float
    reason_zh: str
    reason_en: str


class RiskOut(BaseModel):
    """A device's risk grade (A lowest … D highest) with its breakdown."""

    device_id: str
    grade: Literal["A", "B", "C", "D"]
    grade_zh: str
    grade_en: str
    score: float
    floor: str | None = Field(description="why the grade is above the score's, if it is")
    breakdown: list[FactorOut]


class RiskPage(PageMeta):
    """Risk grades of the caller's equipment."""

    policy_version: str
    items: list[RiskOut]


def _grades(request: Request, access: Access, now_ms: int) -> list[RiskOut]:
    names = default_risk_policy().grades.names
    return [
        RiskOut(**g.as_dict(), grade_zh=names[g.grade][0], grade_en=names[g.grade][1])
        for g in hs.risk_grades(access, from_ms(now_ms), _tz(request))
    ]


@router.get("/risk", response_model=RiskPage, summary="Risk grades", responses=problem_responses())
def list_risk(
    request: Request,
    access: AccessDep,
    now_ms: NowMs,
    grade_: Annotated[Literal["A", "B", "C", "D"] | None, Query(alias="grade")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> RiskPage:
    """The risk grade of every device in scope, highest risk first, each with its breakdown."""
    rows = sorted(_grades(request, access, now_ms), key=lambda r: (-r.score, r.device_id))
    if grade_ is not None:
        rows = [r for r in rows if r.grade == grade_]
    return RiskPage(
        policy_version=default_risk_policy().version,
        items=rows[offset : offset + limit],
        total=len(rows),
        limit=limit,
        offset=offset,
    )


@router.get(
    "/risk/{device_id}",
    response_model=RiskOut,
    summary="One device's risk grade",
    responses=problem_responses({404: "unknown device"}),
)
def device_risk(
    request: Request, access: AccessDep, now_ms: NowMs, device_id: Annotated[str, Path(max_length=64)]
) -> RiskOut:
    """The grade and why."""
    access.device(device_id)
    for r in _grades(request, access, now_ms):
        if r.device_id == device_id:
            return r
    raise ProblemException(404, f"device {device_id!r} does not exist", slug="not-found", title="Not found")


class DrawOut(BaseModel):
    """A risk-weighted inspection draw."""

    seed: str
    n: int
    weights: dict[str, float]
    strata: list[dict[str, Any]]
    explanation: list[str]
    devices: list[str]


@router.post(
    "/inspections/draw",
    response_model=DrawOut,
    summary="Draw devices to inspect",
    responses=problem_responses({403: "the regulator's"}),
)
def inspection_draw(
    request: Request,
    access: AccessDep,
    who: RegulatorDep,
    now_ms: NowMs,
    n: Annotated[int, Query(ge=1, le=100_000)],
    seed: Annotated[str, Query(min_length=1, max_length=64, description="record it: the same seed redraws")],
) -> DrawOut:
    """Devices drawn at rates proportional to their grade's weight (docs/hazards.md)."""
    weights = default_risk_policy().grades.weights()
    d = draw(((r.device_id, r.grade) for r in _grades(request, access, now_ms)), n, seed, weights)
    return DrawOut(
        seed=d.seed,
        n=d.n,
        weights=weights,
        explanation=d.explain(),
        devices=d.devices,
        strata=[
            {"grade": s.grade, "devices": s.devices, "weight": s.weight, "drawn": s.drawn, "rate": round(s.rate, 6)}
            for s in d.strata
        ],
    )


# -- indicators and accidents ------------------------------------------------------------------


class IndicatorsOut(BaseModel):
    """The plan's indicators per group, over ``[start, end)`` local days, as of ``as_of``."""

    by: str
    start: date
    end: date
    as_of: date
    rows: list[dict[str, Any]]


@router.get(
    "/indicators", response_model=IndicatorsOut, summary="Dual-prevention indicators", responses=problem_responses()
)
def get_indicators(
    request: Request,
    access: AccessDep,
    now_ms: NowMs,
    start: Annotated[date | None, Query(description="first local day (default: 365 days before end)")] = None,
    end: Annotated[date | None, Query(description="day after the last (default: tomorrow)")] = None,
    by: Annotated[Literal["district", "firm", "city"], Query()] = "district",
) -> IndicatorsOut:
    """Serious-hazard remediation rate (on time, late, overdue, open), hazards per 10,000 units,
    accidents and deaths per 10,000 units, and the distribution of risk grades."""
    today = hs.local_day(from_ms(now_ms), _tz(request))
    end = end or today + timedelta(days=1)
    start = start or end - timedelta(days=365)
    if end <= start:
        raise invalid_parameter("end", "end must be after start")
    units, hz, acc = hs.indicator_rows(access, _tz(request))
    grades = {r.device_id: r.grade for r in _grades(request, access, now_ms)}
    rows = indicators(units, hz, acc, grades, start, end, min(today, end), by)
    return IndicatorsOut(by=by, start=start, end=end, as_of=min(today, end), rows=rows)


class AccidentIn(BaseModel):
    """An accident on a device."""

    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(min_length=1, max_length=64)
    occurred_on: date
    deaths: int = Field(0, ge=0, le=1000)
    injuries: int = Field(0, ge=0, le=1000)
    description: str = Field("", max_length=4000)


class AccidentOut(AccidentIn):
    """A recorded accident."""

    model_config = ConfigDict(from_attributes=True, extra="ignore")
    id: int
    recorded_by: str
    recorded_at: UtcDatetime


@router.post(
    "/accidents",
    response_model=AccidentOut,
    status_code=201,
    summary="Record an accident",
    responses=problem_responses({403: "the regulator's", 404: "unknown device"}),
)
def create_accident(access: AccessDep, who: RegulatorDep, now_ms: NowMs, body: AccidentIn) -> AccidentOut:
    """The regulator records an accident (for the per-10,000-unit indicators)."""
    a = _guard(
        lambda: hs.record_accident(
            access,
            body.device_id,
            body.occurred_on,
            body.deaths,
            body.injuries,
            body.description,
            who.name,
            from_ms(now_ms),
        )
    )
    return AccidentOut.model_validate(a)
