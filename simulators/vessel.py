"""Simulated pressure vessel: pressure, temperature, level and gas readings, plus fault overrides.

Every reading is a mean-reverting random walk (Ornstein-Uhlenbeck), advanced exactly over any
gap in O(1), so a vessel can sleep between samples; it is reflected (not clamped) at the edges
of its normal band, so a reading never sticks to a band edge. Normal operation stays inside
the bands the alarm rules treat as healthy (domain.md §5):

- pressure at a realistic working pressure: in [0.80, 0.98] × the maximum working pressure
  (set pressure is 1.05–1.10 × working pressure, so that is 73–93 % of set pressure), spread
  1 % of set pressure around a mean in [0.90, 0.95] × the maximum working pressure with 30 min
  memory — below the overpressure rule's major threshold (above the maximum working pressure);
  over 30-60 s the rate of change is typically 0.4 % of set pressure per minute, 2.5 %/min is a
  7-sigma event (the rise-rate rule fires at 5 %/min); the published value (0.1 kPa
  resolution) changes between keep-alives, so it never looks stuck;
- temperature within ±5 °C of the operating temperature (≥ 10 °C under the design temperature);
- liquid level in [20, 80] % (liquefied gas only), combustible gas 0-3 % LEL (flammable media).

A fault takes over a reading with an :class:`Override`: scripted ramps and holds (with a
little noise), then, when released, a ramp back to the live reading, which kept evolving.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from semon.domain import SET_TO_WORKING_RATIO  # no maximum working pressure given: set / 1.05, as the rules

PRESSURE_BAND = (0.80, 0.98)  # × maximum working pressure in normal operation
PRESSURE_MEAN = (0.90, 0.95)  # × maximum working pressure: where a vessel's pressure settles
LEVEL_BAND = (20.0, 80.0)  # % for liquefied gas
LEL_BAND = (0.0, 3.0)  # % LEL near flammable media
TEMP_SPREAD = 5.0  # °C around the operating temperature
SAMPLE_MS = 5000  # how often a quiet vessel re-reads its sensors (report-by-exception check)
ACTIVE_MS = 100  # sampling while a fault ramps a reading
# Report-by-exception deadbands: a larger change than this since the last report is sent at once.
DEADBAND = 0.01  # × set pressure
TEMP_DEADBAND = 1.0  # °C
LEVEL_DEADBAND = 1.0  # %
LEL_DEADBAND = 1.0  # % LEL
HOLD_JITTER = 0.003  # × set pressure, noise while a fault holds the pressure
NEVER = 2**62
CHANNELS = ("pressure", "temperature", "level", "gas_lel")


def _ou(rng: random.Random, x: float, mean: float, sd: float, tau_ms: float, dt_ms: int) -> float:
    """Exact Ornstein-Uhlenbeck step: reverts to ``mean`` with time constant ``tau_ms``."""
    decay = math.exp(-dt_ms / tau_ms)
    return mean + (x - mean) * decay + sd * math.sqrt(1.0 - decay * decay) * rng.gauss(0.0, 1.0)


def _reflect(x: float, lo: float, hi: float) -> float:
    # Mirror at the band edges: the walk stays inside without piling up on an edge value.
    if x > hi:
        x = 2 * hi - x
    if x < lo:
        x = 2 * lo - x
    return lo if x < lo else hi if x > hi else x


@dataclass(frozen=True, slots=True)
class Segment:
    """Ramp a reading to ``target`` at ``rate`` units per ms (``math.inf``: jump), then hold it.

    ``hold_ms`` None holds until the override is released (only sensible for the last segment).
    """

    target: float
    rate: float
    hold_ms: int | None = None


class Override:
    """A reading imposed by a fault: segments of ramp + hold, then a ramp back to the live value."""

    __slots__ = ("base", "hold_until", "jitter", "release_rate", "segments", "value")

    def __init__(self, start: float, segments: Sequence[Segment], jitter: float) -> None:
        self.base = start  # the scripted value, without noise
        self.value = start  # the reading, with noise while holding
        self.segments = list(segments)
        self.hold_until: int | None = None  # holding the first segment's target until then
        self.jitter = jitter
        self.release_rate: float | None = None  # set once released: ramp back at this rate

    @property
    def ramping(self) -> bool:
        """The value is on its way somewhere (sample often)."""
        return self.release_rate is not None or (bool(self.segments) and self.hold_until is None)

    def step(self, t: int, dt: int, live: float, rng: random.Random) -> bool:
        """Advance by ``dt`` ms to device time ``t``; False once released and back on ``live``."""
        if self.release_rate is not None:
            gap = live - self.base
            step = math.inf if self.release_rate == math.inf else self.release_rate * dt
            if abs(gap) <= step:
                return False
            self.base += step if gap > 0 else -step
            self.value = self.base
            return True
        while self.segments:
            seg = self.segments[0]
            if self.hold_until is None:
                gap = seg.target - self.base
                step = math.inf if seg.rate == math.inf else seg.rate * dt
                if abs(gap) > step:
                    self.base += step if gap > 0 else -step
                    self.value = self.base
                    return True
                self.base = seg.target
                self.hold_until = NEVER if seg.hold_ms is None else t + seg.hold_ms
                dt = 0
            if t < self.hold_until:
                break
            self.segments.pop(0)
            self.hold_until = None
        self.value = self.base + (rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        return True

    def release(self, rate: float) -> None:
        """Ramp back to the live reading at ``rate`` units per ms (``math.inf``: at once)."""
        self.release_rate = rate
        self.segments = []


class Vessel:
    """One vessel with its sensors; readings are public properties, the rest is machinery."""

    __slots__ = (
        "_band", "_gas", "_level", "_mean_ratio", "_mean_temp", "_ovr", "_pub", "_ratio", "_rng", "_t", "_temp",
        "device_id", "dirty", "events", "max_silence_ms", "set_pressure", "valve_discharge",
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
        working_pressure: float | None = None,
    ) -> None:
        self.device_id = device_id
        self.set_pressure = set_pressure
        self._rng = rng
        self._t = now_ms
        # The walk runs in units of set pressure; its band is the working band.
        w = (working_pressure if working_pressure is not None else set_pressure / SET_TO_WORKING_RATIO) / set_pressure
        self._band = (PRESSURE_BAND[0] * w, PRESSURE_BAND[1] * w)
        self._mean_ratio = rng.uniform(*PRESSURE_MEAN) * w
        self._ratio = _reflect(self._mean_ratio + rng.gauss(0.0, 0.01), *self._band)
        self._mean_temp = operating_temperature
        self._temp = operating_temperature + rng.gauss(0.0, 0.5)
        self._level: float | None = rng.uniform(35.0, 65.0) if liquefied else None
        self._gas: float | None = rng.uniform(0.0, 1.0) if flammable else None
        self.valve_discharge = False
        self._ovr: dict[str, Override] = {}  # channel -> fault override
        self._pub: tuple[float, float, float | None, float | None, bool] | None = None
        self.events: list[tuple[int, bool, str]] = []  # vessels send no events (yet)
        self.max_silence_ms: int | None = None  # a fault may ask for reports at least this often
        self.dirty = True

    # ----------------------------------------------------------------------------- readings
    @property
    def pressure(self) -> float:
        """Current pressure reading in MPa (gauge)."""
        o = self._ovr.get("pressure")
        return (o.value if o is not None else self._ratio) * self.set_pressure

    @property
    def temperature(self) -> float:
        """Current temperature reading in °C."""
        o = self._ovr.get("temperature")
        return o.value if o is not None else self._temp

    @property
    def level(self) -> float | None:
        """Liquid level in % (liquefied gas only)."""
        if self._level is None:
            return None
        o = self._ovr.get("level")
        return o.value if o is not None else self._level

    @property
    def gas_lel(self) -> float | None:
        """Combustible gas near the vessel in % LEL (flammable media only)."""
        if self._gas is None:
            return None
        o = self._ovr.get("gas_lel")
        return o.value if o is not None else self._gas

    def reading(self, channel: str) -> float | None:
        """A reading in override units: pressure as a ratio of set pressure, the others as reported."""
        if channel == "pressure":
            return self.pressure / self.set_pressure
        return getattr(self, channel)

    def _live(self, channel: str) -> float:
        if channel == "pressure":
            return self._ratio
        if channel == "temperature":
            return self._temp
        v = self._level if channel == "level" else self._gas
        assert v is not None
        return v

    @property
    def quiet(self) -> bool:
        """A vessel can always go silent (its last report stays a normal one)."""
        return True

    @property
    def wake_ms(self) -> int:
        """Next device time at which the vessel wants to be sampled."""
        if not self._ovr:
            return self._t + SAMPLE_MS
        wake = self._t + SAMPLE_MS
        for o in self._ovr.values():
            if o.ramping:
                return self._t + ACTIVE_MS
            if o.hold_until is not None and o.hold_until < wake:
                wake = max(self._t + ACTIVE_MS, o.hold_until)
        return wake

    def status(self, ts: int, seq: int) -> dict[str, Any]:
        """Status payload (contract v1 ``VesselStatus``)."""
        level, gas = self.level, self.gas_lel
        return {
            "ts": ts,
            "seq": seq,
            "pressure": round(self.pressure, 4),
            "temperature": round(self.temperature, 2),
            "level": None if level is None else round(level, 2),
            "valve_discharge": self.valve_discharge,
            "gas_lel": None if gas is None else round(gas, 2),
        }

    def mark_published(self) -> None:
        """The current readings have been reported (the deadbands restart from them)."""
        self.dirty = False
        self._pub = (self.pressure, self.temperature, self.level, self.gas_lel, self.valve_discharge)

    def advance(self, now_ms: int) -> None:
        """Bring the readings to device time ``now_ms``; ``dirty`` if one left its deadband."""
        dt = now_ms - self._t
        if dt <= 0:
            return
        self._t = now_ms
        rng = self._rng
        self._ratio = _reflect(_ou(rng, self._ratio, self._mean_ratio, 0.01, 1_800_000.0, dt), *self._band)
        m = self._mean_temp
        self._temp = _reflect(_ou(rng, self._temp, m, 1.0, 1_800_000.0, dt), m - TEMP_SPREAD, m + TEMP_SPREAD)
        if self._level is not None:
            self._level = _reflect(_ou(rng, self._level, 50.0, 10.0, 7_200_000.0, dt), *LEVEL_BAND)
        if self._gas is not None:
            self._gas = _reflect(_ou(rng, self._gas, 0.6, 0.4, 600_000.0, dt), *LEL_BAND)
        if self._ovr:
            for ch, o in list(self._ovr.items()):
                if not o.step(now_ms, dt, self._live(ch), rng):
                    del self._ovr[ch]
        pub = self._pub
        if pub is None or self.dirty:
            self.dirty = True
            return
        if (
            abs(self.pressure - pub[0]) >= DEADBAND * self.set_pressure
            or abs(self.temperature - pub[1]) >= TEMP_DEADBAND
            or self.valve_discharge is not pub[4]
        ):
            self.dirty = True
        elif pub[2] is not None and abs(self.level - pub[2]) >= LEVEL_DEADBAND:  # type: ignore[operator]
            self.dirty = True
        elif pub[3] is not None and abs(self.gas_lel - pub[3]) >= LEL_DEADBAND:  # type: ignore[operator]
            self.dirty = True

    # ------------------------------------------------------------------------------- faults
    def override(
        self, channel: str, segments: Sequence[Segment], *, start: float | None = None, jitter: float = 0.0
    ) -> None:
        """Fault: take over ``channel`` (units of :meth:`reading`), from ``start`` (default: now)."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown vessel channel {channel!r}")
        if self.reading(channel) is None:
            raise ValueError(f"{self.device_id} has no {channel} sensor")
        o = self._ovr.get(channel)
        begin = start if start is not None else (o.value if o is not None else self.reading(channel))
        assert begin is not None
        self._ovr[channel] = Override(begin, segments, jitter)
        self.dirty = True

    def release(self, channel: str, *, rate: float | None = None, within_ms: int | None = None) -> None:
        """End a fault's override: back to the live reading at ``rate`` per ms or within ``within_ms``."""
        o = self._ovr.get(channel)
        if o is None:
            return
        if rate is None:
            gap = abs(o.value - self._live(channel))
            rate = math.inf if not within_ms else gap / within_ms
        o.release(rate)
        self.dirty = True

    def force_pressure(self, ratio: float, ramp_ms: int) -> None:
        """Fault: ramp the pressure to ``ratio`` × set pressure within ``ramp_ms`` and hold it (with noise)."""
        start = self.pressure / self.set_pressure
        self.override("pressure", [Segment(ratio, abs(ratio - start) / max(1, ramp_ms))], jitter=HOLD_JITTER)

    def release_pressure(self, ramp_ms: int) -> None:
        """End of a pressure fault: ramp back to the normal reading within ``ramp_ms``."""
        self.release("pressure", within_ms=ramp_ms)

    def set_valve(self, discharging: bool) -> None:
        """Fault: the safety valve discharges (or reseats)."""
        if self.valve_discharge is not discharging:
            self.valve_discharge = discharging
            self.dirty = True
