"""Simulated pressure vessel: pressure, temperature, level and gas readings, plus fault hooks.

Every reading is a mean-reverting random walk (Ornstein-Uhlenbeck), advanced exactly over any
gap in O(1), so a vessel can sleep between samples. Normal operation stays inside the bands
the alarm rules treat as healthy (domain.md §5): pressure in [0.70, 0.85] × set pressure
(the 90 % rule never fires, the drift is ≈ 1 % of set pressure per minute, far below the 5 %/min
rise-rate rule), temperature well below the design temperature, liquid level in [20, 80] %,
combustible gas 0-3 % LEL.
"""

from __future__ import annotations

import math
import random
from typing import Any

PRESSURE_BAND = (0.70, 0.85)  # × set pressure in normal operation
LEVEL_BAND = (20.0, 80.0)  # % for liquefied gas
LEL_BAND = (0.0, 3.0)  # % LEL near flammable media
SAMPLE_MS = 2000  # how often a quiet vessel re-reads its sensors (report-by-exception check)
ACTIVE_MS = 100  # sampling while a forced pressure ramp runs
DEADBAND = 0.01  # × set pressure: a larger change is reported at once
HOLD_JITTER = 0.003  # × set pressure, noise while a fault holds the pressure


def _ou(rng: random.Random, x: float, mean: float, sd: float, tau_ms: float, dt_ms: int) -> float:
    """Exact Ornstein-Uhlenbeck step: reverts to ``mean`` with time constant ``tau_ms``."""
    decay = math.exp(-dt_ms / tau_ms)
    return mean + (x - mean) * decay + sd * math.sqrt(1.0 - decay * decay) * rng.gauss(0.0, 1.0)


def _clamp(x: float, band: tuple[float, float]) -> float:
    return band[0] if x < band[0] else band[1] if x > band[1] else x


class Vessel:
    """One vessel with its sensors; readings are public attributes, the rest is machinery."""

    __slots__ = (
        "_force_ratio", "_force_target", "_mean_ratio", "_mean_temp", "_pub_pressure",
        "_ramp_per_ms", "_ratio", "_rng", "_t", "device_id", "dirty", "gas_lel", "level",
        "set_pressure", "temperature", "valve_discharge",
    )  # fmt: skip

    def __init__(
        self,
        device_id: str,
        set_pressure: float,
        operating_temperature: float,
        rng: random.Random,
        now_ms: int,
        *,
        liquefied: bool,
        flammable: bool,
    ) -> None:
        self.device_id = device_id
        self.set_pressure = set_pressure
        self._rng = rng
        self._t = now_ms
        self._mean_ratio = rng.uniform(0.74, 0.80)
        self._ratio = _clamp(self._mean_ratio + rng.gauss(0.0, 0.01), PRESSURE_BAND)
        self._mean_temp = operating_temperature
        self.temperature = operating_temperature + rng.gauss(0.0, 0.5)
        self.level: float | None = rng.uniform(35.0, 65.0) if liquefied else None
        self.gas_lel: float | None = rng.uniform(0.0, 1.0) if flammable else None
        self.valve_discharge = False
        self._force_ratio: float | None = None  # pressure ratio imposed by a fault, ramping
        self._force_target: float | None = None  # None: ramp back to the normal reading
        self._ramp_per_ms = 0.0
        self._pub_pressure = -1.0
        self.dirty = True

    @property
    def pressure(self) -> float:
        """Current pressure in MPa (gauge)."""
        ratio = self._force_ratio if self._force_ratio is not None else self._ratio
        return ratio * self.set_pressure

    @property
    def wake_ms(self) -> int:
        """Next device time at which the vessel wants to be sampled."""
        return self._t + (ACTIVE_MS if self._force_ratio is not None else SAMPLE_MS)

    def status(self, ts: int, seq: int) -> dict[str, Any]:
        """Status payload (contract v1 ``VesselStatus``)."""
        return {
            "ts": ts,
            "seq": seq,
            "pressure": round(self.pressure, 4),
            "temperature": round(self.temperature, 2),
            "level": None if self.level is None else round(self.level, 2),
            "valve_discharge": self.valve_discharge,
            "gas_lel": None if self.gas_lel is None else round(self.gas_lel, 2),
        }

    def mark_published(self) -> None:
        """The current readings have been reported (the deadband restarts from them)."""
        self.dirty = False
        self._pub_pressure = self.pressure

    def advance(self, now_ms: int) -> None:
        """Bring the readings to device time ``now_ms``; ``dirty`` if pressure left the deadband."""
        dt = now_ms - self._t
        if dt <= 0:
            return
        self._t = now_ms
        rng = self._rng
        # Stationary spread 1.5 % of set pressure, 20 min memory: ≈ 1 %/min typical drift.
        r = _ou(rng, self._ratio, self._mean_ratio, 0.015, 1_200_000.0, dt)
        self._ratio = _clamp(r, PRESSURE_BAND)
        self.temperature = _ou(rng, self.temperature, self._mean_temp, 1.0, 1_800_000.0, dt)
        if self.level is not None:
            self.level = _clamp(_ou(rng, self.level, 50.0, 10.0, 7_200_000.0, dt), LEVEL_BAND)
        if self.gas_lel is not None:
            self.gas_lel = _clamp(_ou(rng, self.gas_lel, 0.6, 0.4, 600_000.0, dt), LEL_BAND)
        if self._force_ratio is not None:
            self._ramp(dt)
        if abs(self.pressure - self._pub_pressure) >= DEADBAND * self.set_pressure:
            self.dirty = True

    def _ramp(self, dt: int) -> None:
        assert self._force_ratio is not None
        target = self._force_target if self._force_target is not None else self._ratio
        gap = target - self._force_ratio
        step = self._ramp_per_ms * dt
        if abs(gap) <= step:
            if self._force_target is None:
                self._force_ratio = None  # back on the normal reading
            else:
                self._force_ratio = target + self._rng.uniform(-HOLD_JITTER, HOLD_JITTER)
        else:
            self._force_ratio += step if gap > 0 else -step

    # ------------------------------------------------------------------------------- faults
    def force_pressure(self, ratio: float, ramp_ms: int) -> None:
        """Fault: ramp the pressure to ``ratio`` × set pressure within ``ramp_ms`` and hold it."""
        start = self._force_ratio if self._force_ratio is not None else self._ratio
        self._force_ratio = start
        self._force_target = ratio
        self._ramp_per_ms = abs(ratio - start) / max(1, ramp_ms)

    def release_pressure(self, ramp_ms: int) -> None:
        """End of a pressure fault: ramp back to the normal reading within ``ramp_ms``."""
        if self._force_ratio is None:
            return
        self._force_target = None
        self._ramp_per_ms = abs(self._force_ratio - self._ratio) / max(1, ramp_ms)
