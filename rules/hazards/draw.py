"""The regulator's risk-weighted random inspection draw (双随机, weighted by risk grade).

Stratified by grade: the ``n`` inspections are shared out so that each grade's *inspection
rate* (drawn / devices of that grade) is proportional to its weight — a D device with weight 8
is drawn 8 × as often as an A device with weight 1 — then devices are drawn uniformly within
each grade. A grade whose share would exceed its size is drawn entirely and the rest is shared
among the others. Quotas are rounded by largest remainder, so the total is exactly ``n``.
The same fleet, grades, weights and seed give the same draw.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stratum:
    """One grade's part of a draw."""

    grade: str
    devices: int
    weight: float
    drawn: int

    @property
    def rate(self) -> float:
        """Share of this grade's devices drawn."""
        return self.drawn / self.devices if self.devices else 0.0


@dataclass(frozen=True, slots=True)
class Draw:
    """The devices drawn, in draw order, and how the draw was shared out."""

    seed: str
    n: int
    devices: list[str]
    strata: list[Stratum]

    def explain(self) -> list[str]:
        """One line per grade, Chinese then English."""
        return [
            f"{s.grade} 级: {s.devices} 台, 权重 {s.weight:g}, 抽取 {s.drawn} 台 ({s.rate:.2%}) · "
            f"grade {s.grade}: {s.devices} devices, weight {s.weight:g}, {s.drawn} drawn ({s.rate:.2%})"
            for s in self.strata
        ]


def quotas(counts: Mapping[str, int], weights: Mapping[str, float], n: int) -> dict[str, int]:
    """Integer draws per grade: rates proportional to weights, capped at each grade's size."""
    total = sum(counts.values())
    if n < 0:
        raise ValueError("n must be ≥ 0")
    n = min(n, total)
    live = {g for g, c in counts.items() if c > 0}
    full: set[str] = set()
    k = 0.0
    while live:
        rest = n - sum(counts[g] for g in full)
        k = rest / sum(counts[g] * weights[g] for g in live)
        saturated = {g for g in live if k * weights[g] >= 1.0}
        if not saturated:
            break
        full |= saturated
        live -= saturated
    exact = {g: float(counts[g]) if g in full else counts[g] * k * weights[g] for g in counts}
    out = {g: int(v) for g, v in exact.items()}
    short = n - sum(out.values())
    # Largest remainder; ties go to the higher weight, then to the later (riskier) grade name.
    order = sorted(counts, key=lambda g: (exact[g] - out[g], weights[g], g), reverse=True)
    for g in order[:short]:
        out[g] += 1
    return out


def draw(graded: Iterable[tuple[str, str]], n: int, seed: str | int, weights: Mapping[str, float]) -> Draw:
    """Draw ``n`` devices from ``(device_id, grade)`` pairs."""
    by: dict[str, list[str]] = {g: [] for g in weights}
    for dev, g in graded:
        if g not in by:
            raise ValueError(f"device {dev}: grade {g!r} has no draw weight")
        by[g].append(dev)
    counts = {g: len(v) for g, v in by.items()}
    q = quotas(counts, weights, n)
    rng = random.Random(f"semon-draw:{seed}")  # a str seed hashes the same in every process
    picked: list[str] = []
    strata: list[Stratum] = []
    for g in sorted(by):  # fixed order: the draw depends on the seed only
        devs = sorted(by[g])
        chosen = rng.sample(devs, q[g])
        picked.extend(chosen)
        strata.append(Stratum(g, len(devs), float(weights[g]), q[g]))
    return Draw(str(seed), len(picked), picked, strata)
