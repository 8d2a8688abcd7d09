"""Vectorised date arithmetic for due dates: day intervals, calendar periods, inspection intervals.

All functions take and return ``datetime64[ns]`` pandas Series (NaT for "unknown") so a whole
fleet is handled in a few numpy operations.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

# Item classes of TSG T5002-2017, lowest first; they are cumulative (a yearly visit also does the
# half-year, quarterly and half-month items).
ITEM_CLASSES = ("half_month", "quarterly", "half_year", "yearly")
# Calendar period of each class other than half-month, in months.
PERIOD_MONTHS = {"quarterly": 3, "half_year": 6, "yearly": 12}


def as_day(d: date | pd.Timestamp) -> pd.Timestamp:
    """Midnight of a date as a Timestamp (the unit every due-date column uses)."""
    return pd.Timestamp(d).normalize()


def to_dates(s: pd.Series) -> pd.Series:
    """Any date-like Series as ``datetime64[ns]`` at midnight (None → NaT)."""
    return pd.to_datetime(s, errors="coerce").dt.normalize().astype("datetime64[ns]")


def covered_last(df: pd.DataFrame, cls: str) -> pd.Series:
    """Last date items of ``cls`` were done: the latest visit of that class or any higher one."""
    cols = [f"last_{c}" for c in ITEM_CLASSES[ITEM_CLASSES.index(cls) :]]
    return df[cols].max(axis=1)


def period_end(dates: pd.Series, months: int, periods_after: int) -> pd.Series:
    """Last day of the calendar period (``months`` long, aligned to 1 January) ``periods_after``
    periods after the one containing each date; NaT stays NaT."""
    values = dates.to_numpy(dtype="datetime64[ns]")
    nat = np.isnat(values)
    month_idx = values.astype("datetime64[M]").astype(np.int64)
    start = month_idx // months * months
    end_next = (start + (periods_after + 1) * months).astype("datetime64[M]").astype("datetime64[ns]")
    out = end_next - np.timedelta64(1, "D")
    out[nat] = np.datetime64("NaT")
    return pd.Series(out, index=dates.index)


def add_years(dates: pd.Series, years: pd.Series) -> pd.Series:
    """``dates`` plus whole ``years`` (29 February → 28 February); NaT / NaN stay NaT."""
    values = dates.to_numpy(dtype="datetime64[ns]")
    yrs = pd.to_numeric(years, errors="coerce").to_numpy(dtype=float)
    nat = np.isnat(values) | np.isnan(yrs)
    months = values.astype("datetime64[M]")
    day = (values.astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.int64)
    target = months + np.where(nat, 0, yrs * 12).astype(np.int64)
    month_len = ((target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(np.int64)
    out = target.astype("datetime64[D]") + np.minimum(day, month_len - 1)
    out = out.astype("datetime64[ns]")
    out[nat] = np.datetime64("NaT")
    return pd.Series(out, index=dates.index)


def days_between(later: pd.Series | pd.Timestamp, earlier: pd.Series | pd.Timestamp) -> pd.Series:
    """Whole days from ``earlier`` to ``later`` (float, NaN where either is unknown)."""
    return (later - earlier) / pd.Timedelta(days=1)
