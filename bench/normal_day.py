"""A simulated day of normal operation through every rule, in-process: which alarms fire?

No fault is injected, so every alarm is a false one. Runs the simulator's I/O-free fleet
engine straight into the rule engine (no broker, no stores: what is measured is detection).

    .venv/bin/python bench/normal_day.py --elevators 1000 --vessels 200 --hours 24
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from types import SimpleNamespace

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from semon.domain import DeviceInfo
from semon.rules.engine import RuleEngine
from semon.simulators.engine import FleetEngine
from semon.simulators.fleet import build_fleet


def devices_of(fleet: object) -> dict[str, DeviceInfo]:
    """Registry view of a simulated fleet, as the collector would load it."""
    out = {}
    for d in fleet.devices:  # type: ignore[attr-defined]
        if d.kind == "elevator":
            e = d.elevator
            out[d.device_id] = DeviceInfo(
                d.device_id, "elevator", d.district, d.firm.firm_id, e.rated_speed, e.floors, e.bottom_floor
            )
        else:
            v = d.vessel
            out[d.device_id] = DeviceInfo(
                d.device_id, "vessel", d.district, d.firm.firm_id, set_pressure=v.set_pressure,
                design_temperature=v.design_temperature, design_pressure=v.design_pressure,
                max_working_pressure=v.working_pressure,
            )  # fmt: skip
    return out


def run(elevators: int, vessels: int, hours: float, seed: int, progress: bool = True) -> dict[str, object]:
    """Simulate and evaluate; return counts of alarms by type and severity."""
    fleet = build_fleet(elevators, vessels, seed)
    devices = devices_of(fleet)
    start = int(time.time() * 1000) - int(hours * 3_600_000)
    sim = FleetEngine(fleet, start_ms=start, report_interval_ms=60_000)
    engine = RuleEngine()
    raised: Counter[tuple[str, str]] = Counter()
    examples: dict[str, dict[str, object]] = {}
    n = 0
    total_ms = int(hours * 3_600_000)
    t0 = time.perf_counter()
    last_tick = start
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task("simulated day", total=total_ms)
        for _kind, dev_id, channel, payload in sim.iter_messages(total_ms):
            n += 1
            dev = devices[dev_id]
            msg = SimpleNamespace(**payload)
            ts = payload.get("ts", last_tick)
            if channel == "status":
                out = engine.evaluate(dev, msg, ts)
            elif channel == "event":
                out = engine.evaluate_event(
                    dev, SimpleNamespace(scheme="gbt24476", active=True, text=None, **payload), ts
                )
            else:
                out = []
            if ts - last_tick >= 1000:
                # Timers on the device clock: the wall clock of a real collector, here simulated.
                out += engine.tick(ts)
                bar.update(task, completed=ts - start)
                last_tick = ts
            for t in out:
                if t.event == "raised":
                    raised[(t.rule.alarm_type, t.severity.value)] += 1
                    examples.setdefault(t.rule.alarm_type, {"device": t.device.id, "message": t.message, **t.details})
    return {
        "elevators": elevators,
        "vessels": vessels,
        "hours": hours,
        "messages": n,
        "seconds": round(time.perf_counter() - t0, 1),
        "raised": {f"{a}/{s}": c for (a, s), c in sorted(raised.items())},
        "critical": sum(c for (_, s), c in raised.items() if s == "critical"),
        "examples": examples,
    }


def main() -> None:
    """CLI entry point: prints one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elevators", type=int, default=1000)
    ap.add_argument("--vessels", type=int, default=200)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    print(json.dumps(run(a.elevators, a.vessels, a.hours, a.seed), default=str))


if __name__ == "__main__":
    main()
