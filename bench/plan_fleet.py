"""Benchmark: plan a city fleet of elevators with the vectorised "3+2" planner.

Two measurements (docs/benchmarks.md "Maintenance planning"):

* ``frame`` (default) — the decision itself: a synthetic fleet (registry facts, monitoring
  inputs, last visits, current plans) in one DataFrame → ``plan_frame`` (gates with reasons,
  score breakdown, mode, due dates of every item class). This is what "planning N elevators"
  costs once the inputs are loaded.
* ``--db`` — a whole planning run against a fresh SQLite database: registry, facts and records
  bulk-loaded first (not timed), then ``run_planning`` timed: load, inputs from the alarm store
  (no telemetry store: the online gate fails for everyone, which does not change the work),
  plan, write every decision and plan, sync compliance alarms.

Usage::

    .venv/bin/python bench/plan_fleet.py --elevators 300000 --repeat 3
    .venv/bin/python bench/plan_fleet.py --elevators 300000 --db /tmp/plan-bench.db
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from semon.rules.maintenance.calendar import ITEM_CLASSES
from semon.rules.maintenance.planner import plan_frame
from semon.rules.maintenance.policy import load_policy

AS_OF = date(2026, 11, 26)


def synthetic_fleet(n: int, seed: int = 1) -> pd.DataFrame:
    """``n`` elevators with plausible facts and inputs (a mix that exercises every gate and tier)."""
    rng = np.random.default_rng(seed)
    day = np.datetime64(AS_OF, "D")
    firms = rng.integers(0, max(2, n // 400), n)
    grade_of_firm = rng.choice(np.array(["A", "B", "C", "D"]), size=firms.max() + 1, p=[0.5, 0.35, 0.12, 0.03])
    last_hm = day - rng.integers(0, 100, n).astype("timedelta64[D]")
    df = pd.DataFrame({
        "device_id": [f"E{i:07d}" for i in range(n)],
        "firm_id": [f"F{f:04d}" for f in firms],
        "use_unit_id": [f"U{u:05d}" for u in rng.integers(0, max(2, n // 6), n)],
        "commission_date": day - rng.integers(0, 25 * 365, n).astype("timedelta64[D]"),
        "firm_tech_level": rng.integers(1, 6, n).astype(float),
        "firm_credit_grade": grade_of_firm[firms],
        "firm_credit_score": rng.uniform(50, 100, n).round(1),
        "use_unit_mgmt_level": rng.integers(1, 6, n).astype(float),
        "inspection_due": day + rng.integers(-10, 365, n).astype("timedelta64[D]"),
        "liability_insurance": rng.choice([1.0, 0.0], n, p=[0.9, 0.1]),
        "online_ratio": np.clip(rng.normal(0.985, 0.02, n), 0, 1),
        "entrapments": rng.poisson(0.05, n),
        "major_faults": rng.poisson(0.2, n),
        "blocking_alarms": rng.poisson(0.01, n),
        "offline_hours": np.where(rng.random(n) < 0.01, rng.uniform(0, 72, n), 0.0),
        "health_index": rng.uniform(40, 100, n).round(1),
        "last_half_month": last_hm,
        "last_quarterly": last_hm - rng.integers(0, 120, n).astype("timedelta64[D]"),
        "last_half_year": last_hm - rng.integers(0, 200, n).astype("timedelta64[D]"),
        "last_yearly": last_hm - rng.integers(0, 400, n).astype("timedelta64[D]"),
        "current_mode": rng.choice(np.array(["standard_15", "on_demand_30", "on_demand_90"]), n),
        "mode_since": day - rng.integers(0, 365, n).astype("timedelta64[D]"),
        "planned_since": np.full(n, np.datetime64("2025-01-01", "D")),
    })  # fmt: skip
    return df


def bench_frame(n: int, repeat: int) -> None:
    policy = load_policy()
    t0 = time.perf_counter()
    df = synthetic_fleet(n)
    print(f"synthetic fleet of {n:,} elevators built in {time.perf_counter() - t0:.2f} s (not timed below)")
    times = []
    out = None
    for i in range(repeat):
        t0 = time.perf_counter()
        out = plan_frame(df, policy, AS_OF)
        times.append(time.perf_counter() - t0)
        print(f"run {i + 1}: plan_frame {times[-1]:.2f} s")
    assert out is not None and len(out) == n
    print(f"best {min(times):.2f} s, median {float(np.median(times)):.2f} s for {n:,} elevators "
          f"({n / min(times):,.0f} elevators/s)")  # fmt: skip
    print("modes:", out["mode"].value_counts().to_dict())
    print("overdue:", {c: int(out[f"overdue_{c}"].sum()) for c in ITEM_CLASSES})


def bench_db(n: int, path: Path) -> None:
    from sqlalchemy import insert

    from semon.rules.maintenance.service import run_planning
    from semon.store.db import Database
    from semon.store.maintenance import DeviceFacts, MaintenanceRecord
    from semon.store.models import Device, Firm, UseUnit

    if path.exists():
        path.unlink()
    db = Database(f"sqlite:///{path}")
    df = synthetic_fleet(n)
    t0 = time.perf_counter()
    now = datetime.now(UTC)
    firms = sorted(set(df["firm_id"]))
    grades = df.groupby("firm_id")["firm_credit_grade"].first()
    with db.session() as s:
        s.execute(insert(Firm), [{"id": f, "name": f, "tech_level": 3, "credit_grade": grades[f], "credit_score": 90.0}
                                 for f in firms])  # fmt: skip
        s.execute(insert(UseUnit), [{"id": u, "name": u, "mgmt_level": 4} for u in sorted(set(df["use_unit_id"]))])
        s.execute(insert(Device), [{"id": d, "kind": "elevator", "district": "Tianhe", "firm_id": f, "use_unit_id": u,
                                    "attributes": {}} for d, f, u in
                                   zip(df["device_id"], df["firm_id"], df["use_unit_id"], strict=True)])  # fmt: skip
        s.execute(insert(DeviceFacts), [
            {"device_id": d, "commission_date": c.date(), "inspection_valid_until": v.date() + timedelta(days=40),
             "liability_insurance": True, "updated_at": now}
            for d, c, v in zip(df["device_id"], pd.to_datetime(df["commission_date"]),
                               pd.to_datetime(df["inspection_due"]), strict=True)])  # fmt: skip
        s.execute(insert(MaintenanceRecord), [
            {"device_id": d, "firm_id": f, "performed_at": datetime.combine(h.date(), datetime.min.time(), UTC),
             "item_class": "half_month", "item_classes": ["half_month"], "technician": "t", "paperless": True,
             "on_time": True, "due": {}, "notes": "", "recorded_at": now}
            for d, f, h in zip(df["device_id"], df["firm_id"], pd.to_datetime(df["last_half_month"]), strict=True)])
    print(f"database with {n:,} elevators, facts and one record each loaded in {time.perf_counter() - t0:.1f} s "
          "(not timed below)")  # fmt: skip
    at = int(datetime.combine(AS_OF, datetime.min.time(), UTC).timestamp() * 1000) + 8 * 3_600_000
    for label in ("first run (every decision new)", "second run (nothing changed)"):
        t0, c0 = time.perf_counter(), time.process_time()
        run = run_planning(db, None, load_policy(), at_ms=at, board=False)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        parts = ", ".join(f"{k} {v:.2f}" for k, v in run.timings.items())
        print(f"{label}: {total:.2f} s total, {cpu:.2f} s CPU ({parts}); {run.decisions_written:,} decisions "
              f"written, {len(run.alarm_messages):,} alarm transitions, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    db.dispose()


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--elevators", type=int, default=300_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--db", type=Path, default=None, help="run the whole planning against a fresh SQLite file here")
    a = p.parse_args()
    print(f"python {platform.python_version()}, pandas {pd.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    if a.db:
        bench_db(a.elevators, a.db)
    else:
        bench_frame(a.elevators, a.repeat)


if __name__ == "__main__":
    main()
