"""The vectorised planner: registry facts + monitoring inputs → gates, score, mode, due dates.

:func:`plan_frame` is pure (no I/O): one row per elevator in, one decision per elevator out,
computed column-wise with pandas/numpy so a city's 300,000 elevators take seconds. Every
decision carries its gate outcomes, trigger outcomes, score breakdown and the reasons in
words, so a regulator can audit it (domain.md §4.5).

Input columns (missing ones are treated as unknown; see ``INPUT_DEFAULTS``):

========================  =====================================================================
``device_id``             elevator id
``firm_id``               maintenance firm (None: no firm)
``use_unit_id``           use unit (None: none on record)
``commission_date``       put into service (NaT: unknown → 0 age points)
``firm_tech_level``       firm technical level (NaN: unknown → 0 points)
``firm_credit_grade``     firm credit grade, e.g. ``A`` (None: unknown → gate fails)
``firm_credit_score``     firm credit score 0–100
``use_unit_mgmt_level``   use unit management level
``inspection_due``        periodic inspection valid until (NaT: unknown → gate fails)
``liability_insurance``   1.0 / 0.0 / NaN
``online_ratio``          share of the online window the terminal was online (NaN: no data)
``entrapments``           equipment-caused entrapments in the entrapment window
``major_faults``          major faults in the reversion window
``blocking_alarms``       open alarms of a blocking severity
``offline_hours``         hours the terminal has been offline now (0: online)
``health_index``          monitoring health index 0–100 (NaN: no data → 0 points)
``firm_paperless_rate``   firm's paperless-record rate (only for the optional firm gates)
``firm_on_time_rate``     firm's on-time rate
``firm_elevators``        elevators the firm maintains
``last_<class>``          last visit that did items of class (half_month … yearly), NaT: none
``current_mode``          mode in force before this decision (None: never planned)
``mode_since``            day the current mode began
``planned_since``         day the elevator was first planned (start of calendar tracking)
========================  =====================================================================
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from semon.rules.maintenance.calendar import ITEM_CLASSES, PERIOD_MONTHS, as_day, covered_last, period_end, to_dates
from semon.rules.maintenance.policy import Policy

DATE_COLUMNS = (
    "commission_date", "inspection_due", "mode_since", "planned_since",
    *(f"last_{c}" for c in ITEM_CLASSES),
)  # fmt: skip
INPUT_DEFAULTS: dict[str, Any] = {
    "firm_id": None,
    "use_unit_id": None,
    "firm_tech_level": np.nan,
    "firm_credit_grade": None,
    "firm_credit_score": np.nan,
    "use_unit_mgmt_level": np.nan,
    "liability_insurance": np.nan,
    "online_ratio": np.nan,
    "entrapments": 0,
    "major_faults": 0,
    "blocking_alarms": 0,
    "offline_hours": 0.0,
    "health_index": np.nan,
    "firm_paperless_rate": np.nan,
    "firm_on_time_rate": np.nan,
    "firm_elevators": np.nan,
    "current_mode": None,
}
SCORE_COMPONENTS = ("age", "firm_tech_level", "use_unit_mgmt_level", "firm_credit", "health")
# A ratio equal to its threshold passes: compare with a hair of tolerance for float noise.
_EPS = 1e-9


def _pct(s: pd.Series) -> pd.Series:
    return (s * 100).round(1).astype(str)


def _fmt(x: float) -> str:
    return f"{x:g}"


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every input column present and typed (dates at midnight)."""
    out = df.copy()
    for col, default in INPUT_DEFAULTS.items():
        if col not in out.columns:
            out[col] = default
    for col in DATE_COLUMNS:
        out[col] = (
            to_dates(out[col]) if col in out.columns else pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]")
        )
    for col in (
        "firm_tech_level",
        "firm_credit_score",
        "use_unit_mgmt_level",
        "liability_insurance",
        "online_ratio",
        "offline_hours",
        "health_index",
        "firm_paperless_rate",
        "firm_on_time_rate",
        "firm_elevators",
    ):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    for col in ("entrapments", "major_faults", "blocking_alarms"):
        out[col] = pd.to_numeric(out[col], errors="coerce").fillna(0).astype(np.int64)
    return out


def _level_points(level: pd.Series, spec: Any) -> pd.Series:
    frac = ((level - spec.min_level) / (spec.max_level - spec.min_level)).clip(0.0, 1.0)
    return (spec.points * frac).fillna(0.0)


def score_frame(df: pd.DataFrame, policy: Policy, as_of: date) -> pd.DataFrame:
    """Score components (points, 2 decimals) and their sum; ``df`` must be :func:`prepare`-d."""
    sc = policy.score
    day = as_day(as_of)
    age_years = (day - df["commission_date"]) / pd.Timedelta(days=365.25)
    age = (sc.age.points * (1.0 - age_years.clip(lower=0.0) / sc.age.zero_at_years)).clip(0.0, sc.age.points)
    factor = df["firm_credit_grade"].map(sc.firm_credit.grade_factor).astype(float).fillna(0.0)
    credit = sc.firm_credit.points * factor * (df["firm_credit_score"].clip(0, 100) / 100.0)
    health = sc.health.points * df["health_index"].clip(0, 100) / 100.0
    out = pd.DataFrame(index=df.index)
    out["age_years"] = age_years.round(2)
    out["pts_age"] = age.fillna(0.0).round(2)
    out["pts_firm_tech_level"] = _level_points(df["firm_tech_level"], sc.firm_tech_level).round(2)
    out["pts_use_unit_mgmt_level"] = _level_points(df["use_unit_mgmt_level"], sc.use_unit_mgmt_level).round(2)
    out["pts_firm_credit"] = credit.fillna(0.0).round(2)
    out["pts_health"] = health.fillna(0.0).round(2)
    # The score is the sum of the components as shown, so the breakdown always adds up.
    out["score"] = out[[f"pts_{c}" for c in SCORE_COMPONENTS]].sum(axis=1).round(2)
    return out


def _gates(df: pd.DataFrame, policy: Policy, day: pd.Timestamp) -> dict[str, tuple[pd.Series, pd.Series]]:
    """name → (passed, reason when failed) for every gate the policy switches on."""
    g = policy.gates
    gates: dict[str, tuple[pd.Series, pd.Series]] = {}
    empty = pd.Series("", index=df.index, dtype=object)

    rank_map = {grade: i for i, grade in enumerate(g.credit_grades)}
    rank = df["firm_credit_grade"].map(rank_map)
    ok = rank.notna() & (rank <= rank_map[g.min_credit_grade])
    why = np.where(
        rank.isna(),
        "firm credit grade unknown (needs " + g.min_credit_grade + " or better)",
        "firm credit grade " + df["firm_credit_grade"].astype(str) + " is below " + g.min_credit_grade,
    )
    gates["credit_grade"] = (ok, pd.Series(why, index=df.index))

    ratio = df["online_ratio"]
    ok = ratio.notna() & (ratio >= g.min_online_ratio - _EPS)
    why = np.where(
        ratio.isna(),
        f"no IoT online data for the last {g.online_window_days} days",
        "IoT terminal online " + _pct(ratio) + f" % of the last {g.online_window_days} days "
        f"(needs ≥ {g.min_online_ratio * 100:g} %)",
    )
    gates["online"] = (ok, pd.Series(why, index=df.index))

    if g.require_valid_inspection:
        due = df["inspection_due"]
        ok = due.notna() & (due >= day)
        why = np.where(
            due.isna(),
            "no valid periodic inspection on record",
            "periodic inspection expired on " + due.dt.strftime("%Y-%m-%d").fillna(""),
        )
        gates["inspection"] = (ok, pd.Series(why, index=df.index))

    n = df["entrapments"]
    ok = n <= g.max_equipment_entrapments
    why = n.astype(str) + f" equipment-caused entrapment(s) in the last {g.entrapment_window_days} days"
    if g.max_equipment_entrapments:
        why = why + f" (at most {g.max_equipment_entrapments} allowed)"
    gates["entrapment"] = (ok, why)

    if g.blocking_alarm_severities:
        n = df["blocking_alarms"]
        gates["open_alarm"] = (n == 0, n.astype(str) + f" open {'/'.join(g.blocking_alarm_severities)} alarm(s)")

    if g.require_liability_insurance:
        ok = df["liability_insurance"] == 1.0
        gates["insurance"] = (ok, empty.mask(~ok, "no elevator safety liability insurance on record"))
    if g.require_use_unit:
        ok = df["use_unit_id"].notna() & (df["use_unit_id"].astype(str) != "")
        gates["use_unit"] = (ok, empty.mask(~ok, "no use unit on record"))
    for name, col, threshold, label in (
        ("firm_paperless", "firm_paperless_rate", g.firm_min_paperless_rate, "paperless-record rate"),
        ("firm_on_time", "firm_on_time_rate", g.firm_min_on_time_rate, "on-time maintenance rate"),
    ):
        if threshold > 0:
            v = df[col]
            ok = v.notna() & (v >= threshold - _EPS)
            why = "firm " + label + " " + _pct(v.fillna(0.0)) + f" % (needs ≥ {threshold * 100:g} %)"
            gates[name] = (ok, why)
    if g.firm_min_elevators > 0:
        v = df["firm_elevators"].fillna(0)
        ok = v >= g.firm_min_elevators
        gates["firm_size"] = (
            ok,
            "firm maintains " + v.astype(int).astype(str) + f" elevators (needs ≥ {g.firm_min_elevators})",
        )
    return gates


def _triggers(df: pd.DataFrame, policy: Policy) -> dict[str, tuple[pd.Series, pd.Series]]:
    """name → (fired, reason) for the reversion triggers a plan run can see in its inputs.

    An entrapment is caught by the entrapment gate over its (longer) window; the collector hook
    reverts at the moment one is raised.
    """
    r = policy.reversion
    faults = df["major_faults"]
    fired_faults = faults >= r.major_faults
    why_faults = (
        faults.astype(str) + f" major faults in the last {r.major_fault_window_days} days "
        f"(reversion at ≥ {r.major_faults})"
    )
    off = df["offline_hours"].fillna(0.0)
    fired_off = off > r.offline_hours
    why_off = "terminal offline for " + off.round(1).astype(str) + f" h (reversion after {_fmt(r.offline_hours)} h)"
    return {"major_faults": (fired_faults, why_faults), "offline": (fired_off, why_off)}


def _join_reasons(parts: list[pd.Series], masks: list[pd.Series]) -> list[list[str]]:
    """Per row, the reasons whose mask is set, in the given order."""
    cols = [np.where(m.to_numpy(), p.to_numpy(dtype=object), None) for p, m in zip(parts, masks, strict=True)]
    if not cols:
        return [[] for _ in range(len(parts[0]) if parts else 0)]
    return [[x for x in row if x is not None] for row in zip(*cols, strict=True)]


def plan_frame(df: pd.DataFrame, policy: Policy, as_of: date) -> pd.DataFrame:
    """Decide mode and due dates for every elevator in ``df`` (see the module doc for columns).

    Returns one row per input row (same index) with ``gate_*`` / ``trigger_*`` booleans,
    ``pts_*`` score components, ``score``, ``eligible``, ``mode``, ``interval_days``,
    ``reasons`` (list of strings), ``failed_gates`` / ``fired_triggers`` (lists of names),
    ``mode_since``, ``planned_since``, the due dates ``<class>_due`` and ``overdue_<class>``
    flags, and the inputs it used.
    """
    day = as_day(as_of)
    d = prepare(df)
    out = score_frame(d, policy, as_of)
    gates = _gates(d, policy, day)
    triggers = _triggers(d, policy)
    passed = pd.Series(True, index=d.index)
    for name, (ok, _) in gates.items():
        out[f"gate_{name}"] = ok.to_numpy()
        passed &= ok
    fired_any = pd.Series(False, index=d.index)
    for name, (fired, _) in triggers.items():
        out[f"trigger_{name}"] = fired.to_numpy()
        fired_any |= fired
    eligible = passed & ~fired_any
    out["eligible"] = eligible

    # Tiers in order; the first that the score (and grade, if it names grades) allows wins.
    mode = pd.Series(policy.standard.mode, index=d.index, dtype=object)
    interval = pd.Series(policy.standard.interval_days, index=d.index, dtype=np.int64)
    tier_reason = pd.Series(
        "score "
        + out["score"].map("{:.2f}".format)
        + f" below every on-demand tier → {policy.standard.mode} ({policy.standard.interval_days} days)",
        index=d.index,
        dtype=object,
    )
    decided = ~eligible
    for t in policy.tiers:
        ok = eligible & ~decided & (out["score"] >= t.min_score - _EPS)
        cond = f"score ≥ {_fmt(t.min_score)}"
        if t.credit_grades:
            ok &= d["firm_credit_grade"].isin(t.credit_grades)
            cond += " and credit grade " + "/".join(t.credit_grades)
        mode = mode.mask(ok, t.mode)
        interval = interval.mask(ok, t.interval_days)
        text = (
            "score " + out["score"].map("{:.2f}".format) + f": {cond} → {t.mode} "
            f"(half-month items within {t.interval_days} days)"
        )
        tier_reason = tier_reason.mask(ok, text)
        decided |= ok
    out["mode"] = mode
    out["interval_days"] = interval

    gate_names = list(gates)
    trig_names = list(triggers)
    fail_masks = [~gates[n][0] for n in gate_names]
    fire_masks = [triggers[n][0] for n in trig_names]
    reasons = _join_reasons(
        [gates[n][1] for n in gate_names] + ["reversion: " + triggers[n][1] for n in trig_names] + [tier_reason],
        fail_masks + fire_masks + [eligible],
    )
    std = f"→ {policy.standard.mode} ({policy.standard.interval_days} days)"
    out["reasons"] = [r if ok else [*r, std] for r, ok in zip(reasons, eligible.to_numpy(), strict=True)]
    out["failed_gates"] = (
        _join_reasons([pd.Series(n, index=d.index) for n in gate_names], fail_masks)
        if gate_names
        else [[] for _ in range(len(d))]
    )
    out["fired_triggers"] = _join_reasons([pd.Series(n, index=d.index) for n in trig_names], fire_masks)

    # A new mode starts today; an unchanged one keeps its start.
    changed = d["current_mode"].isna() | (d["current_mode"] != out["mode"]) | d["mode_since"].isna()
    out["mode_since"] = d["mode_since"].mask(changed, day)
    out["planned_since"] = d["planned_since"].fillna(day)
    out = pd.concat([out, due_frame(d, out, policy, day)], axis=1)
    return out


def due_frame(d: pd.DataFrame, plan: pd.DataFrame, policy: Policy, day: pd.Timestamp) -> pd.DataFrame:
    """Next due date and overdue / due-soon flags of every item class.

    Half-month items: last visit + the mode's interval, but never before the day the mode
    began (a switch to a shorter cycle is due from then on, not retroactively overdue); with no
    visit on record, due the day the mode began. Quarterly / half-year / yearly items: once per
    calendar period — due at the end of the period after the last visit's, or of the period in
    which planning began when there is none.
    """
    out = pd.DataFrame(index=d.index)
    last = covered_last(d, "half_month")
    due = last + pd.to_timedelta(plan["interval_days"], unit="D")
    due = due.where(due >= plan["mode_since"], plan["mode_since"])
    out["half_month_due"] = due.fillna(plan["mode_since"])
    soon = policy.calendar.due_soon_days
    for cls, months in PERIOD_MONTHS.items():
        last = covered_last(d, cls)
        after_last = period_end(last, months, 1)
        first = period_end(plan["planned_since"], months, 0)
        out[f"{cls}_due"] = after_last.fillna(first)
    for cls in ITEM_CLASSES:
        due = out[f"{cls}_due"]
        out[f"overdue_{cls}"] = day > due
        out[f"due_soon_{cls}"] = (day <= due) & ((due - day) <= pd.Timedelta(days=soon))
    return out


def summarise(plan: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """Counts per mode and overdue counts, for boards and the CLI footer."""
    cols = {"elevators": ("mode", "size")}
    for cls in ITEM_CLASSES:
        cols[f"overdue_{cls}"] = (f"overdue_{cls}", "sum")
    return plan.groupby("mode").agg(**cols).reindex(policy.modes, fill_value=0)
