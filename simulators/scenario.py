"""Seeded fault scenarios: ``mixed`` injects every fault type of the catalog several times.

:func:`mixed_scenario` picks, for each fault type, ``per_type`` devices that can take it
(kind, medium) and onsets spread over the run (the k-th fault of a type starts in the k-th
``per_type``-th of the usable time), with durations long enough for the alarm to be due
(:meth:`Fault.scenario_duration_ms`), and never two faults too close on one device. The same
fleet, horizon and seed always give the same specs. Variants alternate: ``trapped`` at a
landing / between floors, ``offline`` on an elevator / a vessel.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from semon.simulators.faults import FAULT_TYPES, MIN_GAP_MS, FaultSpec, overlaps, parse_fault_spec
from semon.simulators.fleet import Fleet

SCENARIOS = ("mixed",)
WARMUP_MS = 120_000  # no fault in the first two minutes: every device has reported
TAIL_MS = 300_000  # the last fault settles this long before the end (alarms clear, truth closes)
_ATTEMPTS = 200


def _longest_ms(fleet: Fleet, name: str) -> int:
    """Longest scenario duration + settle gap of a fault type over the devices that can take it."""
    cls = FAULT_TYPES[name]
    params = dict(_variants(name, 1))
    durations = [cls.scenario_duration_ms(d, params) for d in fleet.devices if cls.check_device(d) is None]
    return max(durations, default=0) + MIN_GAP_MS + cls.settle_ms


def mixed_minimum_ms(fleet: Fleet, types: Iterable[str] | None = None) -> int:
    """Shortest device-time horizon :func:`mixed_scenario` accepts for ``types`` (default: all)."""
    return WARMUP_MS + max(_longest_ms(fleet, n) for n in (types or FAULT_TYPES)) + TAIL_MS


def _variants(name: str, k: int) -> tuple[tuple[str, str], ...]:
    if name == "trapped":
        return (("where", ("landing", "between")[k % 2]),)
    return ()


def mixed_scenario(
    fleet: Fleet,
    *,
    horizon_ms: int,
    per_type: int = 3,
    seed: int = 1,
    types: Sequence[str] | None = None,
    reserved: Sequence[FaultSpec] = (),
) -> list[FaultSpec]:
    """``per_type`` faults of every type (or of ``types``) within ``horizon_ms`` of device time.

    ``reserved`` are faults already planned (e.g. from ``--fault``): the scenario keeps clear
    of them. Raises ``ValueError`` when the fleet lacks a device for a type or the horizon is
    too short (see :func:`mixed_minimum_ms`).
    """
    names = list(types) if types is not None else list(FAULT_TYPES)
    unknown = [n for n in names if n not in FAULT_TYPES]
    if unknown:
        raise ValueError(f"unknown fault types {', '.join(unknown)} (known: {', '.join(sorted(FAULT_TYPES))})")
    if per_type < 1:
        raise ValueError("per_type must be >= 1")
    need = mixed_minimum_ms(fleet, names)
    if horizon_ms < need:
        raise ValueError(
            f"the mixed scenario needs at least {need / 60_000:.1f} min of device time "
            f"(duration × speed), got {horizon_ms / 60_000:.1f} min; run longer, faster, or pick fewer types"
        )
    rng = random.Random(f"semon-mixed:{seed}:{fleet.seed}")
    taken: dict[str, list[FaultSpec]] = {}
    for s in reserved:
        taken.setdefault(s.device_id, []).append(s)
    out: list[FaultSpec] = []
    for name in names:
        cls = FAULT_TYPES[name]
        eligible = [d for d in fleet.devices if cls.check_device(d) is None]
        if not eligible:
            raise ValueError(f"the fleet has no device for fault type {name!r}")
        for k in range(per_type):
            params = _variants(name, k)
            pool = eligible
            if len(cls.kinds) > 1:  # alternate kinds where a type fits several
                kind = sorted(cls.kinds)[k % len(cls.kinds)]
                pool = [d for d in eligible if d.kind == kind] or eligible
            for _ in range(_ATTEMPTS):
                device = rng.choice(pool)
                dur = cls.scenario_duration_ms(device, dict(params))
                latest = horizon_ms - TAIL_MS - dur - MIN_GAP_MS - cls.settle_ms
                lo = WARMUP_MS + (latest - WARMUP_MS) * k // per_type
                hi = WARMUP_MS + (latest - WARMUP_MS) * (k + 1) // per_type
                onset = rng.randrange(lo, max(lo + 1, hi)) // 100 * 100
                opts = "".join(f",{key}={v}" for key, v in params)
                text = f"{name}:{device.device_id}@{onset}ms+{dur}ms{opts}"
                spec = parse_fault_spec(text, fleet)
                if not any(overlaps(spec, other) for other in taken.get(device.device_id, ())):
                    taken.setdefault(device.device_id, []).append(spec)
                    out.append(spec)
                    break
            else:
                raise ValueError(f"no free device for fault {k + 1} of {name!r}: the fleet is too small")
    return sorted(out, key=lambda s: (s.onset_ms, s.device_id))
