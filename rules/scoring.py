"""Scoring detection against a simulator's ground truth: recall, precision and latency per type.

A truth record (one JSON line) says which alarm a fault should raise, from when (``onset_ts``,
device time) to when (``end_ts``), at which severity, and which other alarm types it may
legitimately cause (``implied``). An alarm of the expected type on that device overlapping the
fault detects it; its latency is from the fault's onset to the alarm's start (the severity
then only has to be reached during the fault). Alarms explained by no fault are false positives.

An alarm that began before the fault (more than ``STANDING_MS`` before its onset) detects
it only by reaching the expected severity after the onset — latency to that moment — and when
it stood at that severity all along it is counted as ``preexisting``, never as a detection
with a negative latency. (That is what made ``semon score`` print a negative p50 in the demo:
vessels at normal working pressure sat in a false "≥ 90 % of set pressure" overpressure from
their first message, and an injected overpressure matched that standing alarm.) A record with
an empty ``alarm_type`` is behaviour that must raise nothing (a trap in inspection): any alarm
on its device counts as a false positive, as elsewhere. Implied alarms count from the fault's
scheduled start (``details.scheduled_ts``), which may precede the onset of its own alarm: a
sensor glitch before a rise raises its out-of-range alarm before the rise begins.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from semon.domain import DeviceInfo
from semon.rules.base import SEVERITY_RANK, Severity
from semon.rules.catalog import Catalog
from semon.rules.engine import RuleEngine
from semon.store.db import Database
from semon.store.models import Alarm, AlarmEvent
from semon.store.registry import load_registry

# An alarm may begin slightly before the recorded onset (a ladder's lower rung, sample spacing).
MATCH_SLACK_MS = 5_000
# An alarm that began longer than this before the fault's onset was standing before it (timer
# estimates of an accelerated simulation and lower rungs begin a few seconds early, no more).
STANDING_MS = 30_000
# "Detected within its configured duration + 1 s" (issue acceptance).
DEADLINE_SLACK_MS = 1_000


@dataclass
class Truth:
    """One injected fault."""

    device_id: str
    alarm_type: str
    onset_ts: int
    end_ts: int | None
    severity: str | None = None
    implied: list[str] = field(default_factory=list)
    fault: str = ""
    scheduled_ts: int | None = None  # the fault's scheduled start (implied alarms count from there)


@dataclass
class TypeScore:
    """Detection figures for one alarm type."""

    alarm_type: str
    faults: int = 0
    detected: int = 0
    wrong_severity: int = 0
    alarms: int = 0
    false_positives: int = 0
    late: int = 0
    preexisting: int = 0  # matched only by an alarm already at the expected severity before the onset
    latencies_ms: list[int] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        """Detected faults / injected faults."""
        return self.detected / self.faults if self.faults else None

    @property
    def precision(self) -> float | None:
        """Alarms explained by a fault / all alarms of the type."""
        return (self.alarms - self.false_positives) / self.alarms if self.alarms else None

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        lat = sorted(self.latencies_ms)
        d = asdict(self)
        d.pop("latencies_ms")
        d.update(
            recall=self.recall,
            precision=self.precision,
            latency_p50_ms=lat[len(lat) // 2] if lat else None,
            latency_max_ms=lat[-1] if lat else None,
        )
        return d


def load_truth(path: Path) -> list[Truth]:
    """Read a ground-truth JSONL file (records without an onset never became visible: skipped)."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if not r.get("alarm_type") or r.get("onset_ts") is None:
            continue  # expects no alarm, or never became visible
        sched = (r.get("details") or {}).get("scheduled_ts") or [None]
        out.append(
            Truth(r["device_id"], r["alarm_type"], int(r["onset_ts"]), r.get("end_ts"), r.get("severity"),
                  list(r.get("implied") or []), r.get("fault", ""), sched[0])
        )  # fmt: skip
    return out


def _deadline_ms(engine: RuleEngine, dev: DeviceInfo | None, alarm_type: str) -> int:
    """The configured time a fault must hold before its alarm is due, for this device."""
    if alarm_type == engine.offline_spec.alarm_type:
        return engine.offline_timeout_ms
    if dev is None:
        return 0
    rules = engine.catalog.for_device(dev)
    times = [rules.trigger_ms[i] for i, c in enumerate(rules.rules) if c.spec.alarm_type == alarm_type]
    return max(times) if times else 0


def _detection_ts(
    hits: list[Alarm], reached: dict[int, list[tuple[int, str]]], want: int | None, earliest: int
) -> int | None:
    """When the fault was detected: the first alarm starting from ``earliest`` on, or an older
    alarm reaching the expected severity (rank ``want``) from then on; None if neither."""
    times = []
    for a in hits:
        if a.start_ts >= earliest:
            times.append(a.start_ts)
        else:
            times += [
                when
                for when, sev in reached.get(a.id, [])
                if when >= earliest and (want is None or SEVERITY_RANK[Severity(sev)] <= want)
            ]
    return min(times, default=None)


def score(
    db: Database,
    truth: list[Truth],
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    catalog: Catalog | None = None,
) -> dict[str, TypeScore]:
    """Compare alarms in the database with the truth; alarms are limited to [start_ms, end_ms)."""
    engine = RuleEngine(catalog)
    registry = load_registry(db)
    with db.session() as s:
        q = select(Alarm)
        if start_ms is not None:
            q = q.where(Alarm.start_ts >= start_ms)
        if end_ms is not None:
            q = q.where(Alarm.start_ts < end_ms)
        alarms = list(s.scalars(q))
        reached: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for e in s.scalars(select(AlarmEvent).where(AlarmEvent.event.in_(("raised", "severity_changed")))):
            reached[e.alarm_id].append((e.ts, e.severity))
    by_dev: dict[str, list[Alarm]] = defaultdict(list)
    for a in alarms:
        by_dev[a.device_id].append(a)
    scores: dict[str, TypeScore] = {}

    def sc(t: str) -> TypeScore:
        return scores.setdefault(t, TypeScore(t))

    explained: set[int] = set()
    for t in truth:
        ts = sc(t.alarm_type)
        ts.faults += 1
        end = t.end_ts if t.end_ts is not None else 2**62
        deadline = _deadline_ms(engine, registry.get(t.device_id), t.alarm_type)
        overlapping = [
            a
            for a in by_dev.get(t.device_id, [])
            if a.onset_ts <= end + deadline + MATCH_SLACK_MS
            and (a.end_ts is None or a.end_ts >= t.onset_ts - MATCH_SLACK_MS)
        ]
        window_start = min(t.onset_ts, t.scheduled_ts if t.scheduled_ts is not None else t.onset_ts)
        for a in by_dev.get(t.device_id, []):
            if (
                a.type in t.implied
                and a.onset_ts <= end + deadline + MATCH_SLACK_MS
                and (a.end_ts is None or a.end_ts >= window_start - MATCH_SLACK_MS)
            ):
                explained.add(a.id)
        hits = sorted((a for a in overlapping if a.type == t.alarm_type), key=lambda a: a.start_ts)
        for a in hits:
            explained.add(a.id)
        if not hits:
            continue
        want = SEVERITY_RANK[Severity(t.severity)] if t.severity else None
        reached_expected = want is None or any(
            SEVERITY_RANK[Severity(sev)] <= want
            for a in hits
            for _, sev in reached.get(a.id, [(a.start_ts, a.severity)])
        )
        if not reached_expected:
            ts.wrong_severity += 1
            continue
        # Detection time is the first alarm of the type; a ladder then climbs as the physics does
        # (gas 25 → 50 % LEL), which the truth's single onset cannot time, so the expected
        # severity only has to be reached during the fault. Negative: warned on a lower rung first.
        detected_at = _detection_ts(hits, reached, want, t.onset_ts - STANDING_MS)
        if detected_at is None:
            ts.preexisting += 1
            continue
        ts.detected += 1
        latency = detected_at - t.onset_ts
        ts.latencies_ms.append(latency)
        if latency > deadline + DEADLINE_SLACK_MS:
            ts.late += 1
    for a in alarms:
        s_ = sc(a.type)
        s_.alarms += 1
        if a.id not in explained:
            s_.false_positives += 1
    return dict(sorted(scores.items()))


def totals(scores: dict[str, TypeScore]) -> dict[str, Any]:
    """Fleet-wide figures."""
    faults = sum(s.faults for s in scores.values())
    detected = sum(s.detected for s in scores.values())
    alarms = sum(s.alarms for s in scores.values())
    fps = sum(s.false_positives for s in scores.values())
    return {
        "faults": faults,
        "detected": detected,
        "recall": detected / faults if faults else None,
        "alarms": alarms,
        "false_positives": fps,
        "precision": (alarms - fps) / alarms if alarms else None,
        "late": sum(s.late for s in scores.values()),
        "preexisting": sum(s.preexisting for s in scores.values()),
    }
