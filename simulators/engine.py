"""Fleet engine: steps every device model on one simulated clock and decides what to publish.

No I/O here: :meth:`FleetEngine.step_messages` returns the messages due at this step (status,
event and online-flag payloads), the publisher sends them; :meth:`FleetEngine.iter_messages`
yields them in device-time order for in-process consumers (scoring, long runs without MQTT).
The clock advances in fixed device-time steps (default 100 ms). Devices are kept in a timing
wheel keyed by the step at which they next need attention (their own next change, their next
periodic report, or a fault), so a step costs only the devices that are due — idle cars,
travelling cars between two floors and quiet vessels cost nothing — which is what lets one
process drive large fleets.

Publishing policy per device:
- a periodic report (keep-alive) every ``report_interval_ms`` (fixed schedule, staggered
  across the fleet so the aggregate rate is smooth),
- a report whenever a reported state changes (``model.dirty``) or a tracked fault condition
  flips, coalesced to at most one per ``min_interval_ms`` (100 ms); a model may ask for
  reports at least every ``model.max_silence_ms`` (a vessel during a pressure surge),
- events (GB/T 24476 codes) when the model raises them, before the status of the same step,
- nothing while an ``offline`` fault keeps the device silent,
- ``ts`` is the step time (strictly increasing per device and channel); ``seq`` counts from 1
  without gaps, one counter for statuses and a separate one for events.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator, Sequence
from typing import Any

from semon.simulators.elevator import Elevator
from semon.simulators.faults import FaultSpec, make_fault, overlaps
from semon.simulators.fleet import MEDIA, DeviceSpec, Fleet
from semon.simulators.truth import FaultTracker, TruthRecord
from semon.simulators.vessel import Vessel
from semon.timeutil import local_date

Model = Elevator | Vessel
MIN_INTERVAL_MS = 100  # at most one status per device per 100 ms of device time
FaultEvent = tuple[int, int, FaultTracker]  # (device ms, 0 = start / 1 = stop, tracker)
Message = tuple[int, str, dict[str, Any]]  # (device index, channel, payload)
SCHEME = "gbt24476"


def _event_key(e: FaultEvent) -> tuple[int, int]:
    return e[0], e[1]


def make_model(spec: DeviceSpec, rng: random.Random, now_ms: int) -> Model:
    """Instantiate the dynamic model of a registered device, in a plausible initial state."""
    if spec.elevator is not None:
        e = spec.elevator
        labels = e.labels
        start = labels.index(1) if 1 in labels and rng.random() < 0.6 else rng.randrange(len(labels))
        today = local_date(now_ms)  # install dates are calendar days in the city's zone
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
            liquefied=medium.liquefied, flammable=medium.flammable, working_pressure=v.working_pressure,
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
        self._eseq = [0] * n  # events have their own counter
        self._last_pub = [start_ms - min_interval_ms] * n  # last status
        self._last_msg: list[int | None] = [None] * n  # last message of any channel
        self._silent = [0] * n  # active offline faults
        self._pending_silence: dict[int, FaultTracker] = {}  # offline faults waiting for an idle car
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
        self.active_faults = 0
        self.messages = 0  # status messages produced so far
        self.event_messages = 0  # event messages produced so far
        self.online_messages = 0  # online-flag changes produced by faults (last will)
        self.truth: list[TruthRecord] = []  # every record emitted so far
        self._unread: list[TruthRecord] = []
        for spec in faults:
            self.add_fault(spec)

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
        """Advance one step; returns ``(device index, status)`` to publish.

        Events and online-flag messages of the step are dropped: use :meth:`step_messages`
        when the fault set includes types that send them.
        """
        return [(i, p) for i, ch, p in self.step_messages() if ch == "status"]

    def step_messages(self) -> list[Message]:
        """Advance the due devices to the current step; returns ``(device index, channel, payload)``.

        Channels: ``status`` and ``event`` (contract v1 payloads), ``online`` (payload
        ``{"ts": device ms, "online": bool}``; over MQTT it is the retained text ``1`` / ``0``).
        Per device: online flag first, then events, then the status.
        """
        k = self._k
        now = self.start_ms + k * self.step_ms
        out: list[Message] = []
        if self._next_event < len(self._events) and self._events[self._next_event][0] <= now:
            self._apply_faults(now, k, out)
        bucket = self._wheel.pop(k, None)
        if bucket:
            models, due, next_report, last_pub = self.models, self._due, self._next_report, self._last_pub
            for i in bucket:
                if due[i] != k:
                    continue  # stale entry: the device was rescheduled
                m = models[i]
                m.advance(now)
                trackers = self._trackers.get(i)
                silent = self._silent[i]
                if m.events:
                    evs, m.events = m.events, []
                    if not silent:
                        for code, active, text in evs:
                            out.append((i, "event", self._publish_event(i, now, code, active, text)))
                retry = now + self.report_interval_ms
                # Devices with faults are judged on the status they would publish (few of them).
                status = m.status(now, 0) if trackers else None
                fast = m.max_silence_ms
                publish = m.dirty or now >= next_report[i] or (fast is not None and now - last_pub[i] >= fast)
                hot = False
                if trackers:
                    for t in trackers:
                        if t.started and not t.done and not t.fault.silent:
                            hot = True
                            if not publish:
                                # A fault condition appearing or ending is a change the detector must see now.
                                h = t.fault.holds(status)  # type: ignore[arg-type]
                                publish = h is not None and h != t.holding
                if publish and now - last_pub[i] < self.min_interval_ms:
                    publish = False
                    retry = last_pub[i] + self.min_interval_ms
                if publish:
                    if silent:
                        self._skip_report(i, now)
                    else:
                        out.append((i, "status", self._publish(i, m, now, status)))
                if self._pending_silence and i in self._pending_silence:
                    if m.quiet:
                        self._begin_silence(i, now, self._pending_silence.pop(i), out)
                    else:
                        hot = True
                wake = min(m.wake_ms, next_report[i], retry)
                if fast is not None:
                    wake = min(wake, last_pub[i] + fast)
                # A device under a fault is watched every step, so the truth sees each change.
                self._schedule(i, now + 1 if hot else wake, earliest=k + 1)
        self._k = k + 1
        return out

    def iter_messages(self, duration_ms: int | None = None) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
        """Step for ``duration_ms`` of device time (None: forever), yielding ``(kind, device_id, channel, payload)``.

        Messages come in device-time order (``payload["ts"]``), as :meth:`step_messages`
        describes; ground truth accumulates in :attr:`truth` (call :meth:`finish` at the end).
        """
        kinds, ids = self.kinds, self.device_ids
        end = None if duration_ms is None else self._k + duration_ms // self.step_ms
        while end is None or self._k < end:
            for i, channel, payload in self.step_messages():
                yield kinds[i], ids[i], channel, payload

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
        self._last_msg[i] = now
        self._advance_report(i, now)
        for t in self._trackers.get(i, ()):
            rec = t.observe(now, "status", status)
            if rec is not None:
                self._emit(rec)
        return status

    def _skip_report(self, i: int, now: int) -> None:
        # Silent (offline): the report is not sent; keep the schedule moving.
        self._advance_report(i, now)

    def _advance_report(self, i: int, now: int) -> None:
        nr = self._next_report[i]
        while nr <= now:
            nr += self.report_interval_ms
        self._next_report[i] = nr

    def _publish_event(self, i: int, now: int, code: int, active: bool, text: str) -> dict[str, Any]:
        seq = self._eseq[i] + 1
        self._eseq[i] = seq
        self.event_messages += 1
        self._last_msg[i] = now
        ev = {"ts": now, "seq": seq, "code": code, "scheme": SCHEME, "active": active, "text": text}
        for t in self._trackers.get(i, ()):
            rec = t.observe(now, "event", ev)
            if rec is not None:
                self._emit(rec)
        return ev

    def _online(self, i: int, now: int, online: bool, out: list[Message]) -> None:
        self.online_messages += 1
        self._last_msg[i] = now
        payload = {"ts": now, "online": online}
        out.append((i, "online", payload))
        for t in self._trackers.get(i, ()):
            rec = t.observe(now, "online", payload)
            if rec is not None:
                self._emit(rec)

    # ----------------------------------------------------------------------------- faults
    def add_fault(self, spec: FaultSpec) -> None:
        """Schedule a fault (also while running); its onset must not lie in the past."""
        i = self._index.get(spec.device_id)
        if i is None:
            raise ValueError(f"fault {spec.text!r}: device {spec.device_id} is not in the fleet")
        if self.start_ms + spec.onset_ms < self.now_ms:
            raise ValueError(f"fault {spec.text!r}: onset {spec.onset_ms} ms is before the current step")
        fault = make_fault(spec, self.fleet)
        problem = fault.check_device(fault.device)
        if problem:
            raise ValueError(f"fault {spec.text!r}: {problem}")
        for t in self._trackers.get(i, ()):
            if overlaps(spec, t.fault.spec):
                raise ValueError(f"fault {spec.text!r} overlaps {t.fault.spec.text!r} on {spec.device_id}")
        # The fault window in device time: a scorer can tie implied alarms to it.
        fault.details["scheduled_ts"] = [self.start_ms + spec.onset_ms, self.start_ms + spec.end_ms]
        tracker = FaultTracker(fault)
        self._trackers.setdefault(i, []).append(tracker)
        # Both events lie at or after the current step, hence after every event already applied.
        bisect.insort(self._events, (self.start_ms + spec.onset_ms, 0, tracker), key=_event_key)
        bisect.insort(self._events, (self.start_ms + spec.end_ms, 1, tracker), key=_event_key)

    def _apply_faults(self, now: int, k: int, out: list[Message]) -> None:
        events = self._events
        while self._next_event < len(events) and events[self._next_event][0] <= now:
            _, what, tracker = events[self._next_event]
            self._next_event += 1
            fault = tracker.fault
            i = self._index[fault.device.device_id]
            m = self.models[i]
            m.advance(now)
            if what == 0:
                fault.begin(m)
                if not fault.silent:
                    tracker.begin(now, self._last_msg[i])
                elif m.quiet:
                    self._begin_silence(i, now, tracker, out)
                else:
                    # A car goes silent only once idle: a terminal lost mid-trip would leave
                    # "running" (or a passenger behind closed doors) as its last known state.
                    self._pending_silence[i] = tracker
                self.active_faults += 1
            else:
                fault.end(m)
                if fault.silent:
                    if self._pending_silence.pop(i, None) is None:
                        self._silent[i] -= 1
                        if fault.lwt:
                            self._online(i, now, True, out)
                rec = tracker.end(now)
                if rec is not None:
                    self._emit(rec)
                self.active_faults -= 1
            self._schedule(i, now, earliest=k)

    def _begin_silence(self, i: int, now: int, tracker: FaultTracker, out: list[Message]) -> None:
        if tracker.fault.lwt:
            self._online(i, now, False, out)  # the broker publishes the last will
        tracker.begin(now, self._last_msg[i])
        self._silent[i] += 1

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
        """Status messages published per device (= last status ``seq``)."""
        return dict(zip(self.device_ids, self._seq, strict=True))

    def last_event_seq(self) -> dict[str, int]:
        """Event messages published per device (= last event ``seq``)."""
        return dict(zip(self.device_ids, self._eseq, strict=True))
