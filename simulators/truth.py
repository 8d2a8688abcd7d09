"""Ground truth of injected faults, taken from the published data, and its JSON-lines writer.

For scoring detection, what counts is when the faulty condition is *visible* in the message
stream, so a :class:`FaultTracker` watches every message its device publishes: ``onset_ts`` is
the ts of the first published status (or event) of the episode that shows the condition (it
can lie a little before the scheduled onset if the device was already in that state, e.g. a
car about to depart), ``end_ts`` the ts of the first published message that no longer shows it
(some types refine this, see their docstrings: door cycling, terminal offline).

Each record also carries the expected ``severity`` and ``implied``: other alarm types that
may legitimately fire during this fault (e.g. a passenger trapped between floors for ≥ 45 s
also satisfies "stopped outside the door zone"), so a scorer need not count them as false.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from semon.simulators.faults import Fault

# A secondary condition counts as implied once it held this close to its rule's duration:
# a rule timer running a little early may legitimately fire on it.
SECONDARY_SLACK_MS = 2_000


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """One injected fault as the detection should see it (device time, ms)."""

    device_id: str
    kind: str
    fault: str
    alarm_type: str
    onset_ts: int | None  # None: the condition never became visible
    end_ts: int | None  # None: still holding when the simulation stopped
    details: dict[str, Any] = field(default_factory=dict)
    severity: str = ""  # expected severity of the alarm
    implied: tuple[str, ...] = ()  # other alarm types that may legitimately fire

    def as_dict(self) -> dict[str, Any]:
        """The record as written to the ground-truth file."""
        return {
            "device_id": self.device_id,
            "kind": self.kind,
            "fault": self.fault,
            "alarm_type": self.alarm_type,
            "severity": self.severity,
            "onset_ts": self.onset_ts,
            "end_ts": self.end_ts,
            "implied": list(self.implied),
            "details": self.details,
        }


class FaultTracker:
    """Follows one fault's condition through the messages its device publishes."""

    __slots__ = (
        "_found", "_sec_since", "_since", "done", "end_ts", "fault", "holding", "onset_ts", "started", "stopped",
    )  # fmt: skip

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.started = False  # the fault has been applied to the model
        self.stopped = False  # the fault window is over
        self.done = False  # the record is complete
        self.holding = False  # the last published message showed the condition
        self.onset_ts: int | None = None
        self.end_ts: int | None = None
        self._since: int | None = None  # start of the current run of statuses showing it
        self._sec_since: list[int | None] = [None] * len(fault.secondary)
        self._found: list[str] = []  # secondary alarm types seen long enough

    def begin(self, now: int, last_msg_ts: int | None) -> None:
        """The fault starts at device time ``now``; ``last_msg_ts`` is the device's last message so far."""
        self.started = True
        if self.fault.silent:
            # Offline: the silence began after the last message (or now, with a last will).
            self.onset_ts = now if self.fault.lwt or last_msg_ts is None else last_msg_ts
            self.holding = True

    def end(self, now: int) -> TruthRecord | None:
        """The fault window ends; returns the record if the condition never became visible."""
        self.stopped = True
        if not self.done and self.onset_ts is None:
            self.done = True
            return self.record()
        return None

    def observe(self, ts: int, channel: str, payload: Mapping[str, Any]) -> TruthRecord | None:
        """Account for one published message; returns the record when the episode ends."""
        if self.done:
            return None
        f = self.fault
        if f.silent:
            if self.stopped:  # the first message after the silence
                self.end_ts = ts
                self.done = True
                return self.record()
            return None
        h = f.holds(payload) if channel == "status" else f.on_event(payload) if channel == "event" else None
        if self.started and channel == "status" and f.secondary:
            self._secondary(ts, payload)
        end: int | None = None
        if h is not None:
            self.holding = h
            if not h:
                self._since = None
            elif self._since is None:
                self._since = ts
            if self.started:
                if self.onset_ts is None:
                    if h:
                        self.onset_ts = self._since
                elif not h:
                    end = f.end_ts(ts)
        f.seen(channel, payload)
        if end is not None:
            self.end_ts = end
            self.done = True
            return self.record()
        return None

    def _secondary(self, ts: int, status: Mapping[str, Any]) -> None:
        # The condition held from the first status showing it until the first one that does not
        # (a rule timer sees the time pass between messages too).
        for k, sec in enumerate(self.fault.secondary):
            since = self._sec_since[k]
            long_enough = since is not None and ts - since >= sec.min_ms - SECONDARY_SLACK_MS
            if long_enough and sec.alarm_type not in self._found:
                self._found.append(sec.alarm_type)
            if sec.holds(status):
                if since is None:
                    self._sec_since[k] = ts
            else:
                self._sec_since[k] = None

    def record(self) -> TruthRecord:
        """The ground-truth record as it stands (``end_ts`` None while still holding)."""
        f = self.fault
        implied = tuple(dict.fromkeys((*f.implied, *f.extra_implied, *self._found)))
        return TruthRecord(
            f.device.device_id, f.kind, f.name, f.expected_alarm_type, self.onset_ts, self.end_ts, dict(f.details),
            f.expected_severity, implied,
        )  # fmt: skip


class TruthWriter:
    """Writes ground-truth records as JSON lines, flushed one by one (others may tail the file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[bytes] = self.path.open("wb")

    def write(self, record: TruthRecord) -> None:
        """Append one record."""
        self._f.write(orjson.dumps(record.as_dict()) + b"\n")
        self._f.flush()

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    def __enter__(self) -> TruthWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
