"""Rule state per device: bytes the rule engine holds for each device of a live fleet.

Feeds every device of a simulated fleet (elevators and vessels, the registry the collector
would load) a few status snapshots and one online flag through ``RuleEngine``, as the collector
does, then reports what the engine's per-device state costs: ``tracemalloc``'s traced bytes
after minus before, divided by the devices. The registry's ``DeviceInfo`` objects are built
before, so they are not counted (they are the registry's memory); the messages are built as
they are fed, so whatever the engine keeps of them (the last status) is.

    .venv/bin/python bench/rule_state_memory.py --devices 100000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tracemalloc

from rich.console import Console

from semon.contract.messages import ElevatorStatus, VesselStatus
from semon.domain import DeviceInfo
from semon.rules.engine import RuleEngine
from semon.simulators.fleet import build_fleet

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a fixed clock, the figure does not depend on today


def _devices(n: int, seed: int) -> list[DeviceInfo]:
    """The registry of a fleet of ``n`` devices, 90 % elevators (the city's mix)."""
    vessels = n // 10
    fleet = build_fleet(n - vessels, vessels, seed)
    out = []
    for d in fleet.devices:
        common = (d.device_id, d.kind, d.district, d.firm.firm_id)
        if d.elevator is not None:
            e = d.elevator
            out.append(DeviceInfo(*common, e.rated_speed, e.floors, e.bottom_floor))
        elif d.vessel is not None:
            v = d.vessel
            out.append(
                DeviceInfo(
                    *common,
                    set_pressure=v.set_pressure,
                    design_temperature=v.design_temperature,
                    max_working_pressure=v.working_pressure,
                )
            )
    return out


def _status(dev: DeviceInfo, k: int) -> ElevatorStatus | VesselStatus:
    """The ``k``-th keep-alive of an idle, healthy device."""
    ts, seq = T0 + k * 30_000, k + 1
    if dev.kind == "elevator":
        body = dict(ts=ts, seq=seq, mode="normal", running=False, dir="stop", floor=1, door_zone=True, door="closed",
                    occupied=False, speed=0.0, load=0.0, run_count=10, run_hours=1.0)  # fmt: skip
        return ElevatorStatus.model_validate(body, strict=False)
    p = round((dev.set_pressure or 1.0) * 0.8, 3)
    return VesselStatus.model_validate(dict(ts=ts, seq=seq, pressure=p, temperature=25.0), strict=False)


def main() -> None:
    """Measure and print one JSON line with the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--messages", type=int, default=3, help="status snapshots per device")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    console = Console(stderr=True)
    with console.status("building the registry…"):
        devices = _devices(args.devices, args.seed)
    engine = RuleEngine()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    with console.status("feeding the engine…"):
        for d in devices:
            engine.online(d, True, T0)
        for k in range(args.messages):
            wall = T0 + k * 30_000
            for d in devices:
                engine.evaluate(d, _status(d, k), wall)
            engine.tick(wall)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per = held / len(devices)
    mib = held / 2**20
    console.print(f"rule state: [bold]{per:,.0f} B[/] per device ({mib:,.1f} MiB for {len(devices):,} devices)")
    out = {
        "bench": "rule_state_memory",
        "devices": len(devices),
        "messages_per_device": args.messages,
        "bytes": held,
        "bytes_per_device": round(per),
        "load_avg_1m": os.getloadavg()[0],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
