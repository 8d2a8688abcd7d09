"""Planning runs against the stores: load the fleet, compute inputs, decide, store, alarm, publish.

``run_planning`` is what the CLI, the API and a scheduler call. Reads are bulk queries into
pandas frames; the decision itself is :func:`semon.rules.maintenance.planner.plan_frame`.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import JSON, Integer, String, Text, bindparam, cast, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from semon.rules.alarms import AlarmStore
from semon.rules.maintenance.calendar import ITEM_CLASSES
from semon.rules.maintenance.compliance import (
    COMPLIANCE_TYPES,
    Notifier,
    device_info,
    publish,
    reversion_spec,
    sync_alarms,
    transition,
    wanted_alarms,
)
from semon.rules.maintenance.inputs import evidence_records, monitoring_inputs
from semon.rules.maintenance.inspection import inspection_frame
from semon.rules.maintenance.planner import SCORE_COMPONENTS, plan_frame
from semon.rules.maintenance.policy import Policy
from semon.rules.maintenance.records import last_visits
from semon.store.db import Database
from semon.store.maintenance import DeviceFacts, MaintenanceDecision, MaintenancePlan, MaintenanceRecord
from semon.store.models import Alarm, Device, Firm, UseUnit
from semon.store.telemetry import Point, TelemetryStore
from semon.timeutil import DEFAULT_TIMEZONE, from_ms, local_date, local_day_start_ms, now_ms

log = logging.getLogger(__name__)

BOARD_MEASUREMENT = "maintenance_plan"
RATE_WINDOW_DAYS = 365  # design choice: a firm's rates over the last year
# Guangzhou 2024 pilot firm conditions (domain.md §4.5): paperless and on-time ≥ 95 %, ≥ 400 elevators.
PILOT_MIN_RATE = 0.95
PILOT_MIN_ELEVATORS = 400


# ------------------------------------------------------------------------------ loading
def registry_frame(db: Database, kind: str | None = None, device_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Devices with firm, use-unit and maintenance facts, one row per device (index: position)."""
    stmt = (
        select(
            Device.id.label("device_id"), Device.kind, Device.district, Device.firm_id, Device.use_unit_id,
            _text(func.coalesce(DeviceFacts.commission_date, Device.install_date), "commission_date"),
            _text(DeviceFacts.inspection_valid_until), _text(DeviceFacts.last_inspection_date),
            DeviceFacts.liability_insurance,
            DeviceFacts.safety_grade, Firm.tech_level.label("firm_tech_level"),
            Firm.credit_grade.label("firm_credit_grade"), Firm.credit_score.label("firm_credit_score"),
            UseUnit.mgmt_level.label("use_unit_mgmt_level"),
        )
        .outerjoin(DeviceFacts, DeviceFacts.device_id == Device.id)
        .outerjoin(Firm, Firm.id == Device.firm_id)
        .outerjoin(UseUnit, UseUnit.id == Device.use_unit_id)
        .order_by(Device.id)
    )  # fmt: skip
    if kind is not None:
        stmt = stmt.where(Device.kind == kind)
    if device_ids is not None:
        stmt = stmt.where(Device.id.in_(list(device_ids)))
    with db.session() as s:
        res = s.execute(stmt)
        df = result_frame(res)
    df["liability_insurance"] = df["liability_insurance"].map({True: 1.0, False: 0.0}).astype(float)
    return _parse_dates(df, ("commission_date", "inspection_valid_until", "last_inspection_date"))


def result_frame(res: Any) -> pd.DataFrame:
    """A query result as a DataFrame; plain tuples first (pandas probes Row objects one by one,
    several times slower on 300,000 rows)."""
    return pd.DataFrame([tuple(r) for r in res], columns=list(res.keys()))


def _text(col: Any, label: str | None = None) -> Any:
    """A DATE column read as its ISO text: parsing 300,000 dates in one pandas call beats one
    driver conversion per value (both SQLite and PostgreSQL render dates as YYYY-MM-DD)."""
    return cast(col, String).label(label or col.key)


def _parse_dates(df: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    for c in cols:
        df[c] = pd.to_datetime(df[c], format="%Y-%m-%d", errors="coerce")
    return df


def current_plans(db: Database, device_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The plan in force per device (index ``device_id``)."""
    stmt = select(
        MaintenancePlan.device_id, MaintenancePlan.mode.label("current_mode"), _text(MaintenancePlan.mode_since),
        _text(MaintenancePlan.planned_since), MaintenancePlan.signature, MaintenancePlan.reverted,
        *(_text(getattr(MaintenancePlan, f"{c}_due"), f"cur_{c}_due") for c in ITEM_CLASSES),
        MaintenancePlan.score.label("cur_score"),
    )  # fmt: skip
    if device_ids is not None and len(device_ids) <= 2000:
        stmt = stmt.where(MaintenancePlan.device_id.in_(list(device_ids)))
    with db.session() as s:
        res = s.execute(stmt)
        df = result_frame(res)
    dates = ("mode_since", "planned_since", *(f"cur_{c}_due" for c in ITEM_CLASSES))
    return _parse_dates(df, dates).set_index("device_id")


def firm_rates(
    db: Database, as_of: date, window_days: int = RATE_WINDOW_DAYS, tz: str = DEFAULT_TIMEZONE
) -> pd.DataFrame:
    """Per firm: elevators maintained, records in the window (local days in ``tz``), on-time and paperless rates.

    The Guangzhou 2024 pilot asks for paperless and on-time rates ≥ 95 % and ≥ 400 elevators
    under contract (domain.md §4.5); the ``meets_*`` columns say whether a firm does.
    """
    since = from_ms(local_day_start_ms(as_of - timedelta(days=window_days), tz))
    with db.session() as s:
        recs = s.execute(
            select(
                MaintenanceRecord.firm_id,
                func.count(),
                func.sum(cast(MaintenanceRecord.on_time, Integer)),
                func.sum(cast(MaintenanceRecord.paperless, Integer)),
            )
            .where(MaintenanceRecord.performed_at >= since)
            .group_by(MaintenanceRecord.firm_id)
        ).all()
        fleet = s.execute(
            select(Device.firm_id, func.count()).where(Device.kind == "elevator").group_by(Device.firm_id)
        ).all()
        names = dict(s.execute(select(Firm.id, Firm.name)).all())
    r = pd.DataFrame(recs, columns=["firm_id", "records", "on_time", "paperless"]).set_index("firm_id")
    f = pd.DataFrame(fleet, columns=["firm_id", "elevators"]).set_index("firm_id")
    df = f.join(r, how="outer")
    df = df[df.index.notna()]
    counts = ["elevators", "records", "on_time", "paperless"]
    df[counts] = df[counts].fillna(0)
    df = df.astype({"elevators": int, "records": int, "on_time": int, "paperless": int})
    n = df["records"].where(df["records"] > 0)
    df["on_time_rate"] = (df["on_time"] / n).round(4)
    df["paperless_rate"] = (df["paperless"] / n).round(4)
    df["meets_on_time"] = df["on_time_rate"] >= PILOT_MIN_RATE
    df["meets_paperless"] = df["paperless_rate"] >= PILOT_MIN_RATE
    df["meets_size"] = df["elevators"] >= PILOT_MIN_ELEVATORS
    df["name"] = [names.get(i) for i in df.index]
    df.index.name = "firm_id"
    return df.sort_index()


# ------------------------------------------------------------------------------ running
@dataclass(slots=True)
class PlanRun:
    """Result of one planning run."""

    as_of: date
    now_ms: int
    policy: Policy
    plan: pd.DataFrame  # one row per elevator: inputs, decision, due dates (index device_id)
    inspections: pd.DataFrame  # one row per device of any kind
    decisions_written: int = 0
    alarm_messages: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def build_plan(
    db: Database,
    telemetry: TelemetryStore | None,
    policy: Policy,
    *,
    at_ms: int,
    device_ids: Sequence[str] | None = None,
    timings: dict[str, float] | None = None,
    tz: str = DEFAULT_TIMEZONE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load everything for the given devices (default: all) and decide; nothing is written.

    Days are local days in ``tz``. Returns (elevator plan indexed by device id, inspection
    frame of every device).
    """
    tm = timings if timings is not None else {}
    t0 = time.perf_counter()
    as_of = local_date(at_ms, tz)
    reg = registry_frame(db, None, device_ids)
    ins = pd.concat([reg[["device_id", "kind", "firm_id", "district"]], inspection_frame(reg, policy, as_of)], axis=1)
    elev = reg[reg["kind"] == "elevator"].set_index("device_id")
    elev = elev.join(inspection_frame(elev, policy, as_of)[["inspection_due"]])
    ids = list(elev.index)
    visits = last_visits(db, ids, tz)
    cur = current_plans(db, ids)
    rates = firm_rates(db, as_of, tz=tz) if _firm_gates_on(policy) else None
    tm["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mon = monitoring_inputs(db, telemetry, policy, at_ms, ids)
    tm["inputs_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = elev.join(visits).join(cur).join(mon)
    if rates is not None:
        frame = frame.join(rates[["paperless_rate", "on_time_rate", "elevators"]].rename(
            columns={"paperless_rate": "firm_paperless_rate", "on_time_rate": "firm_on_time_rate",
                     "elevators": "firm_elevators"}), on="firm_id")  # fmt: skip
    decided = plan_frame(frame.reset_index(), policy, as_of).set_index(frame.index)
    # The decision's columns replace the inputs of the same name (mode_since: new, not current).
    plan = frame.drop(columns=[c for c in decided.columns if c in frame.columns]).join(decided)
    tm["plan_s"] = time.perf_counter() - t0
    return plan, ins


def _firm_gates_on(policy: Policy) -> bool:
    g = policy.gates
    return g.firm_min_on_time_rate > 0 or g.firm_min_paperless_rate > 0 or g.firm_min_elevators > 0


def signatures(plan: pd.DataFrame, policy: Policy) -> pd.Series:
    """What makes a decision new: mode, failed gates, fired triggers, whole score, policy version."""
    score = plan["score"].fillna(-1).astype(float).astype(np.int64).astype(str)
    return (
        plan["mode"].astype(str)
        + "|g:"
        + plan["failed_gates"].map(",".join)
        + "|t:"
        + plan["fired_triggers"].map(",".join)
        + "|s:"
        + score
        + "|v:"
        + policy.version
    )


def iso_list(s: pd.Series) -> list[str | None]:
    """Dates as ISO strings (None for NaT), column-wise."""
    values = pd.to_datetime(s, errors="coerce").to_numpy(dtype="datetime64[D]")
    out = np.datetime_as_string(values, unit="D").astype(object)
    out[np.isnat(values)] = None
    return out.tolist()


def date_list(s: pd.Series) -> list[date | None]:
    """Dates as ``datetime.date`` (None for NaT), column-wise."""
    values = pd.to_datetime(s, errors="coerce").to_numpy(dtype="datetime64[D]")
    return values.astype(object).tolist()  # NaT becomes None


def num_list(s: pd.Series | None, nd: int, n: int) -> list[float | None]:
    """Rounded floats (None for NaN / missing), column-wise."""
    if s is None:
        return [None] * n
    a = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    out = np.round(a, nd).astype(object)
    out[np.isnan(a)] = None
    return out.tolist()


def obj_list(s: pd.Series | None, n: int) -> list[Any]:
    """Values with NaN / NaT as None."""
    if s is None:
        return [None] * n
    return s.astype(object).where(s.notna(), None).tolist()


def decision_rows(
    plan: pd.DataFrame, policy: Policy, as_of: date, decided_at: datetime, at_ms: int, trigger: str = "plan"
) -> list[dict[str, Any]]:
    """``maintenance_decisions`` rows for the elevators of ``plan`` (with inputs and evidence).

    Column-wise conversions first, then one plain-Python pass: on the first planning of a city
    this runs for every elevator.
    """
    n = len(plan)
    gates = {
        c.removeprefix("gate_"): plan[c].to_numpy(dtype=bool).tolist() for c in plan.columns if c.startswith("gate_")
    }
    trigs = {
        c.removeprefix("trigger_"): plan[c].to_numpy(dtype=bool).tolist()
        for c in plan.columns
        if c.startswith("trigger_")
    }
    g = plan.get
    reg_cols = {
        "firm_id": obj_list(g("firm_id"), n),
        "use_unit_id": obj_list(g("use_unit_id"), n),
        "commission_date": iso_list(g("commission_date")),
        "age_years": num_list(g("age_years"), 2, n),
        "firm_tech_level": num_list(g("firm_tech_level"), 2, n),
        "firm_credit_grade": obj_list(g("firm_credit_grade"), n),
        "firm_credit_score": num_list(g("firm_credit_score"), 2, n),
        "use_unit_mgmt_level": num_list(g("use_unit_mgmt_level"), 2, n),
        "inspection_due": iso_list(g("inspection_due")),
    }
    insurance = obj_list(g("liability_insurance"), n)
    visits = {k: iso_list(plan[f"last_{k}"]) if f"last_{k}" in plan else [None] * n for k in ITEM_CLASSES}
    pts = {k: num_list(plan[f"pts_{k}"], 4, n) for k in SCORE_COMPONENTS}
    zero = {k: obj_list(g(f"zero_{k}"), n) for k in SCORE_COMPONENTS}
    score = num_list(plan["score"], 4, n)
    dues = {k: iso_list(plan[f"{k}_due"]) for k in ITEM_CLASSES}
    since = iso_list(plan["mode_since"])
    modes, intervals = plan["mode"].tolist(), plan["interval_days"].astype(int).tolist()
    eligible, reasons = plan["eligible"].astype(bool).tolist(), plan["reasons"].tolist()
    ids = plan.index.tolist()
    rows = []
    for i, ev in enumerate(evidence_records(plan, policy, at_ms)):
        registry = {k: v[i] for k, v in reg_cols.items()}
        registry["liability_insurance"] = None if insurance[i] is None else bool(insurance[i])
        registry["last_visits"] = {k: v[i] for k, v in visits.items()}
        rows.append(
            {
                "device_id": ids[i],
                "decided_at": decided_at,
                "as_of": as_of,
                "trigger": trigger,
                "policy_version": policy.version,
                "policy_sha256": policy.sha256,
                "mode": modes[i],
                "interval_days": intervals[i],
                "eligible": eligible[i],
                "score": score[i],
                "reasons": list(reasons[i]),
                "gates": [{"gate": k, "passed": v[i]} for k, v in gates.items()],
                "triggers": [{"trigger": k, "fired": v[i]} for k, v in trigs.items()],
                "breakdown": {k: v[i] for k, v in pts.items()} | {"total": score[i]},
                # Why a component scored 0 (an input unknown), so "0 points" is never unexplained.
                "inputs": {"registry": registry, "monitoring": ev,
                           "zero_points": {k: v[i] for k, v in zero.items() if v[i] is not None}},
                "due": {k: v[i] for k, v in dues.items()} | {"mode_since": since[i]},
            }
        )
    return rows


def _upsert(db: Database, table: Any, rows: list[dict[str, Any]], key: str) -> None:
    if not rows:
        return
    dialect = db.engine.dialect.name
    ins = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    cols = [c for c in rows[0] if c != key]
    stmt = ins.on_conflict_do_update(index_elements=[key], set_={c: getattr(ins.excluded, c) for c in cols})
    with db.session() as s:
        for k in range(0, len(rows), 5000):
            s.execute(stmt, rows[k : k + 5000])


def _bulk_insert(table: Any, dialect: str) -> tuple[Any, list[str]]:
    """An INSERT for executemany whose JSON values arrive already serialised (orjson, done by the
    caller): the generic JSON type would run the standard-library encoder once per value, the
    largest single cost of writing a city's first decisions. PostgreSQL casts the text to JSON."""
    json_cols = [c.name for c in table.columns if isinstance(c.type, JSON)]
    values: dict[str, Any] = {}
    for c in table.columns:
        if c.primary_key:
            continue
        if c.name in json_cols:
            p = bindparam(c.name, type_=Text())
            values[c.name] = cast(p, JSON) if dialect == "postgresql" else p
        else:
            values[c.name] = bindparam(c.name, type_=c.type)
    return table.insert().values(values), json_cols


@contextmanager
def bulk_objects() -> Iterator[None]:
    """Pause the cyclic garbage collector while hundreds of thousands of plain rows are built and
    written: each collection would rescan every live row (quadratic), and these rows hold no cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def store_plan(
    db: Database, plan: pd.DataFrame, policy: Policy, as_of: date, at_ms: int, trigger: str = "plan"
) -> int:
    """Write decisions whose signature changed and upsert the plans that changed; return decisions written."""
    with bulk_objects():
        return _store_plan(db, plan, policy, as_of, at_ms, trigger)


def _store_plan(db: Database, plan: pd.DataFrame, policy: Policy, as_of: date, at_ms: int, trigger: str) -> int:
    decided_at = from_ms(at_ms)
    sig = signatures(plan, policy)
    prev = plan["signature"] if "signature" in plan.columns else pd.Series(None, index=plan.index, dtype=object)
    new_decision = (prev.isna() | (prev != sig)).to_numpy()
    changed = pd.Series(new_decision, index=plan.index)
    for cls in ITEM_CLASSES:
        cur = plan.get(f"cur_{cls}_due")
        if cur is not None:
            changed |= ~(pd.to_datetime(cur) == plan[f"{cls}_due"])
    if "cur_score" in plan.columns:
        changed |= ~(plan["cur_score"].astype(float).round(2) == plan["score"].round(2))
    to_decide = plan[new_decision]
    decision_ids: dict[str, int] = {}
    if len(to_decide):
        rows = decision_rows(to_decide, policy, as_of, decided_at, at_ms, trigger)
        t = MaintenanceDecision.__table__
        with db.session() as s:
            # Plain executemany, then read the new ids back by primary-key range: RETURNING with
            # parameter order falls back to one statement per row on SQLite (10× slower here).
            before = s.scalar(select(func.coalesce(func.max(t.c.id), 0)))
            stmt, json_cols = _bulk_insert(t, db.engine.dialect.name)
            for k in range(0, len(rows), 5000):
                chunk = rows[k : k + 5000]
                for r in chunk:
                    for c in json_cols:
                        r[c] = orjson.dumps(r[c]).decode()
                s.execute(stmt, chunk)
            new = s.execute(
                select(t.c.device_id, func.max(t.c.id))
                .where(t.c.id > before, t.c.trigger == trigger, t.c.decided_at == decided_at)
                .group_by(t.c.device_id)
            )
            decision_ids.update({d: i for d, i in new})
    upd = plan[changed.to_numpy()]
    if not len(upd):
        return len(decision_ids)
    prev_rev = upd["reverted"] if "reverted" in upd.columns else pd.Series(False, index=upd.index)
    # A reversion stands until a plan grants an on-demand tier again.
    reverted = (prev_rev.fillna(False).astype(bool) & (upd["mode"] == policy.standard.mode)).tolist()
    n = len(upd)
    sig_upd = sig[changed.to_numpy()].tolist()
    firm = [f if isinstance(f, str) else None for f in upd["firm_id"].tolist()]
    modes, intervals = upd["mode"].tolist(), upd["interval_days"].astype(int).tolist()
    eligible, scores = upd["eligible"].astype(bool).tolist(), num_list(upd["score"], 4, n)
    since, first = date_list(upd["mode_since"]), date_list(upd["planned_since"])
    dues = {k: date_list(upd[f"{k}_due"]) for k in ITEM_CLASSES}
    existing = plan["signature"].notna() if "signature" in plan.columns else pd.Series(False, index=plan.index)
    existing_l = existing[changed.to_numpy()].tolist()
    rows = []
    for i, (dev, why) in enumerate(zip(upd.index.tolist(), upd["reasons"].tolist(), strict=True)):
        rec: dict[str, Any] = {
            "device_id": dev,
            "firm_id": firm[i],
            "mode": modes[i],
            "interval_days": intervals[i],
            "eligible": eligible[i],
            "score": scores[i],
            "reasons": list(why),
            "mode_since": since[i],
            "planned_since": first[i],
            "reverted": reverted[i],
            "signature": sig_upd[i],
            **{f"{k}_due": v[i] for k, v in dues.items()},
        }
        did = decision_ids.get(dev)
        if did is not None:
            rec["decision_id"] = did
            rec["decided_at"] = decided_at
        elif not existing_l[i]:
            raise RuntimeError(f"plan of {dev} has no decision")  # cannot happen: a first plan is a new decision
        rows.append(rec)
    with_decision = [r for r in rows if "decision_id" in r]
    due_only = [r for r in rows if "decision_id" not in r]
    _upsert(db, MaintenancePlan.__table__, with_decision, "device_id")
    if due_only:
        with db.session() as s:
            s.execute(update(MaintenancePlan), due_only)
    return len(decision_ids)


def board_points(
    plan: pd.DataFrame, inspections: pd.DataFrame, at_ms: int, modes: Sequence[str] = ()
) -> list[Point]:
    """Points of measurement ``maintenance_plan`` (docs/boards.md): per kind, firm, district and mode.

    Tags are bounded sets (docs/storage.md); fields are integer counts — ``devices``,
    ``overdue_<class>`` and ``due_soon_<class>`` of the four item classes, ``inspection_overdue``
    / ``_due_soon`` / ``_unknown`` — and ``mean_score``. Every mode in ``modes`` gets a point for
    each firm and district that has elevators, with zero counts when none is in that mode: the
    boards sum the newest point of each group, so a group that just emptied must say so.
    """
    time_ns = at_ms * 1_000_000
    points: list[Point] = []
    ins = inspections.assign(
        inspection_overdue=(inspections["inspection_status"] == "overdue").astype(int),
        inspection_due_soon=(inspections["inspection_status"] == "due_soon").astype(int),
        inspection_unknown=(inspections["inspection_status"] == "unknown").astype(int),
    )
    flags = [f"{w}_{c}" for c in ITEM_CLASSES for w in ("overdue", "due_soon")]
    if len(plan):
        p = plan.reset_index()[["device_id", "firm_id", "district", "mode", "score", *flags]]
        p = p.merge(
            ins[["device_id", "inspection_overdue", "inspection_due_soon", "inspection_unknown"]],
            on="device_id",
            how="left",
        )
        p[["firm_id", "district"]] = p[["firm_id", "district"]].fillna("")
        agg = p.groupby(["firm_id", "district", "mode"]).agg(
            devices=("device_id", "size"), mean_score=("score", "mean"), **{f: (f, "sum") for f in flags},
            inspection_overdue=("inspection_overdue", "sum"), inspection_due_soon=("inspection_due_soon", "sum"),
            inspection_unknown=("inspection_unknown", "sum"),
        )  # fmt: skip
        if modes:
            places = agg.index.droplevel("mode").unique()
            full = pd.MultiIndex.from_tuples(
                [(f, d, m) for f, d in places for m in modes], names=["firm_id", "district", "mode"]
            )
            agg = agg.reindex(full)
        for (firm, district, mode), r in agg.iterrows():
            fields: dict[str, Any] = {k: int(0 if pd.isna(v) else v) for k, v in r.items() if k != "mean_score"}
            fields["mean_score"] = 0.0 if pd.isna(r["mean_score"]) else float(round(r["mean_score"], 2))
            tags = {"kind": "elevator", "firm": firm, "district": district, "mode": mode}
            points.append(Point(BOARD_MEASUREMENT, tags, fields, time_ns, device_id=f"{firm}/{district}/{mode}"))
    v = ins[ins["kind"] != "elevator"].fillna({"firm_id": "", "district": ""})
    if len(v):
        agg = v.groupby(["kind", "firm_id", "district"]).agg(
            devices=("device_id", "size"), inspection_overdue=("inspection_overdue", "sum"),
            inspection_due_soon=("inspection_due_soon", "sum"), inspection_unknown=("inspection_unknown", "sum"),
        )  # fmt: skip
        for (kind, firm, district), r in agg.iterrows():
            tags = {"kind": kind, "firm": firm, "district": district}
            points.append(
                Point(
                    BOARD_MEASUREMENT,
                    tags,
                    {k: int(x) for k, x in r.items()},
                    time_ns,
                    device_id=f"{kind}/{firm}/{district}",
                )
            )
    return points


def summarise_modes(run: PlanRun) -> pd.DataFrame:
    """Elevators per mode with their overdue counts, plus inspection statuses of every device."""
    from semon.rules.maintenance.planner import summarise

    out = summarise(run.plan, run.policy)
    counts = run.inspections["inspection_status"].value_counts()
    for st in ("overdue", "due_soon", "unknown"):
        out.loc["(all devices)", f"inspection_{st}"] = int(counts.get(st, 0))
    return out.fillna(0).astype(int)


def run_planning(
    db: Database,
    telemetry: TelemetryStore | None,
    policy: Policy,
    *,
    at_ms: int | None = None,
    device_ids: Sequence[str] | None = None,
    store: bool = True,
    alarms: bool = True,
    board: bool = True,
    notify: Notifier | None = None,
    tz: str = DEFAULT_TIMEZONE,
) -> PlanRun:
    """Plan the given elevators (default: every device), then store, alarm and feed the board.

    ``store`` writes decisions and plans; a reversion the run finds (an on-demand elevator whose
    trigger fired or whose entrapment gate failed) goes through the live path,
    :meth:`Reversion.revert`, so it is flagged ``reverted`` and its ``maintenance_reverted``
    notice is sent (with ``alarms``) exactly as when a collector sees it. ``alarms`` syncs the
    compliance alarms (maintenance overdue, inspection overdue / due soon) and clears reversion
    notices of elevators that are on demand again; ``board`` writes the ``maintenance_plan``
    measurement to ``telemetry``. Days are local days in ``tz``.
    """
    at = at_ms if at_ms is not None else now_ms()
    as_of = local_date(at, tz)
    timings: dict[str, float] = {}
    plan, ins = build_plan(db, telemetry, policy, at_ms=at, device_ids=device_ids, timings=timings, tz=tz)
    run = PlanRun(as_of, at, policy, plan, ins, timings=timings)
    if store:
        t0 = time.perf_counter()
        reverting = reversions(plan, policy)
        done = apply_reversions(db, plan.loc[reverting], policy, at, notify, tz, publish_notice=alarms)
        run.alarm_messages += [r.notice for r in done if r.notice is not None]
        run.decisions_written = len(done) + store_plan(db, plan.drop(index=reverting), policy, as_of, at)
        timings["store_s"] = time.perf_counter() - t0
    if alarms:
        t0 = time.perf_counter()
        scope = None if device_ids is None else set(device_ids)
        wanted = wanted_alarms(plan.reset_index(), ins, policy, tz)
        run.alarm_messages += sync_alarms(db, wanted, scope, at, notify)
        run.alarm_messages += clear_reversions(db, plan, policy, at, notify)
        timings["alarms_s"] = time.perf_counter() - t0
    # A subset's counts would overwrite the whole fleet's on the boards: only full runs feed them.
    if board and telemetry is not None and device_ids is None:
        t0 = time.perf_counter()
        try:
            telemetry.write(board_points(plan, ins, at, policy.modes))
        except Exception as e:  # the board is a view; planning stands without it
            log.warning("maintenance board points not written: %s", e)
        timings["board_s"] = time.perf_counter() - t0
    return run


def reversions(plan: pd.DataFrame, policy: Policy) -> pd.Index:
    """Elevators this plan takes off an on-demand tier for a reversion reason: a fired trigger
    (major faults, offline) or an equipment-caused entrapment (the entrapment gate)."""
    if "current_mode" not in plan.columns or not len(plan):
        return plan.index[:0]
    std = policy.standard.mode
    cur = plan["current_mode"]
    was_on_demand = cur.notna() & (cur != std)
    why = plan["fired_triggers"].map(bool) | plan["failed_gates"].map(lambda g: "entrapment" in g)
    return plan.index[(was_on_demand & (plan["mode"] == std) & why).to_numpy()]


def apply_reversions(
    db: Database, rows: pd.DataFrame, policy: Policy, at_ms: int, notify: Notifier | None, tz: str,
    publish_notice: bool = True,
) -> list[Any]:
    """Revert the elevators of ``rows`` through the live path (one code path for both); return the
    reversions done (:class:`~semon.rules.maintenance.reversion.Reverted`, with their notices)."""
    from semon.rules.maintenance.reversion import Reversion  # reversion builds on this module

    if not len(rows):
        return []
    rev = Reversion(db, policy, notify, clock=lambda: at_ms, tz=tz)
    out = []
    for dev, r in rows.iterrows():
        trigger, reason, cause = plan_reversion_cause(r, policy)
        done = rev.revert(str(dev), trigger, reason, cause, at_ms, {"found_by": "plan"}, publish_notice=publish_notice)
        if done is not None:
            out.append(done)
    return out


def plan_reversion_cause(r: pd.Series, policy: Policy) -> tuple[str, str, dict[str, Any]]:
    """(trigger name, reason, cause) of a reversion a plan run found, naming the alarms behind it."""
    fired = list(r["fired_triggers"])
    trigger = fired[0] if fired else "entrapment"
    # Worded like the live path's reasons: "<trigger>: <what was seen>".
    if fired:
        texts = [t.removeprefix("reversion: ") for t in r["reasons"] if t.startswith("reversion: ")]
    else:
        texts = [t for t in r["reasons"] if "entrapment" in t]
    texts = [f"{trigger}: " + "; ".join(texts)] if texts else []
    col = {"major_faults": "major_fault_ids", "entrapment": "entrapment_ids", "offline": "offline_alarm_ids"}
    ids = r.get(col.get(trigger, ""))
    ids = [int(i) for i in ids] if isinstance(ids, list | tuple) else []
    return trigger, texts[0] if texts else trigger, {"alarm_id": ids[-1] if ids else None, "alarm_ids": ids}


def clear_reversions(
    db: Database, plan: pd.DataFrame, policy: Policy, at_ms: int, notify: Notifier | None
) -> list[dict[str, Any]]:
    """Clear the reversion notice of elevators that a plan put back on an on-demand tier."""
    back = plan.index[plan["mode"] != policy.standard.mode]
    if not len(back):
        return []
    spec = reversion_spec(policy)
    with db.session() as s:
        active = s.execute(
            select(Alarm.device_id, Alarm.firm_id, Alarm.onset_ts).where(Alarm.active, Alarm.type == spec.alarm_type)
        ).all()
    store = AlarmStore(db)
    out = []
    wanted = set(back)
    for dev, firm, onset in active:
        if dev in wanted:
            t = transition(
                "cleared",
                spec,
                device_info(dev, "elevator", firm),
                onset,
                max(at_ms, onset),
                "",
                {"mode": plan.at[dev, "mode"]},
            )
            msg = publish(store, t, notify)
            if msg:
                out.append(msg)
    return out


__all__ = [
    "BOARD_MEASUREMENT",
    "COMPLIANCE_TYPES",
    "PlanRun",
    "board_points",
    "build_plan",
    "current_plans",
    "firm_rates",
    "registry_frame",
    "run_planning",
    "store_plan",
]
