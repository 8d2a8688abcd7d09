"""Monitoring inputs from live data: online ratio, entrapments, major faults, health index.

Two sources, both read in bulk (one query per input over many devices, never one per device):

* the **alarm store** (relational DB): equipment-caused entrapments, major faults, open
  blocking alarms, terminals offline now, fault-alarm counts for the health index;
* the **telemetry store**: online ratio (share of fixed buckets with at least one status
  message), last message time, door open/close times (recent vs baseline), trips per day
  (recent vs baseline, from the cumulative ``run_count``). On InfluxDB these are InfluxQL
  aggregates (subqueries, ``spread``, ``last``); on the embedded SQLite store, SQL.

Which alarms count as what (policy ``[reversion]``): an alarm of an elevator with severity
major/critical is a *major fault*, except the entrapment and offline types (they have their
own triggers) and semon's own maintenance compliance alarms (rule ids ``maintenance.*``). An
entrapment is equipment-caused unless its ``details.cause`` names an external cause.
"""

from __future__ import annotations

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import or_, select

from semon.rules.maintenance.policy import Policy
from semon.store.db import Database
from semon.store.influx import InfluxStore, quote_ident
from semon.store.models import Alarm
from semon.store.telemetry import STATUS_MEASUREMENT, TelemetryStore
from semon.store.telemetry_sqlite import SqliteTelemetryStore

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
COMPLIANCE_RULE_PREFIX = "maintenance."
# A door-time comparison needs a few complete cycles in each window to mean anything.
MIN_DOOR_CYCLES = 5
# Device ids per InfluxQL regex filter: keeps the query URL well under server limits.
INFLUX_CHUNK = 300
# Above this many devices a fleet query reads every device and filters afterwards.
FILTER_LIMIT = 2000
MEAS = STATUS_MEASUREMENT["elevator"]

ALARM_COLUMNS = ("entrapments", "major_faults", "fault_alarms", "blocking_alarms", "offline_alarm_hours")
ALARM_ID_COLUMNS = ("entrapment_ids", "major_fault_ids", "offline_alarm_ids")
TELEMETRY_COLUMNS = (
    "online_buckets", "online_buckets_total", "last_seen_ms",
    "door_open_recent_ms", "door_open_baseline_ms", "door_close_recent_ms", "door_close_baseline_ms",
    "door_cycles_recent", "door_cycles_baseline", "trips_recent_per_day", "trips_baseline_per_day",
)  # fmt: skip


# ------------------------------------------------------------------------------- alarms
def alarm_inputs(db: Database, policy: Policy, now_ms: int, device_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Per elevator (index ``device_id``): counts from the alarm store as of ``now_ms``."""
    r, g, h = policy.reversion, policy.gates, policy.health
    horizon = now_ms - max(g.entrapment_window_days, r.major_fault_window_days, h.window_days) * DAY_MS
    stmt = select(
        Alarm.device_id, Alarm.type, Alarm.rule_id, Alarm.severity, Alarm.active, Alarm.onset_ts, Alarm.start_ts,
        Alarm.details, Alarm.id,
    ).where(Alarm.kind == "elevator", or_(Alarm.active, Alarm.start_ts >= horizon))  # fmt: skip
    if device_ids is not None and len(device_ids) <= FILTER_LIMIT:
        stmt = stmt.where(Alarm.device_id.in_(list(device_ids)))
    with db.session() as s:
        rows = [tuple(r) for r in s.execute(stmt)]
    cols = ["device_id", "type", "rule_id", "severity", "active", "onset_ts", "start_ts", "details", "alarm_id"]
    a = pd.DataFrame(rows, columns=cols)
    out = pd.DataFrame(columns=list(ALARM_COLUMNS), dtype=float)
    for c in ALARM_ID_COLUMNS:
        out[c] = pd.Series(dtype=object)
    if a.empty:
        return _reindex(out, device_ids)
    a = a[~a["rule_id"].str.startswith(COMPLIANCE_RULE_PREFIX)]
    cause = a["details"].map(lambda d: d.get("cause") if isinstance(d, dict) else None)
    start = a["start_ts"].astype("int64")
    entrap = (
        a["type"].isin(r.entrapment_alarm_types)
        & ~cause.isin(r.external_causes)
        & (start >= now_ms - g.entrapment_window_days * DAY_MS)
    )
    fault_kind = ~a["type"].isin(r.not_fault_alarm_types)
    major = (
        fault_kind
        & a["severity"].isin(r.major_fault_severities)
        & (start >= now_ms - r.major_fault_window_days * DAY_MS)
    )
    faults = fault_kind & (start >= now_ms - h.window_days * DAY_MS)
    blocking = a["active"].astype(bool) & a["severity"].isin(g.blocking_alarm_severities)
    offline = a["active"].astype(bool) & a["type"].isin(r.offline_alarm_types)
    a = a.assign(
        entrapments=entrap.astype(int),
        major_faults=major.astype(int),
        fault_alarms=faults.astype(int),
        blocking_alarms=blocking.astype(int),
        offline_alarm_hours=np.where(offline, (now_ms - a["onset_ts"].astype("int64")) / HOUR_MS, np.nan),
    )
    out = a.groupby("device_id").agg(
        entrapments=("entrapments", "sum"),
        major_faults=("major_faults", "sum"),
        fault_alarms=("fault_alarms", "sum"),
        blocking_alarms=("blocking_alarms", "sum"),
        offline_alarm_hours=("offline_alarm_hours", "max"),
    )
    # The alarms behind "3 major faults" or an entrapment, named in the decision's evidence.
    for col, mask in (("entrapment_ids", entrap), ("major_fault_ids", major), ("offline_alarm_ids", offline)):
        sel = a.loc[mask.to_numpy(), ["device_id", "alarm_id"]].sort_values("alarm_id")
        out[col] = sel.groupby("device_id")["alarm_id"].agg(lambda x: [int(i) for i in x])
    return _reindex(out, device_ids)


def _reindex(df: pd.DataFrame, device_ids: Sequence[str] | None) -> pd.DataFrame:
    df.index.name = "device_id"
    if device_ids is not None:
        df = df.reindex(list(device_ids))
    for c in ("entrapments", "major_faults", "fault_alarms", "blocking_alarms"):
        df[c] = df[c].fillna(0).astype(np.int64)
    for c in ALARM_ID_COLUMNS:
        # One shared empty tuple for the many elevators without such alarms (no fresh objects).
        df[c] = [v if isinstance(v, list) else () for v in df[c].tolist()] if c in df.columns else [()] * len(df)
    return df


# ---------------------------------------------------------------------------- telemetry
def _windows(policy: Policy, now_ms: int) -> dict[str, tuple[int, int]]:
    h = policy.health
    bucket = h.online_bucket_minutes * 60_000
    # Whole buckets only: the one still filling would read as partly offline.
    end = now_ms // bucket * bucket
    start = end - policy.gates.online_window_days * DAY_MS
    door_split = now_ms - h.door_recent_days * DAY_MS
    run_split = now_ms - h.run_recent_days * DAY_MS
    return {
        "online": (start, end),
        "door_recent": (door_split, now_ms),
        "door_baseline": (door_split - h.door_baseline_days * DAY_MS, door_split),
        "run_recent": (run_split, now_ms),
        "run_baseline": (run_split - h.run_baseline_days * DAY_MS, run_split),
    }


def telemetry_inputs(
    telemetry: TelemetryStore | None, policy: Policy, now_ms: int, device_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per elevator (index ``device_id``): online buckets, last message, door times, trips per day.

    Stores other than InfluxDB and the embedded SQLite store give an empty frame (every input
    unknown), which fails the online gate: no data, no on-demand maintenance.
    """
    if isinstance(telemetry, InfluxStore):
        src: _Source = _InfluxSource(telemetry, device_ids)
    elif isinstance(telemetry, SqliteTelemetryStore):
        src = _SqliteSource(telemetry, device_ids)
    else:
        return _frame({}, device_ids)
    w = _windows(policy, now_ms)
    h = policy.health
    bucket_ms = h.online_bucket_minutes * 60_000
    cols: dict[str, pd.Series] = {}
    start, end = w["online"]
    cols["online_buckets"] = src.buckets_with_data(start, end, bucket_ms)
    cols["last_seen_ms"] = src.last_seen(start, now_ms + 1)
    if h.weights.get("door_drift", 0) > 0:
        for name in ("recent", "baseline"):
            open_ms, close_ms, cycles = src.door_times(*w[f"door_{name}"])
            cols[f"door_open_{name}_ms"], cols[f"door_close_{name}_ms"] = open_ms, close_ms
            cols[f"door_cycles_{name}"] = cycles
    if h.weights.get("run_anomaly", 0) > 0:
        for name, days in (("recent", h.run_recent_days), ("baseline", h.run_baseline_days)):
            cols[f"trips_{name}_per_day"] = src.trips(*w[f"run_{name}"]) / days
    out = _frame(cols, device_ids)
    out["online_buckets_total"] = (end - start) // bucket_ms
    return out


def _frame(cols: dict[str, pd.Series], device_ids: Sequence[str] | None) -> pd.DataFrame:
    df = pd.DataFrame({k: v for k, v in cols.items()}, dtype=float)
    df.index.name = "device_id"
    if device_ids is not None:
        df = df.reindex(list(device_ids))
    for c in TELEMETRY_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    return df


class _Source(ABC):
    """One telemetry back-end's way to compute the aggregates (each returns a Series by device)."""

    @abstractmethod
    def buckets_with_data(self, start: int, end: int, bucket_ms: int) -> pd.Series:
        """Buckets of ``bucket_ms`` in ``[start, end)`` holding at least one status message."""

    @abstractmethod
    def last_seen(self, start: int, end: int) -> pd.Series:
        """Time (ms) of the newest status message."""

    @abstractmethod
    def door_times(self, start: int, end: int) -> tuple[pd.Series, pd.Series, pd.Series]:
        """Mean door opening and closing times (ms) and completed cycles."""

    @abstractmethod
    def trips(self, start: int, end: int) -> pd.Series:
        """Trips made (growth of the cumulative ``run_count``)."""


def door_cycle_times(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Mean door opening and closing times (ms) and completed cycles per device.

    ``rows`` has ``device_id``, ``time`` (ms) and ``door`` in time order per device; a door
    motion lasts from its ``opening`` (``closing``) message to the next ``open`` (``closed``)
    message of the same device — terminals report door changes as they happen.
    """
    if rows.empty:
        empty = pd.Series(dtype=float)
        return empty, empty, empty
    rows = rows.sort_values(["device_id", "time"], kind="stable")
    nxt_door = rows["door"].shift(-1)
    nxt_dev = rows["device_id"].shift(-1)
    dt = rows["time"].shift(-1) - rows["time"]
    same = nxt_dev == rows["device_id"]
    opening = same & (rows["door"] == "opening") & (nxt_door == "open")
    closing = same & (rows["door"] == "closing") & (nxt_door == "closed")
    g_open = dt[opening].groupby(rows["device_id"][opening]).mean()
    g_close = dt[closing].groupby(rows["device_id"][closing]).mean()
    cycles = closing.groupby(rows["device_id"]).sum().astype(float)
    return g_open, g_close, cycles


class _InfluxSource(_Source):
    def __init__(self, store: InfluxStore, device_ids: Sequence[str] | None) -> None:
        self.store = store
        # Small sets: a regex per chunk; a whole fleet: no filter (one pass, filtered afterwards).
        if device_ids is not None and len(device_ids) <= FILTER_LIMIT:
            ids = list(device_ids)  # no ids: no filter, no query
            self.filters = [
                ' AND "device_id" =~ /^('
                + "|".join(re.escape(i).replace("/", r"\/") for i in ids[k : k + INFLUX_CHUNK])
                + ")$/"
                for k in range(0, len(ids), INFLUX_CHUNK)
            ]
        else:
            self.filters = [""]

    def _rows(self, template: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for f in self.filters:
            out.extend(self.store.rows(template.format(filter=f)))
        return out

    @staticmethod
    def _series(rows: list[dict[str, Any]], col: str) -> pd.Series:
        if not rows:
            return pd.Series(dtype=float)
        df = pd.DataFrame(rows)
        return pd.to_numeric(df[col], errors="coerce").groupby(df["device_id"]).sum(min_count=1).astype(float)

    def buckets_with_data(self, start: int, end: int, bucket_ms: int) -> pd.Series:
        # Inner: one row per bucket that has a message (fill(none) drops empty ones); outer: count them.
        q = (
            f'SELECT count("n") AS "n" FROM (SELECT count("seq") AS "n" FROM {quote_ident(MEAS)} '
            f"WHERE time >= {start}ms AND time < {end}ms{{filter}} "
            f'GROUP BY time({bucket_ms}ms), "device_id" fill(none)) GROUP BY "device_id"'
        )
        return self._series(self._rows(q), "n")

    def last_seen(self, start: int, end: int) -> pd.Series:
        q = (
            f'SELECT last("seq") FROM {quote_ident(MEAS)} WHERE time >= {start}ms AND time < {end}ms{{filter}} '
            'GROUP BY "device_id"'
        )
        return self._series(self._rows(q), "time")

    def door_times(self, start: int, end: int) -> tuple[pd.Series, pd.Series, pd.Series]:
        q = (
            f'SELECT "door" FROM {quote_ident(MEAS)} WHERE time >= {start}ms AND time < {end}ms{{filter}} '
            'GROUP BY "device_id"'
        )
        rows = self._rows(q)
        df = pd.DataFrame(rows, columns=["time", "door", "device_id"]) if rows else pd.DataFrame()
        return door_cycle_times(df)

    def trips(self, start: int, end: int) -> pd.Series:
        q = (
            f'SELECT spread("run_count") AS "trips" FROM {quote_ident(MEAS)} '
            f'WHERE time >= {start}ms AND time < {end}ms{{filter}} GROUP BY "device_id"'
        )
        return self._series(self._rows(q), "trips")


class _SqliteSource(_Source):
    def __init__(self, store: SqliteTelemetryStore, device_ids: Sequence[str] | None) -> None:
        # A separate read connection: the store's own one belongs to the collector's writer.
        self.conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, check_same_thread=False)
        self.ids = list(device_ids) if device_ids is not None and len(device_ids) <= FILTER_LIMIT else None

    def _where(self, start: int, end: int) -> tuple[str, list[Any]]:
        sql = "measurement = ? AND time_ns >= ? AND time_ns < ?"
        args: list[Any] = [MEAS, start * 1_000_000, end * 1_000_000]
        if self.ids is not None:
            sql += f" AND device_id IN ({','.join('?' * len(self.ids))})"
            args += self.ids
        return sql, args

    def _series(self, sql: str, args: list[Any]) -> pd.Series:
        rows = self.conn.execute(sql, args).fetchall()
        return pd.Series({d: float(v) for d, v in rows if v is not None}, dtype=float)

    def buckets_with_data(self, start: int, end: int, bucket_ms: int) -> pd.Series:
        where, args = self._where(start, end)
        return self._series(
            f"SELECT device_id, COUNT(DISTINCT time_ns / ?) FROM telemetry WHERE {where} GROUP BY device_id",
            [bucket_ms * 1_000_000, *args],
        )

    def last_seen(self, start: int, end: int) -> pd.Series:
        where, args = self._where(start, end)
        return self._series(
            f"SELECT device_id, MAX(time_ns) / 1000000 FROM telemetry WHERE {where} GROUP BY device_id", args
        )

    def door_times(self, start: int, end: int) -> tuple[pd.Series, pd.Series, pd.Series]:
        where, args = self._where(start, end)
        rows = self.conn.execute(
            f"SELECT device_id, time_ns / 1000000, CAST(fields AS TEXT) FROM telemetry WHERE {where}", args
        ).fetchall()
        df = pd.DataFrame(
            [(d, t, orjson.loads(f).get("door")) for d, t, f in rows], columns=["device_id", "time", "door"]
        )
        return door_cycle_times(df)

    def trips(self, start: int, end: int) -> pd.Series:
        where, args = self._where(start, end)
        rows = self.conn.execute(
            "SELECT device_id, MAX(json_extract(CAST(fields AS TEXT), '$.run_count')) "
            f"- MIN(json_extract(CAST(fields AS TEXT), '$.run_count')) FROM telemetry WHERE {where} GROUP BY device_id",
            args,
        ).fetchall()
        return pd.Series({d: float(v) for d, v in rows if v is not None}, dtype=float)


# ------------------------------------------------------------------------------- health
def health_frame(m: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """Health sub-scores (0–1, NaN without data) and the index (0–100) from monitoring columns."""
    h = policy.health
    out = pd.DataFrame(index=m.index)
    ratio = m["online_ratio"]
    out["h_fault_rate"] = 1.0 - (m["fault_alarms"].astype(float) / h.faults_for_zero).clip(0.0, 1.0)
    out["h_online"] = ((ratio - h.online_floor) / (1.0 - h.online_floor)).clip(0.0, 1.0)
    enough = (m["door_cycles_recent"] >= MIN_DOOR_CYCLES) & (m["door_cycles_baseline"] >= MIN_DOOR_CYCLES)
    drift_open = (m["door_open_recent_ms"] / m["door_open_baseline_ms"] - 1.0).abs()
    drift_close = (m["door_close_recent_ms"] / m["door_close_baseline_ms"] - 1.0).abs()
    drift = pd.concat([drift_open, drift_close], axis=1).max(axis=1, skipna=True)
    out["door_drift"] = drift.where(enough)
    out["h_door_drift"] = 1.0 - (out["door_drift"] / h.door_drift_for_zero).clip(0.0, 1.0)
    base = m["trips_baseline_per_day"]
    dev = (m["trips_recent_per_day"] - base).abs() / base.clip(lower=1.0)
    out["run_deviation"] = dev.where(base > 0)
    out["h_run_anomaly"] = 1.0 - (out["run_deviation"] / h.run_deviation_for_zero).clip(0.0, 1.0)
    num = pd.Series(0.0, index=m.index)
    den = pd.Series(0.0, index=m.index)
    for comp, weight in h.weights.items():
        if weight <= 0:
            continue
        sub = out[f"h_{comp}"]
        num += (sub * weight).fillna(0.0)
        den += sub.notna() * weight
    out["health_index"] = (100.0 * num / den.where(den > 0)).round(1)
    return out


def monitoring_inputs(
    db: Database,
    telemetry: TelemetryStore | None,
    policy: Policy,
    now_ms: int,
    device_ids: Sequence[str],
) -> pd.DataFrame:
    """Every monitoring input of the planner for ``device_ids`` (index ``device_id``)."""
    a = alarm_inputs(db, policy, now_ms, device_ids)
    t = telemetry_inputs(telemetry, policy, now_ms, device_ids)
    m = a.join(t, how="outer").reindex(list(device_ids))
    total = m["online_buckets_total"].where(m["online_buckets_total"] > 0)
    # No status message in the whole window is no monitoring history, not "online 0 %": the
    # ratio and the health index are unknown (the gate fails, the health scores 0 points).
    m["has_iot_data"] = m["online_buckets"].fillna(0.0) > 0
    m["online_ratio"] = (m["online_buckets"] / total).clip(0.0, 1.0).where(m["has_iot_data"])
    # Offline now: the open offline alarm, or the silence since the last message, whichever is longer.
    since_last = (now_ms - m["last_seen_ms"]) / HOUR_MS
    m["offline_hours"] = pd.concat([m["offline_alarm_hours"], since_last], axis=1).max(axis=1, skipna=True)
    for c in ("entrapments", "major_faults", "fault_alarms", "blocking_alarms"):
        m[c] = m[c].fillna(0).astype(np.int64)
    for c in ALARM_ID_COLUMNS:
        m[c] = [v if isinstance(v, list) else () for v in m[c].tolist()]
    h = health_frame(m, policy)
    h.loc[~m["has_iot_data"], "health_index"] = np.nan
    return m.join(h)


def evidence_records(m: pd.DataFrame, policy: Policy, now_ms: int) -> Iterable[dict[str, Any]]:
    """Per row of :func:`monitoring_inputs`, the measured inputs and the evidence behind them.

    Only what was measured for the elevator: windows, thresholds and weights are the policy's,
    which every decision names by version and file hash (repeating them per row would double the
    audit trail's size for a city).
    """
    n = len(m)
    lists: dict[tuple[str, int], list[Any]] = {}

    def col(c: str, nd: int) -> list[Any]:
        # Column-wise rounding, NaN → None: this runs for a whole city's elevators.
        key = (c, nd)
        if key not in lists:
            if c in m.columns:
                a = pd.to_numeric(m[c], errors="coerce").to_numpy(dtype=float)
                nan = np.isnan(a)
                out = (np.where(nan, 0, a).astype(np.int64) if nd == 0 else np.round(a, nd)).astype(object)
                out[nan] = None
                lists[key] = out.tolist()
            else:
                lists[key] = [None] * n
        return lists[key]

    def ids(c: str, i: int) -> list[int]:
        if c not in m.columns:
            return []
        x = m[c].iat[i]
        return list(x) if isinstance(x, list | tuple) else []

    for i in range(n):

        def v(c: str, nd: int = 3, _i: int = i) -> Any:
            return col(c, nd)[_i]

        yield {
            "as_of_ms": now_ms,
            "online": {"ratio": v("online_ratio", 4), "buckets_with_data": v("online_buckets", 0),
                       "buckets": v("online_buckets_total", 0), "last_seen_ms": v("last_seen_ms", 0),
                       "offline_hours": v("offline_hours", 2)},
            "entrapments": v("entrapments", 0),
            "entrapment_alarm_ids": ids("entrapment_ids", i),
            "major_faults": v("major_faults", 0),
            "major_fault_alarm_ids": ids("major_fault_ids", i),
            "blocking_alarms": v("blocking_alarms", 0),
            "health": {
                "index": v("health_index", 1),
                "fault_rate": {"score": v("h_fault_rate"), "fault_alarms": v("fault_alarms", 0)},
                "online": {"score": v("h_online")},
                "door_drift": {
                    "score": v("h_door_drift"), "drift": v("door_drift"),
                    "open_ms": [v("door_open_recent_ms", 0), v("door_open_baseline_ms", 0)],
                    "close_ms": [v("door_close_recent_ms", 0), v("door_close_baseline_ms", 0)],
                    "cycles": [v("door_cycles_recent", 0), v("door_cycles_baseline", 0)],
                },
                "run_anomaly": {"score": v("h_run_anomaly"), "deviation": v("run_deviation"),
                                "trips_per_day": [v("trips_recent_per_day", 1), v("trips_baseline_per_day", 1)]},
            },
        }  # fmt: skip
