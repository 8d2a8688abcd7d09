"""Rule-evaluation throughput on one core: status messages/s through every elevator rule.

Builds realistic elevator status snapshots (a simulated fleet, validated models as the
collector would have them), then times ``RuleEngine.evaluate`` over them in-process.

    .venv/bin/python bench/rules_eval.py --devices 2000 --messages 400000
"""

from __future__ import annotations

import argparse
import json
import os
import time

from rich.console import Console

from semon.contract.messages import ElevatorStatus
from semon.domain import DeviceInfo
from semon.rules.engine import RuleEngine
from semon.simulators.fleet import build_fleet


def main() -> None:
    """Run the benchmark and print one JSON line with the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--messages", type=int, default=400_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    console = Console(stderr=True)
    fleet = build_fleet(args.devices, 0, args.seed)
    devices = [
        DeviceInfo(
            d.device_id,
            "elevator",
            "Tianhe",
            d.firm.firm_id,
            d.elevator.rated_speed,
            d.elevator.floors,
            d.elevator.bottom_floor,
        )
        for d in fleet.devices
    ]
    # A mix of moving, idle and door-cycling snapshots, as a live fleet sends.
    t0 = int(time.time() * 1000) - 86_400_000
    shapes = [
        dict(
            mode="normal",
            running=True,
            dir="up",
            floor=2,
            door_zone=False,
            door="closed",
            occupied=True,
            speed=0.8,
            load=300.0,
        ),
        dict(
            mode="normal",
            running=False,
            dir="stop",
            floor=2,
            door_zone=True,
            door="open",
            occupied=True,
            speed=0.0,
            load=300.0,
        ),
        dict(
            mode="normal",
            running=False,
            dir="stop",
            floor=2,
            door_zone=True,
            door="closed",
            occupied=False,
            speed=0.0,
            load=0.0,
        ),
        dict(
            mode="normal",
            running=False,
            dir="stop",
            floor=2,
            door_zone=True,
            door="opening",
            occupied=False,
            speed=0.0,
            load=0.0,
        ),
    ]
    n_dev = len(devices)
    msgs = []
    with console.status("building snapshots…"):
        for i in range(args.messages):
            k = i // n_dev
            msgs.append(
                (
                    devices[i % n_dev],
                    ElevatorStatus.model_validate(
                        {
                            **shapes[(i + k) % len(shapes)],
                            "ts": t0 + k * 1000,
                            "seq": k + 1,
                            "run_count": k,
                            "run_hours": 1.0,
                        },
                        strict=False,
                    ),
                )
            )
    engine = RuleEngine()
    n_rules = len([r for r in engine.catalog.defs.values() if r.kind == "elevator"])
    evaluate = engine.evaluate
    transitions = 0
    t_start = time.perf_counter()
    c_start = time.process_time()  # CPU time: a per-core rate even when other work shares the machine
    for dev, st in msgs:
        transitions += len(evaluate(dev, st, st.ts))  # arrival = device time: a live stream
    elapsed = time.perf_counter() - t_start
    cpu = time.process_time() - c_start
    rate = len(msgs) / cpu
    out = {
        "bench": "rules_eval",
        "messages": len(msgs),
        "devices": n_dev,
        "elevator_rules": n_rules,
        "wall_seconds": round(elapsed, 3),
        "cpu_seconds": round(cpu, 3),
        "messages_per_cpu_s": round(rate),
        "messages_per_wall_s": round(len(msgs) / elapsed),
        "load_avg_1m": os.getloadavg()[0],
        "transitions": transitions,
        "cpu": os.cpu_count(),
    }
    console.print(f"[bold]{rate:,.0f}[/] status messages per CPU-second through {n_rules} elevator rules (one core)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
