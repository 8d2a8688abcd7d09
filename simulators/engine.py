"""Fleet engine: steps every device model on one simulated clock and decides what to publish.

No I/O here: ``step()`` returns the status payloads due at this step, the publisher sends them.
The clock advances in fixed device-time steps (default 100 ms). Devices are kept in a timing
wheel keyed by the step at which they next need attention (their own next change, their next
periodic report, or a fault), so a step costs only the devices that are due — idle cars and
quiet vessels cost nothing — which is what lets one process drive large fleets.

Publishing policy per device:
- a periodic report every ``report_interval_ms`` (fixed schedule, staggered across the fleet
  so the aggregate rate is smooth),
- a report whenever a reported state changes (``model.dirty``) or a tracked fault condition
  flips, coalesced to at most one per ``min_interval_ms`` (100 ms),
- ``ts`` is the step time (strictly increasing per device), ``seq`` counts from 1 without gaps.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from semon.simulators.elevator import Elevator
from semon.simulators.faults import MIN_GAP_MS, FaultSpec, make_fault
from semon.simulators.fleet import MEDIA, DeviceSpec, Fleet
from semon.simulators.truth import FaultTracker, TruthRecord
from semon.simulators.vessel import Vessel

Model = Elevator | Vessel
MIN_INTERVAL_MS = 100  # at most one status per device per 100 ms of device time
FaultEvent = tuple[int, int, FaultTracker]  # (device ms, 0 = start / 1 = stop, tracker)


def _event_key(e: FaultEvent) -> tuple[int, int]:
    return e[0], e[1]


def make_model(spec: DeviceSpec, rng: random.Random, now_ms: int) -> Model:
    """Instantiate the dynamic model of a registered device, in a plausible initial state."""
    if spec.elevator is not None:
        e = spec.elevator
        labels = e.labels
        start = labels.index(1) if 1 in labels and rng.random() < 0.6 else rng.randrange(len(labels))
        today = datetime.fromtimestamp(now_ms / 1000, UTC).date()
        years = max(0.0, (today - spec.install_date).days / 365.25)
        # Lifetime counters: 20-60 k trips a year is usual for residential / office lifts.
        runs = int(years * rng.uniform(20_000, 60_000))
        return Elevator(
            spec.device_id, labels, e.rated_speed, rng, now_ms,
            mean_call_gap_ms=int(rng.uniform(45_000, 240_000)),  # daytime traffic, quiet to busy
            start_index=start, run_count=runs, run_hours=round(runs * rng.uniform(12.0, 20.0) / 3600.0, 1),
        )  # fmt: skip
    if spec.vessel is not None:
        v = spec.vessel
        medium = MEDIA[v.medium]
        temp = rng.uniform(*medium.operating_temperature)
        return Vessel(
            spec.device_id, v.set_pressure, temp, rng, now_ms,
            liquefied=medium.liquefied, flammable=medium.flammable,
        )  # fmt: skip
    raise ValueError(f"device {spec.device_id} has neither elevator nor vessel ratings")


class FleetEngine:
    """All device models of a fleet on one device clock, with faults and ground truth."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        start_ms: int,
        report_interval_ms: int,
        faults: Sequence[FaultSpec] = (),
        step_ms: int = 100,
        min_interval_ms: int = MIN_INTERVAL_MS,
    ) -> None:
        if step_ms <= 0 or report_interval_ms <= 0:
            raise ValueError("step_ms and report_interval_ms must be > 0")
        self.fleet = fleet
        self.start_ms = start_ms
        self.step_ms = step_ms
        self.min_interval_ms = min_interval_ms
        self.report_interval_ms = max(report_interval_ms, min_interval_ms)
        # One generator for all devices: a Random per device would cost ~2.5 kB each.
        rng = random.Random(f"semon-sim:{fleet.seed}")
        self.models: list[Model] = [make_model(d, rng, start_ms) for d in fleet.devices]
        self.device_ids = [d.device_id for d in fleet.devices]
        self.kinds = [d.kind for d in fleet.devices]
        n = len(self.models)
        self._seq = [0] * n
        self._last_pub = [start_ms - min_interval_ms] * n
        self._k = 0  # index of the next step
        self._due = [-1] * n
        self._wheel: dict[int, list[int]] = {}
        interval = self.report_interval_ms
        self._next_report = [start_ms + (i * interval) // max(1, n) for i in range(n)]
        for i, m in enumerate(self.models):
            self._schedule(i, min(m.wake_ms, self._next_report[i]), earliest=0)
        self._index = {d: i for i, d in enumerate(self.device_ids)}
        self._trackers: dict[int, list[FaultTracker]] = {}
        self._events: list[FaultEvent] = []  # sorted by time, starts before stops
        self._next_event = 0
        for spec in faults:
            self.add_fault(spec)
        self.active_faults = 0
        self.messages = 0  # status messages produced so far
        self.truth: list[TruthRecord] = []  # every record emitted so far
        self._unread: list[TruthRecord] = []

    # ----------------------------------------------------------------------------- clock
    @property
    def now_ms(self) -> int:
        """Device time of the next step."""
        return self.start_ms + self._k * self.step_ms

    @property
    def elapsed_ms(self) -> int:
        """Device time since the start at the next step."""
        return self._k * self.step_ms

    def _schedule(self, i: int, t_ms: int, earliest: int) -> None:
        # Round up to the step grid; never earlier than ``earliest`` (normally the next step).
        s = max(earliest, -((self.start_ms - t_ms) // self.step_ms))
        if self._due[i] != s:
            self._due[i] = s
            self._wheel.setdefault(s, []).append(i)

    # ------------------------------------------------------------------------------ step
    def step(self) -> list[tuple[int, dict[str, Any]]]:
        """Advance the due devices to the current step; returns ``(device index, status)`` to publish."""
        k = self._k
        now = self.start_ms + k * self.step_ms
        if self._next_event < len(self._events) and self._events[self._next_event][0] <= now:
            self._apply_faults(now, k)
        out: list[tuple[int, dict[str, Any]]] = []
        bucket = self._wheel.pop(k, None)
        if bucket:
            models, due, next_report = self.models, self._due, self._next_report
            for i in bucket:
                if due[i] != k:
                    continue  # stale entry: the device was rescheduled
                m = models[i]
                m.advance(now)
                retry = now + self.report_interval_ms
                trackers = self._trackers.get(i)
                # Devices with faults are judged on the status they would publish (few of them).
                status = m.status(now, 0) if trackers else None
                publish = m.dirty or now >= next_report[i]
                if trackers and not publish:
                    # A fault condition appearing or ending is a change the detector must see now.
                    publish = any(not t.done and t.fault.holds(status) != t.holding for t in trackers)
                if publish and now - self._last_pub[i] < self.min_interval_ms:
                    publish = False
                    retry = self._last_pub[i] + self.min_interval_ms
                if publish:
                    out.append((i, self._publish(i, m, now, status)))
                self._schedule(i, min(m.wake_ms, next_report[i], retry), earliest=k + 1)
        self._k = k + 1
        return out

    def _publish(self, i: int, m: Model, now: int, status: dict[str, Any] | None) -> dict[str, Any]:
        seq = self._seq[i] + 1
        self._seq[i] = seq
        self.messages += 1
        if status is None:
            status = m.status(now, seq)
        else:
            status["seq"] = seq
        m.mark_published()
        self._last_pub[i] = now
        nr = self._next_report[i]
        while nr <= now:
            nr += self.report_interval_ms
        self._next_report[i] = nr
        for t in self._trackers.get(i, ()):
            rec = t.observe(now, status)
            if rec is not None:
                self._emit(rec)
        return status

    def add_fault(self, spec: FaultSpec) -> None:
        """Schedule a fault (also while running); its onset must not lie in the past."""
        i = self._index.get(spec.device_id)
        if i is None:
            raise ValueError(f"fault {spec.text!r}: device {spec.device_id} is not in the fleet")
        if self.start_ms + spec.onset_ms < self.now_ms:
            raise ValueError(f"fault {spec.text!r}: onset {spec.onset_ms} ms is before the current step")
        for t in self._trackers.get(i, ()):
            other = t.fault.spec
            if spec.onset_ms < other.end_ms + MIN_GAP_MS and other.onset_ms < spec.end_ms + MIN_GAP_MS:
                raise ValueError(f"fault {spec.text!r} overlaps {other.text!r} on {spec.device_id}")
        tracker = FaultTracker(make_fault(spec, self.fleet))
        self._trackers.setdefault(i, []).append(tracker)
        # Both events lie at or after the current step, hence after every event already applied.
        bisect.insort(self._events, (self.start_ms + spec.onset_ms, 0, tracker), key=_event_key)
        bisect.insort(self._events, (self.start_ms + spec.end_ms, 1, tracker), key=_event_key)

    def _apply_faults(self, now: int, k: int) -> None:
        events = self._events
        while self._next_event < len(events) and events[self._next_event][0] <= now:
            _, what, tracker = events[self._next_event]
            self._next_event += 1
            i = self._index[tracker.fault.device.device_id]
            m = self.models[i]
            m.advance(now)
            if what == 0:
                tracker.fault.start(m)
                tracker.started = True
                self.active_faults += 1
            else:
                tracker.fault.stop(m)
                self.active_faults -= 1
            self._schedule(i, now, earliest=k)

    def _emit(self, rec: TruthRecord) -> None:
        self.truth.append(rec)
        self._unread.append(rec)

    # ----------------------------------------------------------------------------- results
    def pop_truth(self) -> list[TruthRecord]:
        """Ground-truth records completed since the last call."""
        out, self._unread = self._unread, []
        return out

    def finish(self) -> list[TruthRecord]:
        """Close the faults still open (``end_ts`` None) and return every unread record."""
        for trackers in self._trackers.values():
            for t in trackers:
                if t.started and not t.done:
                    t.done = True
                    self._emit(t.record())
        return self.pop_truth()

    def last_seq(self) -> dict[str, int]:
        """Status messages published per device (= last ``seq``)."""
        return dict(zip(self.device_ids, self._seq, strict=True))
