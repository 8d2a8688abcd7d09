"""Rescue KPIs (domain.md §4.4, Guangzhou 96333) with pandas, by firm, district and period.

For the rescues whose alarm falls in ``[since, until)``, per group:

* ``entrapments`` and ``entrapments_per_10k_elevators_per_day`` = entrapments / (elevators in
  the group / 10,000) / days (the group's period clipped to the range, else the whole range);
  elevators are counted from the registry as it is now, within the caller's tenancy;
* mean and p90 (pandas ``quantile(0.9)``, linear interpolation) in minutes of: dispatch (alarm →
  dispatched), arrival (alarm → arrived), release (arrived → released, the on-site time
  96333 reports), total (alarm → released); rescues without that step are left out;
* ``response_rate`` — share dispatched within ``rescue_response_limit_s`` (3 min) of the alarm,
  ``arrival_rate`` — share arrived within ``rescue_arrival_limit_s`` (30 min); a rescue still
  inside its limit without the step is not counted yet, one past it without the step is a miss;
  ``arrival_breaches`` counts those misses;
* ``causes`` and ``tiers`` — counts (``unrecorded`` while the rescue is not released).

Periods (day, ISO week from Monday, calendar month) are cut in local time (``SEMON_TIMEZONE``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from semon.store.access import Access
from semon.store.models import Device
from semon.store.rescue import Rescue
from semon.timeutil import DEFAULT_TIMEZONE, utc_now

DIMENSIONS = ("firm", "district", "period")
PERIODS = ("day", "week", "month")
_FREQ = {"day": "D", "week": "W-MON", "month": "MS"}
_NONE = "\x00none"  # group key standing for "no firm" / "no district" (pandas drops real None keys)


@dataclass(frozen=True, slots=True)
class KpiQuery:
    """What to compute: range, grouping and the limits the rates are measured against."""

    since: datetime
    until: datetime
    group_by: Sequence[str] = ()
    period: str = "day"
    timezone: str = DEFAULT_TIMEZONE  # SEMON_TIMEZONE: days, weeks and months are local
    response_limit_s: float = 180.0
    arrival_limit_s: float = 1800.0
    now: datetime | None = None

    def __post_init__(self) -> None:
        bad = [g for g in self.group_by if g not in DIMENSIONS]
        if bad:
            raise ValueError(f"cannot group by {', '.join(bad)}; use {', '.join(DIMENSIONS)}")
        if self.period not in PERIODS:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}")
        if self.until <= self.since:
            raise ValueError("until must be after since")


_RESCUE_COLUMNS = ["id", "firm_id", "district", "alarm_at", "dispatched_at", "arrived_at", "released_at", "cause",
                   "tier"]  # fmt: skip


def load(access: Access, since: datetime, until: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rescues in range, elevators) within the caller's tenancy."""
    stmt = access.scoped(
        select(Rescue.id, Rescue.firm_id, Device.district, Rescue.alarm_at, Rescue.dispatched_at, Rescue.arrived_at,
               Rescue.released_at, Rescue.cause, Rescue.tier)
        .join(Device, Device.id == Rescue.device_id)
        .where(Rescue.alarm_at >= since, Rescue.alarm_at < until),
        Rescue.device_id,
    )  # fmt: skip
    rescues = pd.DataFrame(access.s.execute(stmt).all(), columns=_RESCUE_COLUMNS)
    elevators = pd.DataFrame(
        access.s.execute(
            access.devices()
            .with_only_columns(Device.id, Device.firm_id, Device.district)
            .where(Device.kind == "elevator")
        ).all(),
        columns=["device_id", "firm_id", "district"],
    )
    return rescues, elevators


def _minutes(s: pd.Series) -> tuple[float | None, float | None]:
    s = s.dropna() / 60.0
    if s.empty:
        return None, None
    return float(s.mean()), float(s.quantile(0.9))


def _rate(ok: pd.Series, decided: pd.Series) -> float | None:
    n = int(decided.sum())
    return None if n == 0 else float((ok & decided).sum()) / n


def _utc_series(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True)


def _buckets(q: KpiQuery) -> list[tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]]:
    """(label start in local time, UTC start, UTC end) of every period touching the range."""
    tz = q.timezone
    first = pd.Timestamp(q.since).tz_convert(tz).tz_localize(None).normalize()
    if q.period == "week":
        first -= pd.Timedelta(days=first.weekday())
    elif q.period == "month":
        first = first.replace(day=1)
    last = pd.Timestamp(q.until).tz_convert(tz).tz_localize(None)
    starts = pd.date_range(first, last, freq=_FREQ[q.period], inclusive="left")
    if len(starts) == 0 or starts[0] != first:
        starts = pd.DatetimeIndex([first, *starts])
    step = {"day": pd.DateOffset(days=1), "week": pd.DateOffset(weeks=1), "month": pd.DateOffset(months=1)}[q.period]
    out = []
    for start in starts:
        if start >= last:
            break
        out.append((start, start.tz_localize(tz).tz_convert(UTC), (start + step).tz_localize(tz).tz_convert(UTC)))
    return out


def compute(rescues: pd.DataFrame, elevators: pd.DataFrame, q: KpiQuery) -> list[dict[str, Any]]:
    """KPI rows, one per group (every firm / district in the registry or the rescues, every period
    of the range), sorted by the group keys."""
    now = pd.Timestamp(q.now or utc_now())
    since, until = pd.Timestamp(q.since), pd.Timestamp(q.until)
    r = rescues.copy()
    for c in ("alarm_at", "dispatched_at", "arrived_at", "released_at"):
        r[c] = _utc_series(r[c])
    r["dispatch_s"] = (r["dispatched_at"] - r["alarm_at"]).dt.total_seconds()
    r["arrival_s"] = (r["arrived_at"] - r["alarm_at"]).dt.total_seconds()
    r["release_s"] = (r["released_at"] - r["arrived_at"]).dt.total_seconds()
    r["total_s"] = (r["released_at"] - r["alarm_at"]).dt.total_seconds()
    age = (now - r["alarm_at"]).dt.total_seconds()
    r["resp_decided"] = r["dispatch_s"].notna() | (age > q.response_limit_s)
    r["resp_ok"] = r["dispatch_s"].le(q.response_limit_s)
    r["arr_decided"] = r["arrival_s"].notna() | (age > q.arrival_limit_s)
    r["arr_ok"] = r["arrival_s"].le(q.arrival_limit_s)
    r["cause"] = r["cause"].fillna("unrecorded")
    r["tier"] = r["tier"].fillna("none")
    e = elevators.copy()
    for frame in (r, e):
        frame["firm"] = frame["firm_id"].fillna(_NONE)
        frame["district"] = frame["district"].fillna(_NONE)

    dims = [d for d in DIMENSIONS if d in q.group_by and d != "period"]
    by_period = "period" in q.group_by
    buckets = _buckets(q) if by_period else [(None, since, until)]
    if by_period:
        local = r["alarm_at"].dt.tz_convert(q.timezone).dt.tz_localize(None)
        starts = pd.Series([b[0] for b in buckets])
        # The bucket of each rescue: the last period start at or before its local alarm time.
        r["period"] = starts.searchsorted(local, side="right") - 1 if len(r) else []
    combos: list[tuple[str, ...]]
    if dims:
        seen = set(map(tuple, e[dims].itertuples(index=False))) | set(map(tuple, r[dims].itertuples(index=False)))
        combos = sorted(seen)
    else:
        combos = [()]
    rows = []
    for combo in combos:
        sel_r = pd.Series(True, index=r.index)
        sel_e = pd.Series(True, index=e.index)
        for d, v in zip(dims, combo, strict=True):
            sel_r &= r[d] == v
            sel_e &= e[d] == v
        n_elevators = int(sel_e.sum())
        for i, (label, b_start, b_end) in enumerate(buckets):
            sub = r[sel_r & (r["period"] == i)] if by_period else r[sel_r]
            lo, hi = max(b_start, since), min(b_end, until)
            days = max((hi - lo).total_seconds(), 0.0) / 86400.0
            n = len(sub)
            row: dict[str, Any] = {}
            for d, v in zip(dims, combo, strict=True):
                row["firm_id" if d == "firm" else d] = None if v == _NONE else v
            if by_period:
                row["period"] = label.date().isoformat()
            row.update(
                days=round(days, 6),
                entrapments=n,
                elevators=n_elevators,
                entrapments_per_10k_elevators_per_day=(
                    n / n_elevators * 10_000 / days if n_elevators and days else None
                ),
            )
            for name in ("dispatch", "arrival", "release", "total"):
                row[f"{name}_min_mean"], row[f"{name}_min_p90"] = _minutes(sub[f"{name}_s"])
            row["response_rate"] = _rate(sub["resp_ok"], sub["resp_decided"])
            row["arrival_rate"] = _rate(sub["arr_ok"], sub["arr_decided"])
            row["arrival_breaches"] = int((sub["arr_decided"] & ~sub["arr_ok"]).sum())
            row["causes"] = {k: int(v) for k, v in sub["cause"].value_counts().sort_index().items()}
            row["tiers"] = {k: int(v) for k, v in sub["tier"].value_counts().sort_index().items()}
            rows.append(row)
    return rows


def rescue_kpis(access: Access, q: KpiQuery) -> list[dict[str, Any]]:
    """Load the caller's rescues and elevators and compute the KPI rows."""
    rescues, elevators = load(access, q.since, q.until)
    return compute(rescues, elevators, q)
