"""Ground truth of injected faults, taken from the published data, and its JSON-lines writer.

For scoring detection, what counts is when the faulty condition is *visible* in the status
stream, so a :class:`FaultTracker` watches every status its device publishes: ``onset_ts`` is
the ts of the first published status of the episode that shows the condition (it can lie a
little before the scheduled onset if the device was already in that state, e.g. a car about to
depart), ``end_ts`` the ts of the first published status that no longer shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from semon.simulators.faults import Fault


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

    def as_dict(self) -> dict[str, Any]:
        """The record as written to the ground-truth file."""
        return {
            "device_id": self.device_id,
            "kind": self.kind,
            "fault": self.fault,
            "alarm_type": self.alarm_type,
            "onset_ts": self.onset_ts,
            "end_ts": self.end_ts,
            "details": self.details,
        }


class FaultTracker:
    """Follows one fault's condition through the statuses its device publishes."""

    __slots__ = ("_since", "done", "end_ts", "fault", "holding", "onset_ts", "started")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.started = False  # the fault has been applied to the model
        self.done = False  # the record is complete
        self.holding = False  # the last published status showed the condition
        self.onset_ts: int | None = None
        self.end_ts: int | None = None
        self._since: int | None = None  # start of the current run of statuses showing it

    def observe(self, ts: int, status: Mapping[str, Any]) -> TruthRecord | None:
        """Account for one published status; returns the record when the episode ends."""
        if self.done:
            return None
        self.holding = self.fault.holds(status)
        if not self.holding:
            self._since = None
        elif self._since is None:
            self._since = ts
        if not self.started:
            return None
        if self.onset_ts is None:
            if self.holding:
                self.onset_ts = self._since
            return None
        if not self.holding:
            self.end_ts = ts
            self.done = True
            return self.record()
        return None

    def record(self) -> TruthRecord:
        """The ground-truth record as it stands (``end_ts`` None while still holding)."""
        f = self.fault
        return TruthRecord(
            f.device.device_id, f.kind, f.name, f.alarm_type, self.onset_ts, self.end_ts, dict(f.details)
        )


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
