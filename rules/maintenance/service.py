"""Planning runs against the stores: load the fleet, compute inputs, decide, store, alarm, publish.

``run_planning`` is what the CLI, the API and a scheduler call. Reads are bulk queries into
pandas frames; the decision itself is :func:`semon.rules.maintenance.planner.plan_frame`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select, update
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
from semon.store.db import Database
from semon.store.maintenance import DeviceFacts, MaintenanceDecision, MaintenancePlan, MaintenanceRecord
from semon.store.models import Alarm, Device, Firm, UseUnit
from semon.store.telemetry import Point, TelemetryStore

log = logging.getLogger(__name__)

BOARD_MEASUREMENT = "maintenance_plan"
RATE_WINDOW_DAYS = 365


def now_ms() -> int:
    """Wall clock, epoch ms."""
    return time.time_ns() // 1_000_000


def utc_day(ms: int) -> date:
    """The UTC calendar day of an epoch-ms instant (semon plans in UTC days)."""
    return datetime.fromtimestamp(ms / 1000, UTC).date()


# ------------------------------------------------------------------------------ loading
def registry_frame(db: Database, kind: str | None = None, device_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Devices with firm, use-unit and maintenance facts, one row per device (index: position)."""
    stmt = (
        select(
            Device.id.label("device_id"), Device.kind, Device.district, Device.firm_id, Device.use_unit_id,
            func.coalesce(DeviceFacts.commission_date, Device.install_date).label("commission_date"),
            DeviceFacts.inspection_valid_until, DeviceFacts.last_inspection_date, DeviceFacts.liability_insurance,
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
        df = pd.DataFrame(res.all(), columns=list(res.keys()))
    df["liability_insurance"] = df["liability_insurance"].map({True: 1.0, False: 0.0}).astype(float)
    return df


def last_visits(db: Database, device_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Per device, the last visit of each item class (columns ``last_<class>``)."""
    stmt = select(MaintenanceRecord.device_id, MaintenanceRecord.item_class, func.max(MaintenanceRecord.performed_at))
    if device_ids is not None and len(device_ids) <= 2000:
        stmt = stmt.where(MaintenanceRecord.device_id.in_(list(device_ids)))
    stmt = stmt.group_by(MaintenanceRecord.device_id, MaintenanceRecord.item_class)
    with db.session() as s:
        rows = s.execute(stmt).all()
    cols = [f"last_{c}" for c in ITEM_CLASSES]
    if not rows:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="device_id"), dtype="datetime64[ns]")
    df = pd.DataFrame(rows, columns=["device_id", "item_class", "at"])
    df["at"] = pd.to_datetime(df["at"], utc=True).dt.tz_localize(None).dt.normalize()
    wide = df.pivot_table(index="device_id", columns="item_class", values="at", aggfunc="max")
    wide = wide.reindex(columns=list(ITEM_CLASSES))
    wide.columns = cols
    return wide.astype("datetime64[ns]")


def current_plans(db: Database, device_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The plan in force per device (index ``device_id``)."""
    stmt = select(
        MaintenancePlan.device_id, MaintenancePlan.mode.label("current_mode"), MaintenancePlan.mode_since,
        MaintenancePlan.planned_since, MaintenancePlan.signature, MaintenancePlan.reverted,
        *(getattr(MaintenancePlan, f"{c}_due").label(f"cur_{c}_due") for c in ITEM_CLASSES),
        MaintenancePlan.score.label("cur_score"),
    )  # fmt: skip
    if device_ids is not None and len(device_ids) <= 2000:
        stmt = stmt.where(MaintenancePlan.device_id.in_(list(device_ids)))
    with db.session() as s:
        res = s.execute(stmt)
        df = pd.DataFrame(res.all(), columns=list(res.keys()))
    return df.set_index("device_id")


def firm_rates(db: Database, as_of: date, window_days: int = RATE_WINDOW_DAYS) -> pd.DataFrame:
    """Per firm: elevators maintained, records in the window, on-time and paperless rates.

    The Guangzhou 2024 pilot asks for paperless and on-time rates ≥ 95 % and ≥ 400 elevators
    under contract (domain.md §4.5); the ``meets_*`` columns say whether a firm does.
    """
    since = datetime.combine(as_of, datetime.min.time(), UTC) - pd.Timedelta(days=window_days)
    with db.session() as s:
        recs = s.execute(
            select(
                MaintenanceRecord.firm_id, func.count(), func.sum(func.cast(MaintenanceRecord.on_time, sa_int())),
                func.sum(func.cast(MaintenanceRecord.paperless, sa_int())),
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
    df["meets_on_time"] = df["on_time_rate"] >= 0.95
    df["meets_paperless"] = df["paperless_rate"] >= 0.95
    df["meets_size"] = df["elevators"] >= 400
    df["name"] = [names.get(i) for i in df.index]
    df.index.name = "firm_id"
    return df.sort_index()


def sa_int() -> Any:
    """SQL integer type for summing booleans on every dialect."""
    from sqlalchemy import Integer

    return Integer()


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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load everything for the given devices (default: all) and decide; nothing is written.

    Returns (elevator plan indexed by device id, inspection frame of every device).
    """
    tm = timings if timings is not None else {}
    t0 = time.perf_counter()
    as_of = utc_day(at_ms)
    reg = registry_frame(db, None, device_ids)
    ins = pd.concat([reg[["device_id", "kind", "firm_id", "district"]], inspection_frame(reg, policy, as_of)], axis=1)
    elev = reg[reg["kind"] == "elevator"].set_index("device_id")
    elev = elev.join(inspection_frame(elev, policy, as_of)[["inspection_due"]])
    ids = list(elev.index)
    visits = last_visits(db, ids)
    cur = current_plans(db, ids)
    rates = firm_rates(db, as_of) if _firm_gates_on(policy) else None
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
        plan["mode"].astype(str) + "|g:" + plan["failed_gates"].map(",".join) + "|t:"
        + plan["fired_triggers"].map(",".join) + "|s:" + score + "|v:" + policy.version
    )


def _date(v: Any) -> date | None:
    return None if v is None or pd.isna(v) else pd.Timestamp(v).date()


def decision_rows(
    plan: pd.DataFrame, policy: Policy, as_of: date, decided_at: datetime, at_ms: int, trigger: str = "plan"
) -> list[dict[str, Any]]:
    """``maintenance_decisions`` rows for the elevators of ``plan`` (with inputs and evidence)."""
    gate_cols = [c for c in plan.columns if c.startswith("gate_")]
    trig_cols = [c for c in plan.columns if c.startswith("trigger_")]
    evid = evidence_records(plan, policy, at_ms)
    cols = {c: plan[c].to_numpy() for c in plan.columns}
    ids = plan.index.to_numpy()
    rows = []
    for i, ev in enumerate(evid):
        def c(name: str, _i: int = i) -> Any:
            v = cols[name][_i] if name in cols else None
            return None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT else v

        registry = {
            "firm_id": c("firm_id"), "use_unit_id": c("use_unit_id"),
            "commission_date": _iso(c("commission_date")), "age_years": _f(c("age_years")),
            "firm_tech_level": _f(c("firm_tech_level")), "firm_credit_grade": c("firm_credit_grade"),
            "firm_credit_score": _f(c("firm_credit_score")), "use_unit_mgmt_level": _f(c("use_unit_mgmt_level")),
            "inspection_due": _iso(c("inspection_due")), "liability_insurance": _b(c("liability_insurance")),
            "last_visits": {k: _iso(c(f"last_{k}")) for k in ITEM_CLASSES},
        }  # fmt: skip
        rows.append(
            {
                "device_id": ids[i],
                "decided_at": decided_at,
                "as_of": as_of,
                "trigger": trigger,
                "policy_version": policy.version,
                "policy_sha256": policy.sha256,
                "mode": c("mode"),
                "interval_days": int(c("interval_days")),
                "eligible": bool(c("eligible")),
                "score": _f(c("score")),
                "reasons": list(c("reasons") or []),
                "gates": [{"gate": g.removeprefix("gate_"), "passed": bool(c(g))} for g in gate_cols],
                "triggers": [{"trigger": t.removeprefix("trigger_"), "fired": bool(c(t))} for t in trig_cols],
                "breakdown": {k: _f(c(f"pts_{k}")) for k in SCORE_COMPONENTS} | {"total": _f(c("score"))},
                "inputs": {"registry": registry, "monitoring": ev},
                "due": {f"{k}": _iso(c(f"{k}_due")) for k in ITEM_CLASSES} | {"mode_since": _iso(c("mode_since"))},
            }
        )
    return rows


def _iso(v: Any) -> str | None:
    d = _date(v)
    return d.isoformat() if d else None


def _f(v: Any) -> float | None:
    return None if v is None else round(float(v), 4)


def _b(v: Any) -> bool | None:
    return None if v is None else bool(v)


def _upsert(db: Database, table: Any, rows: list[dict[str, Any]], key: str) -> None:
    if not rows:
        return
    dialect = db.engine.dialect.name
    ins = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    cols = [c for c in rows[0] if c != key]
    stmt = ins.on_conflict_do_update(index_elements=[key], set_={c: getattr(ins.excluded, c) for c in cols})
    with db.session() as s:
        for k in range(0, len(rows), 5000):
            s.execute(stmt, rows[k:k + 5000])


def store_plan(
    db: Database, plan: pd.DataFrame, policy: Policy, as_of: date, at_ms: int, trigger: str = "plan"
) -> int:
    """Write decisions whose signature changed and upsert the plans that changed; return decisions written."""
    decided_at = datetime.fromtimestamp(at_ms / 1000, UTC)
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
        with db.session() as s:
            for k in range(0, len(rows), 5000):
                res = s.execute(
                    MaintenanceDecision.__table__.insert().returning(
                        MaintenanceDecision.id, MaintenanceDecision.device_id, sort_by_parameter_order=True
                    ),
                    rows[k:k + 5000],
                )
                decision_ids.update({d: i for i, d in res.all()})
    upd = plan[changed.to_numpy()]
    if not len(upd):
        return len(decision_ids)
    reverted_prev = upd["reverted"].fillna(False).astype(bool) if "reverted" in upd.columns else \
        pd.Series(False, index=upd.index)
    # A reversion stands until a plan grants an on-demand tier again.
    reverted = reverted_prev & (upd["mode"] == policy.standard.mode)
    sig_upd = sig[changed.to_numpy()]
    cols = {c: upd[c].to_numpy() for c in ("firm_id", "mode", "interval_days", "eligible", "score", "reasons",
                                           "mode_since", "planned_since", *(f"{k}_due" for k in ITEM_CLASSES))}
    existing = plan["signature"].notna() if "signature" in plan.columns else pd.Series(False, index=plan.index)
    rows = []
    for i, dev in enumerate(upd.index):
        did = decision_ids.get(dev)
        rec: dict[str, Any] = {
            "device_id": dev,
            "firm_id": cols["firm_id"][i] if isinstance(cols["firm_id"][i], str) else None,
            "mode": cols["mode"][i],
            "interval_days": int(cols["interval_days"][i]),
            "eligible": bool(cols["eligible"][i]),
            "score": float(cols["score"][i]),
            "reasons": list(cols["reasons"][i]),
            "mode_since": _date(cols["mode_since"][i]),
            "planned_since": _date(cols["planned_since"][i]),
            "reverted": bool(reverted.iloc[i]),
            "signature": sig_upd.iloc[i],
            **{f"{k}_due": _date(cols[f"{k}_due"][i]) for k in ITEM_CLASSES},
        }
        if did is not None:
            rec["decision_id"] = did
            rec["decided_at"] = decided_at
        elif not existing.loc[dev]:
            raise RuntimeError(f"plan of {dev} has no decision")  # cannot happen: a first plan is a new decision
        rows.append(rec)
    with_decision = [r for r in rows if "decision_id" in r]
    due_only = [r for r in rows if "decision_id" not in r]
    _upsert(db, MaintenancePlan.__table__, with_decision, "device_id")
    if due_only:
        with db.session() as s:
            s.execute(update(MaintenancePlan), due_only)
    return len(decision_ids)


def board_points(plan: pd.DataFrame, inspections: pd.DataFrame, at_ms: int) -> list[Point]:
    """Points of measurement ``maintenance_plan``: per firm, district, kind and mode, counts.

    Tags are the bounded sets of docs/storage.md (firm, district, kind, mode); fields are counts
    (elevators per mode, overdue items, inspections overdue / due soon) and the mean score.
    """
    time_ns = at_ms * 1_000_000
    points: list[Point] = []
    ins = inspections.assign(
        inspection_overdue=(inspections["inspection_status"] == "overdue").astype(int),
        inspection_due_soon=(inspections["inspection_status"] == "due_soon").astype(int),
        inspection_unknown=(inspections["inspection_status"] == "unknown").astype(int),
    )
    if len(plan):
        p = plan.reset_index()[["device_id", "firm_id", "district", "mode", "score",
                                *(f"overdue_{c}" for c in ITEM_CLASSES)]]
        p = p.merge(ins[["device_id", "inspection_overdue", "inspection_due_soon", "inspection_unknown"]],
                    on="device_id", how="left")
        p[["firm_id", "district"]] = p[["firm_id", "district"]].fillna("")
        agg = p.groupby(["firm_id", "district", "mode"]).agg(
            devices=("device_id", "size"), mean_score=("score", "mean"),
            **{f"overdue_{c}": (f"overdue_{c}", "sum") for c in ITEM_CLASSES},
            inspection_overdue=("inspection_overdue", "sum"), inspection_due_soon=("inspection_due_soon", "sum"),
            inspection_unknown=("inspection_unknown", "sum"),
        )  # fmt: skip
        for (firm, district, mode), r in agg.iterrows():
            fields: dict[str, Any] = {k: int(v) for k, v in r.items() if k != "mean_score"}
            fields["mean_score"] = float(round(r["mean_score"], 2))
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
            points.append(Point(BOARD_MEASUREMENT, tags, {k: int(x) for k, x in r.items()}, time_ns,
                                device_id=f"{kind}/{firm}/{district}"))
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
) -> PlanRun:
    """Plan the given elevators (default: every device), then store, alarm and feed the board.

    ``store`` writes decisions and plans; ``alarms`` syncs the compliance alarms (maintenance
    overdue, inspection overdue / due soon) and clears reversion notices of elevators that are
    on demand again; ``board`` writes the ``maintenance_plan`` measurement to ``telemetry``.
    """
    at = at_ms if at_ms is not None else now_ms()
    as_of = utc_day(at)
    timings: dict[str, float] = {}
    plan, ins = build_plan(db, telemetry, policy, at_ms=at, device_ids=device_ids, timings=timings)
    run = PlanRun(as_of, at, policy, plan, ins, timings=timings)
    if store:
        t0 = time.perf_counter()
        run.decisions_written = store_plan(db, plan, policy, as_of, at)
        timings["store_s"] = time.perf_counter() - t0
    if alarms:
        t0 = time.perf_counter()
        scope = None if device_ids is None else set(device_ids)
        run.alarm_messages = sync_alarms(db, wanted_alarms(plan.reset_index(), ins, policy), scope, at, notify)
        run.alarm_messages += clear_reversions(db, plan, policy, at, notify)
        timings["alarms_s"] = time.perf_counter() - t0
    if board and telemetry is not None:
        t0 = time.perf_counter()
        try:
            telemetry.write(board_points(plan, ins, at))
        except Exception as e:  # the board is a view; planning stands without it
            log.warning("maintenance board points not written: %s", e)
        timings["board_s"] = time.perf_counter() - t0
    return run


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
            t = transition("cleared", spec, device_info(dev, "elevator", firm), onset, max(at_ms, onset), "",
                           {"mode": plan.at[dev, "mode"]})
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
    "last_visits",
    "registry_frame",
    "run_planning",
    "store_plan",
    "utc_day",
]
