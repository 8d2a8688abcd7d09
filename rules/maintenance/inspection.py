"""Periodic inspection (定期检验) due dates, vectorised: elevators yearly; vessels first within
3 years of service, then by safety grade (domain.md §5; intervals in the policy file).

Where the due date comes from, in order of precedence:

1. ``inspection_valid_until`` — the date on the inspection certificate (registry fact);
2. ``last_inspection_date`` + the interval (elevator: yearly; vessel: by safety grade — an
   unknown or unlisted grade takes the shortest listed interval, a conservative design choice);
3. ``commission_date`` + the first interval (elevator: yearly; vessel: 3 years) — the first
   periodic inspection is due then (TSG 21-2016 for vessels; docs/domain.md §5), so past it with
   no inspection on record the device is ``overdue`` (a compliance alarm), not "unknown": a
   device never inspected is the case the law is there for.

Only a device with none of these dates is ``unknown``. A due date is a local day; it is overdue
from the day after.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from semon.rules.maintenance.calendar import add_years, as_day, to_dates
from semon.rules.maintenance.policy import Policy

STATUSES = ("ok", "due_soon", "overdue", "unknown")


def inspection_frame(df: pd.DataFrame, policy: Policy, as_of: date) -> pd.DataFrame:
    """``inspection_due``, ``inspection_status`` and ``inspection_basis`` for each row of ``df``.

    ``df`` needs ``kind`` and may have ``commission_date``, ``inspection_valid_until``,
    ``last_inspection_date`` and ``safety_grade``.
    """
    ins = policy.inspection
    day = as_day(as_of)
    idx = df.index

    def col(name: str) -> pd.Series:
        return to_dates(df[name]) if name in df.columns else pd.Series(pd.NaT, index=idx, dtype="datetime64[ns]")

    valid_until, last, commissioned = col("inspection_valid_until"), col("last_inspection_date"), col("commission_date")
    vessel = (df["kind"] == "vessel").to_numpy()
    grades = (
        pd.to_numeric(df["safety_grade"], errors="coerce")
        if "safety_grade" in df.columns
        else pd.Series(np.nan, index=idx)
    )
    table = {int(k): v for k, v in ins.vessel_interval_years_by_grade.items()}
    vessel_years = grades.map(table).fillna(min(table.values()))
    years = pd.Series(np.where(vessel, vessel_years, ins.elevator_interval_years), index=idx)
    first_years = pd.Series(np.where(vessel, ins.vessel_first_within_years, ins.elevator_interval_years), index=idx)

    from_last = add_years(last, years)
    from_commission = add_years(commissioned, first_years)
    due = valid_until.fillna(from_last)
    basis = np.select(
        [valid_until.notna().to_numpy(), last.notna().to_numpy()],
        ["certificate valid-until date", "last inspection + interval"],
        default="first inspection after commissioning",
    )
    due = due.fillna(from_commission)
    basis = np.where(due.isna(), "no inspection or commissioning date on record", basis)
    never = valid_until.isna() & last.isna() & from_commission.notna() & (from_commission < day)
    basis = np.where(never, "first-inspection deadline passed with no inspection on record", basis)

    status = np.select(
        [
            due.isna().to_numpy(),
            (day > due).to_numpy(),
            ((due - day) <= pd.Timedelta(days=ins.due_soon_days)).to_numpy(),
        ],
        ["unknown", "overdue", "due_soon"],
        default="ok",
    )
    return pd.DataFrame({"inspection_due": due, "inspection_status": status, "inspection_basis": basis}, index=idx)
