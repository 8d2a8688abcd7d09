"""Fleet-scale load generator: ≥ 100 k simulated elevators and vessels from one process.

``python -m semon.simulators.loadgen --devices 100000 --rate 20000 --duration 60 --faults-per-min 30``

Stepping every device model for every message (:mod:`semon.simulators.engine`) costs about
20 µs a message — a whole core at 50 k msg/s, taken from the system under test on a small
machine. So load is generated from *recorded behaviour*, replayed as terminals send it:

1. **Templates.** A template fleet (default 350 elevators and 150 vessels, its own seed) runs
   through the real device models for ``trace_s`` of device time. What each template device
   published is reduced to its *changes* (a new state and when it began); elevator traces are
   cut at their last car-at-rest report so the loop closes on a car at rest.
2. **Fleet.** The large fleet (ids ``E000001``… / ``V000001``…, firms, districts from
   :func:`~semon.simulators.fleet.build_fleet`) borrows the ratings of its template (elevator
   *n* → template *n* mod 350: rated speed, floors; vessel → set pressure, medium…), so every
   replayed status is physically consistent with the registry the collector checks it against.
3. **Replay.** Each device runs its template's loop from its own seeded phase and reports
   **every change when it happens** (a trip, a door cycle, a pressure drift past the deadband),
   like a terminal reporting on change, plus **keep-alive reports** of its current state
   spread round-robin over the fleet so that changes + keep-alives = the target rate. With
   100 k devices the changes alone are ≈ 15 k msg/s (0.17 a second per elevator, 0.1 per
   vessel); for a lower target a share of the elevators is idle (``activity`` < 1), and every
   device is heard at least every 150 s (the collector's offline timeout is 180 s). A message is
   a pre-serialised body with fresh ``ts`` (wall ms, strictly increasing per device) and
   ``seq`` (1, 2, … per device and run, no gaps) — a few µs of CPU.
4. **Open loop** (no ``--rate``): the same change stream replayed as fast as the broker
   acknowledges (``window`` in flight), the loop's clock running as fast as messages go out.
5. **Settling.** When the run ends, devices whose last report showed a transient state (a
   car running, doors closing on a passenger) report the rest state their trip ends in — a
   real car finishes its trip; without this the collector's timers would rightly alarm on a
   car "running" for minutes. These settle reports are counted like any other.
6. **Faults** (``--faults-per-min``): a seeded schedule switches devices to a fault state
   (overspeed, trapped passenger, alarm button, overpressure) with an immediate report at
   onset and at the end; while it lasts the device's trace changes are not reported. Each
   fault is a ground-truth line (``--truth``): device, expected alarm type, onset and *due*
   time (onset plus the rule's duration: when the alarm should be raised).

Publishing goes through :class:`~semon.simulators.rawpub.RawPublisher` (pipelined QoS 1 on a
plain socket). ``--part I/N`` drives every N-th device with 1/N of the rate so several
processes (``--procs N`` starts them) split one fleet; each part counts its own devices.

Live: ``--progress`` draws a status line on stderr; ``--status FILE`` rewrites one JSON line
four times a second (sent, acknowledged, achieved rate) for a harness to follow. The final summary is
one JSON line on stdout, with per-device message counts (``--counts FILE``) for exact loss checks.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import gc
import hashlib
import json
import logging
import os
import pickle
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from semon import timeutil
from semon.contract.topics import device_topic
from semon.simulators.engine import FleetEngine
from semon.simulators.fleet import DeviceSpec, Fleet, build_fleet
from semon.simulators.rawpub import BrokerGone, RawPublisher

log = logging.getLogger(__name__)

TEMPLATE_SEED_SALT = 7919  # template fleet seed = seed + salt: its own ids, never confused with the big fleet
CHUNK = 2000  # messages per socket write: large enough to amortise, small enough to pace smoothly
SLOT_MS = 10  # resolution of the change schedule (a timing wheel of 10 ms slots)
STATUS_EVERY_S = 0.25  # how often --status / --progress are refreshed
MAX_SILENCE_S = 150.0  # every device is heard at least this often (offline alarms fire after 180 s)
RECORD_VERSION = 4  # bump when the recording format changes (cache key)


# ---------------------------------------------------------------------------------- faults
@dataclass(frozen=True, slots=True)
class FaultKind:
    """A fault the generator can inject: which devices, what it does to a status, what it should raise."""

    name: str
    kind: str  # equipment kind it applies to
    alarm_type: str
    trigger_ms: int  # the rule's duration (catalog): the alarm is due this long after onset
    duration_ms: int  # how long the fault state lasts
    apply: Callable[[dict[str, Any], DeviceSpec], dict[str, Any]]


def _overspeed(s: dict[str, Any], d: DeviceSpec) -> dict[str, Any]:
    assert d.elevator is not None
    # 1.3 × rated: above the 1.2 × trip of elevator.overspeed, door closed so nothing else fires.
    speed = round(1.3 * d.elevator.rated_speed, 3)
    return {**s, "mode": "normal", "running": True, "dir": "up", "speed": speed, "door": "closed", "door_zone": False}


def _trapped(s: dict[str, Any], d: DeviceSpec) -> dict[str, Any]:
    # Stopped at a landing, doors closed, passenger inside: elevator.trapped_passenger after 20 s.
    return {
        **s, "mode": "normal", "running": False, "dir": "stop", "speed": 0.0, "door": "closed",
        "door_zone": True, "occupied": True, "load": max(float(s.get("load") or 0.0), 75.0),
    }  # fmt: skip


def _alarm_button(s: dict[str, Any], d: DeviceSpec) -> dict[str, Any]:
    return {**s, "alarm_button": True}


def _overpressure(s: dict[str, Any], d: DeviceSpec) -> dict[str, Any]:
    assert d.vessel is not None
    # 2 % above the valve set pressure: vessel.overpressure critical at once. Shorter than the
    # 5 s of vessel.pressure_rise_rate, so the jump itself raises nothing else.
    return {**s, "pressure": round(1.02 * d.vessel.set_pressure, 4), "valve_discharge": False}


FAULT_KINDS: dict[str, FaultKind] = {
    f.name: f
    for f in (
        FaultKind("overspeed", "elevator", "overspeed", 0, 4_000, _overspeed),
        FaultKind("trapped", "elevator", "trapped_passenger", 20_000, 35_000, _trapped),
        FaultKind("alarm_button", "elevator", "alarm_button", 0, 5_000, _alarm_button),
        FaultKind("overpressure", "vessel", "overpressure", 0, 4_000, _overpressure),
    )
}


# ---------------------------------------------------------------------------------- traces
def at_rest(kind: str, s: dict[str, Any]) -> bool:
    """A state no duration rule of the catalog can be timing: the car stopped at a landing, and
    not closed in with a passenger (the trapped-passenger condition), no alarm flags.

    A device that falls silent in such a state raises nothing, however long the silence.
    (Vessels' normal readings are always at rest in that sense.)
    """
    if kind != "elevator":
        return True
    stopped = not s.get("running") and float(s.get("speed") or 0.0) < 0.05
    return (
        stopped
        and bool(s.get("door_zone"))
        and not (s.get("door") == "closed" and s.get("occupied"))
        and not s.get("alarm_button")
        and not s.get("faults")
        and s.get("mode", "normal") == "normal"
    )


@dataclass(slots=True)
class Trace:
    """One template device's loop of changes: entry *k* is a state that began at ``times[k]`` ms."""

    kind: str
    times: list[int]  # strictly increasing, times[0] == 0
    bodies: list[bytes]  # serialised status without ts/seq, starting with ',' (b',"mode":…}')
    states: list[dict[str, Any]]
    rest: list[bool]  # entry is at rest (see :func:`at_rest`)
    next_rest: list[int]  # index of this entry if at rest, else of the next rest entry (cyclic)
    period_ms: int  # the loop: after ``period_ms`` it starts again at entry 0

    @property
    def changes_per_s(self) -> float:
        """Reports per second of the loop (each entry is one change report)."""
        n = len(self.times)
        return 0.0 if n == 1 and self.period_ms else n / (self.period_ms / 1000)

    def idle(self) -> Trace:
        """The same device parked at its first rest state: no changes, keep-alives only."""
        k = self.next_rest[0]
        return Trace(self.kind, [0], [self.bodies[k]], [self.states[k]], [True], [0], self.period_ms)


def _trace(kind: str, msgs: list[tuple[int, dict[str, Any]]]) -> Trace:
    states: list[dict[str, Any]] = []
    times: list[int] = []
    for t, p in msgs:
        st = {k: v for k, v in p.items() if k not in ("ts", "seq")}
        if states and st == states[-1]:
            continue  # a keep-alive of an unchanged state: not a change
        states.append(st)
        times.append(t - msgs[0][0])
    if kind == "elevator":
        # Close the loop on a car at rest: keep up to the last rest state.
        last = max((k for k, s in enumerate(states) if at_rest(kind, s)), default=len(states) - 1)
        states, times = states[: last + 1], times[: last + 1]
    period = max(times[-1] + 10_000, 20_000)
    if len(states) > 1 and states[0] == states[-1]:
        states, times = states[:-1], times[:-1]  # the wrap itself is no change then
    rest = [at_rest(kind, s) for s in states]
    n = len(states)
    next_rest = [0] * n
    nxt = next((k for k in range(n) if rest[k]), 0)
    for k in range(n - 1, -1, -1):
        if rest[k]:
            nxt = k
        next_rest[k] = nxt
    bodies = [b"," + orjson.dumps(s)[1:] for s in states]
    return Trace(kind, times, bodies, states, rest, next_rest, period)


def _record(template: Fleet, trace_s: float, start_ms: int) -> list[Trace]:
    """Run the real models of the template fleet and keep each device's changes."""
    n = len(template)
    # A report at least every 10 s of device time, plus every change, as a terminal sends.
    engine = FleetEngine(template, start_ms=start_ms, report_interval_ms=10_000)
    rec: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in range(n)]
    steps = int(trace_s * 1000 / engine.step_ms)
    for _ in range(steps):
        for i, channel, payload in engine.step_messages():
            if channel == "status":
                rec[i].append((int(payload["ts"]) - start_ms, payload))
    out = []
    for i, msgs in enumerate(rec):
        if not msgs:  # cannot happen with a 10 s keep-alive; keep the device anyway
            msgs = [(0, engine.models[i].status(start_ms, 0))]
        out.append(_trace(template.devices[i].kind, msgs))
    return out


# ---------------------------------------------------------------------------------- fleet
@dataclass(slots=True)
class LoadFleet:
    """The big fleet: ids and kinds, each device's template, the template traces and ratings.

    Device ids follow :func:`~semon.simulators.fleet.build_fleet` (elevators ``E000001``…,
    then vessels ``V000001``…), so the generator needs no registry objects for 100 k devices;
    :meth:`registry_specs` builds them (firms, districts…) only when a registry is written.
    """

    elevators: int
    vessels: int
    seed: int
    template_of: list[int]  # device index → template index
    traces: list[Trace]
    template_specs: list[DeviceSpec]

    def __len__(self) -> int:
        return self.elevators + self.vessels

    def device_id(self, i: int) -> str:
        """Id of device ``i`` (fleet order: elevators first)."""
        return f"E{i + 1:06d}" if i < self.elevators else f"V{i - self.elevators + 1:06d}"

    def kind(self, i: int) -> str:
        """Equipment kind of device ``i``."""
        return "elevator" if i < self.elevators else "vessel"

    def spec(self, i: int) -> DeviceSpec:
        """The ratings device ``i`` shares with its template (identity fields are the template's)."""
        return self.template_specs[self.template_of[i]]

    def natural_rate(self, devices: list[int] | None = None) -> float:
        """Change reports per second of these devices (all by default) at full activity."""
        idx = range(len(self)) if devices is None else devices
        rates = [t.changes_per_s for t in self.traces]
        return sum(rates[self.template_of[i]] for i in idx)

    def registry_specs(self) -> list[DeviceSpec]:
        """Registry entries of the whole fleet: identity from ``build_fleet``, ratings from the templates."""
        big = build_fleet(self.elevators, self.vessels, self.seed)
        out = []
        for i, d in enumerate(big.devices):
            if d.device_id != self.device_id(i):
                raise RuntimeError(f"fleet order changed: device {i} is {d.device_id}, expected {self.device_id(i)}")
            t = self.spec(i)
            out.append(dataclasses.replace(d, elevator=t.elevator, vessel=t.vessel))
        return out

    def write_registry_csv(self, path: str | Path) -> Path:
        """The registry CSV of the whole fleet."""
        return Fleet(self.seed, [], [], self.registry_specs()).write_registry_csv(path)


def _sources_digest() -> str:
    """Hash of the device-model sources and this recorder: a cached recording is stale once they change."""
    h = hashlib.sha256(str(RECORD_VERSION).encode())
    for mod in ("engine", "elevator", "vessel", "fleet"):
        h.update((Path(__file__).with_name(f"{mod}.py")).read_bytes())
    return h.hexdigest()[:16]


def build_load_fleet(
    devices: int,
    vessel_share: float = 0.3,
    seed: int = 1,
    templates: int = 500,
    trace_s: float = 300.0,
    cache_dir: Path | None = None,
) -> LoadFleet:
    """The fleet of ``devices`` (``vessel_share`` of them vessels) and its template traces.

    Recording the templates runs the real models (seconds of CPU); with ``cache_dir`` the
    recording is kept in a pickle keyed by the parameters and the model sources.
    """
    if devices <= 0:
        raise ValueError("devices must be > 0")
    if not 0 <= vessel_share <= 1:
        raise ValueError("vessel_share must be within [0, 1]")
    n_v = round(devices * vessel_share)
    n_e = devices - n_v
    t_v = min(n_v, max(1 if n_v else 0, round(templates * vessel_share)))
    t_e = min(n_e, max(1 if n_e else 0, templates - t_v))
    cached: Path | None = None
    recorded: tuple[list[Trace], list[DeviceSpec]] | None = None
    if cache_dir is not None:
        cached = Path(cache_dir) / f"loadgen-templates-{t_e}-{t_v}-{seed}-{trace_s:g}-{_sources_digest()}.pickle"
        if cached.exists():
            try:
                with cached.open("rb") as f:
                    rows, specs = pickle.load(f)
                recorded = ([Trace(*r) for r in rows], specs)
            except (OSError, pickle.UnpicklingError, AttributeError, TypeError, ValueError, EOFError):
                log.warning("template cache %s unreadable; recording again", cached)
    if recorded is None:
        tmpl = build_fleet(t_e, t_v, seed + TEMPLATE_SEED_SALT)
        recorded = (_record(tmpl, trace_s, start_ms=timeutil.now_ms()), list(tmpl.devices))
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            # Plain tuples, not Trace objects: the module may be __main__ in the process that writes.
            rows = [dataclasses.astuple(t) for t in recorded[0]]
            with tmp.open("wb") as f:
                pickle.dump((rows, recorded[1]), f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, cached)
    traces, specs = recorded
    template_of = [i % t_e for i in range(n_e)] + [t_e + i % t_v for i in range(n_v)]
    return LoadFleet(n_e, n_v, seed, template_of, traces, specs)


# ---------------------------------------------------------------------------------- run
@dataclass(slots=True)
class LoadConfig:
    """What to generate and where to send it."""

    host: str = "127.0.0.1"
    port: int = 1883
    devices: int = 100_000
    vessel_share: float = 0.3
    rate: float | None = None  # msg/s for the whole fleet (all parts); None = open loop, as fast as acked
    duration_s: float | None = None  # wall seconds
    count: int | None = None  # messages of this part (open-loop bursts), settle reports excluded
    seed: int = 1
    run_seed: int | None = None  # phases, keep-alive order and faults; default: seed
    activity: float | None = None  # share of elevators replaying their trips; None: as the rate allows
    faults_per_min: float = 0.0
    fault_kinds: tuple[str, ...] = tuple(FAULT_KINDS)
    fault_warmup_s: float = 5.0  # no fault onset before this (the collector must see normal states first)
    settle: bool = True
    part: int = 0
    parts: int = 1
    qos: int = 1
    window: int = 20_000
    client_id: str | None = None
    templates: int = 500
    trace_s: float = 300.0
    cache_dir: Path | None = None
    progress: bool = False
    status_path: Path | None = None
    truth_path: Path | None = None
    counts_path: Path | None = None
    start_at: float | None = None  # wall-clock epoch to begin publishing (synchronised parts)
    stop_check: Callable[[], bool] | None = None


@dataclass(slots=True)
class _Fault:
    kind: FaultKind
    device: int  # fleet index
    onset_s: float  # run time of onset / end
    end_s: float
    body: bytes = b""
    onset_ts: int = 0


def choose_activity(natural: float, devices: int, rate: float | None) -> float:
    """Share of active elevators so that changes leave room for keep-alives (≥ 20 % and every 150 s)."""
    if rate is None or natural <= 0:
        return 1.0
    keepalive_min = max(0.2 * rate, devices / MAX_SILENCE_S)
    return max(0.0, min(1.0, (rate - keepalive_min) / natural))


def _schedule_faults(cfg: LoadConfig, fleet: LoadFleet, mine: list[int], rng: random.Random) -> list[_Fault]:
    """Onsets every ``60 / faults_per_min`` s after the warm-up, kinds in turn, each on a fresh device."""
    if cfg.faults_per_min <= 0 or cfg.duration_s is None:
        return []
    by_kind: dict[str, list[int]] = {}
    for i in mine:
        by_kind.setdefault(fleet.kind(i), []).append(i)
    kinds = [FAULT_KINDS[k] for k in cfg.fault_kinds if by_kind.get(FAULT_KINDS[k].kind)]
    if not kinds:
        return []
    gap = 60.0 / (cfg.faults_per_min / cfg.parts)
    out: list[_Fault] = []
    used: set[int] = set()
    t = cfg.fault_warmup_s
    while True:
        k = kinds[len(out) % len(kinds)]
        if t + k.duration_ms / 1000 + 1.0 > cfg.duration_s:
            break  # the fault must be over (and its alarm due) before the run ends
        pool = by_kind[k.kind]
        dev = rng.choice(pool)
        tries = 0
        while dev in used and tries < 50:
            dev, tries = rng.choice(pool), tries + 1
        if dev in used:
            break
        used.add(dev)
        out.append(_Fault(k, dev, t, t + k.duration_ms / 1000))
        t += gap
    return out


class LoadGenerator:
    """One part of the fleet on one MQTT connection."""

    def __init__(self, cfg: LoadConfig, fleet: LoadFleet | None = None) -> None:
        if cfg.parts < 1 or not 0 <= cfg.part < cfg.parts:
            raise ValueError("part must be in 0..parts-1")
        if cfg.rate is not None and cfg.rate <= 0:
            raise ValueError("rate must be > 0")
        self.cfg = cfg
        fl = fleet or build_load_fleet(
            cfg.devices, cfg.vessel_share, cfg.seed, cfg.templates, cfg.trace_s, cfg.cache_dir
        )
        self.fleet = fl
        seed = cfg.run_seed if cfg.run_seed is not None else cfg.seed
        rng = random.Random(f"semon-loadgen:{seed}:{cfg.part}")
        self.rate = cfg.rate / cfg.parts if cfg.rate else None
        mine = list(range(cfg.part, len(fl), cfg.parts))
        self.mine = mine
        order = mine[:]
        rng.shuffle(order)  # keep-alives go round-robin in a seeded random order
        self.order = order
        # Per-device state lives in lists indexed by *position in that order*: the keep-alive
        # loop then walks memory sequentially (2× faster than random access at 100 k devices).
        self.pos_of = {dev: p for p, dev in enumerate(order)}
        n = len(order)
        traces = fl.traces
        elevators = [p for p, dev in enumerate(order) if fl.kind(dev) == "elevator"]
        natural = fl.natural_rate(mine)
        self.activity = cfg.activity if cfg.activity is not None else choose_activity(natural, n, self.rate)
        idle = set(rng.sample(elevators, round(len(elevators) * (1 - self.activity)))) if self.activity < 1 else set()
        idle_traces: dict[int, Trace] = {}
        self.trace: list[Trace] = []
        for p, dev in enumerate(order):
            j = fl.template_of[dev]
            if p in idle:
                if j not in idle_traces:
                    idle_traces[j] = traces[j].idle()
                self.trace.append(idle_traces[j])
            else:
                self.trace.append(traces[j])
        self.natural = sum(t.changes_per_s for t in self.trace)
        self.topics = [device_topic(fl.kind(dev), fl.device_id(dev), "status") for dev in order]
        self.phase = [rng.randrange(t.period_ms) for t in self.trace]
        self.cursor = [0] * n
        self.seq = [0] * n
        self.last_ts = [0] * n
        self.wheel: dict[int, list[int]] = {}
        for p in range(n):
            tr = self.trace[p]
            self.cursor[p] = bisect.bisect_right(tr.times, self.phase[p]) - 1
            self._schedule(p, 0)
        self.faults = _schedule_faults(cfg, fl, mine, rng)
        self.active: dict[int, _Fault] = {}  # position → fault
        self.truth: list[dict[str, Any]] = []
        cid = cfg.client_id or f"semon-loadgen-{os.getpid()}"
        self.pub = RawPublisher(cfg.host, cfg.port, f"{cid}-{cfg.part}", qos=cfg.qos, window=cfg.window)
        self.k = 0  # messages built (settle reports included)
        self.changes = self.keepalives = self.settled = 0
        self._ka_pos = 0
        self._slot = 0  # next wheel slot to fire

    # -- the change schedule ------------------------------------------------------------
    def _schedule(self, p: int, v_ms: int) -> None:
        """Put device ``p``'s next change on the wheel; ``v_ms`` is the loop clock of its current entry."""
        tr = self.trace[p]
        times = tr.times
        m = len(times)
        if m == 1:
            return  # a parked device: keep-alives only
        c = self.cursor[p]
        tau = (v_ms + self.phase[p]) % tr.period_ms
        nxt = times[c + 1] if c + 1 < m else tr.period_ms
        due = v_ms + max(nxt - tau, 1)
        self.wheel.setdefault(due // SLOT_MS, []).append(p)

    def _fire(self, slot: int, now_ms: int, out: list[tuple[str, bytes]], room: int) -> bool:
        """Advance (at most ``room`` of) the devices whose next change falls in ``slot``; report those
        not under a fault. True when the slot is done."""
        ps = self.wheel.pop(slot, None)
        if not ps:
            return True
        done = len(ps) <= room
        if not done:
            self.wheel[slot], ps = ps[room:], ps[:room]
        v = slot * SLOT_MS
        trace, cursor, active = self.trace, self.cursor, self.active
        for p in ps:
            tr = trace[p]
            c = cursor[p] + 1
            if c == len(tr.times):
                c = 0
            cursor[p] = c
            self._schedule(p, v)
            if not active or p not in active:
                out.append(self._one(p, now_ms, tr.bodies[c]))
                self.changes += 1
        return done

    def _one(self, p: int, now_ms: int, body: bytes) -> tuple[str, bytes]:
        lt = self.last_ts[p]
        ts = now_ms if now_ms > lt else lt + 1
        self.last_ts[p] = ts
        s = self.seq[p] + 1
        self.seq[p] = s
        return self.topics[p], b'{"ts":%d,"seq":%d%b' % (ts, s, body)

    def keepalive_chunk(self, m: int, now_ms: int) -> list[tuple[str, bytes]]:
        """The next ``m`` keep-alive reports, round-robin (the hot loop: locals only, no calls)."""
        n, pos = len(self.order), self._ka_pos
        last_ts, seq, cursor, trace, topics, active = (
            self.last_ts, self.seq, self.cursor, self.trace, self.topics, self.active
        )  # fmt: skip
        out: list[tuple[str, bytes]] = []
        append = out.append
        for _ in range(m):
            p = pos
            pos += 1
            if pos == n:
                pos = 0
            lt = last_ts[p]
            ts = now_ms if now_ms > lt else lt + 1
            last_ts[p] = ts
            s = seq[p] + 1
            seq[p] = s
            body = active[p].body if active and p in active else trace[p].bodies[cursor[p]]
            append((topics[p], b'{"ts":%d,"seq":%d%b' % (ts, s, body)))
        self._ka_pos = pos
        self.keepalives += m
        return out

    # -- faults -------------------------------------------------------------------------
    def _truth(self, f: _Fault, end_ts: int | None) -> dict[str, Any]:
        fl = self.fleet
        return {
            "device_id": fl.device_id(f.device), "kind": fl.kind(f.device), "fault": f.kind.name,
            "alarm_type": f.kind.alarm_type, "onset_ts": f.onset_ts, "due_ts": f.onset_ts + f.kind.trigger_ms,
            "end_ts": end_ts,
        }  # fmt: skip

    def _fault_events(self, elapsed: float, now_ms: int, out: list[tuple[str, bytes]]) -> None:
        """Start and end due faults; each start and end is an immediate (on-change) report."""
        while self.faults and self.faults[0].onset_s <= elapsed:
            f = self.faults.pop(0)
            p = self.pos_of[f.device]
            state = f.kind.apply(self.trace[p].states[self.cursor[p]], self.fleet.spec(f.device))
            f.body = b"," + orjson.dumps(state)[1:]
            self.active[p] = f
            out.append(self._one(p, now_ms, f.body))
            f.onset_ts = self.last_ts[p]
        for p, f in list(self.active.items()):
            if f.end_s <= elapsed:
                del self.active[p]
                out.append(self._one(p, now_ms, self.trace[p].bodies[self.cursor[p]]))
                self.truth.append(self._truth(f, self.last_ts[p]))

    # -- the loop ------------------------------------------------------------------------
    def _build(self, elapsed: float, now_ms: int, v_ms: int, room: int) -> list[tuple[str, bytes]]:
        """Fault reports and the changes due up to loop time ``v_ms`` (at most ``room`` changes)."""
        out: list[tuple[str, bytes]] = []
        if self.faults or self.active:
            self._fault_events(elapsed, now_ms, out)
        last = v_ms // SLOT_MS
        while self._slot <= last and len(out) < room:
            if not self._fire(self._slot, now_ms, out, room - len(out)):
                break
            self._slot += 1
        self.k += len(out)
        return out

    def settle_reports(self, now_ms: int) -> list[tuple[str, bytes]]:
        """Devices last seen in a transient state report the rest state their loop reaches next."""
        out = []
        for p, tr in enumerate(self.trace):
            c = self.cursor[p]
            if self.seq[p] and not tr.rest[c]:
                c = self.cursor[p] = tr.next_rest[c]
                out.append(self._one(p, now_ms, tr.bodies[c]))
        self.settled += len(out)
        self.k += len(out)
        return out

    def run(self) -> dict[str, Any]:
        """Publish until the duration, count or stop condition; returns the summary."""
        cfg = self.cfg
        # Everything built so far lives for the whole run: keep it out of the cyclic GC's scans
        # (with 100 k devices a full collection would otherwise walk millions of objects).
        gc.collect()
        gc.freeze()
        pub = self.pub
        pub.connect()
        if cfg.start_at:
            time.sleep(max(0.0, cfg.start_at - time.time()))
        limit, duration, rate = cfg.count, cfg.duration_s, self.rate
        t0 = time.monotonic()
        wall0 = time.time()
        next_status, last_sent, last_t, cur_rate = 0.0, 0, 0.0, 0.0
        v_ms = 0  # the loop clock: wall time at a fixed rate, as fast as sending goes in open loop
        min_chunk = max(1, int(rate * 0.004)) if rate else 1
        stopped_early = False
        try:
            while True:
                now = time.monotonic()
                elapsed = now - t0
                if duration is not None and elapsed >= duration:
                    break
                if limit is not None and self.k >= limit:
                    break
                if elapsed >= next_status:
                    cur_rate = (pub.sent - last_sent) / (elapsed - last_t) if elapsed > last_t else 0.0
                    last_sent, last_t = pub.sent, elapsed
                    self._report(elapsed, cur_rate, False)
                    next_status = elapsed + STATUS_EVERY_S
                    if cfg.stop_check is not None and cfg.stop_check():
                        stopped_early = True
                        break
                now_ms = timeutil.now_ms()
                if rate is not None:
                    v_ms = int(elapsed * 1000)
                    due = int(elapsed * rate) + 1 - self.k
                    if limit is not None:
                        due = min(due, limit - self.k)
                    # Send in chunks of ≥ 4 ms of traffic: one write per message or two would cost
                    # more in system calls than building the messages (measured: 3× the CPU).
                    if due < min_chunk and self._slot > v_ms // SLOT_MS and (limit is None or due < limit - self.k):
                        pub.poll(min(0.005, max(0.0, (self.k + min_chunk) / rate - elapsed)))
                        continue
                    # Changes are due regardless; keep-alives fill up to the rate, a chunk at most.
                    batch = self._build(elapsed, now_ms, v_ms, 1 << 30)
                    if due - len(batch) > 0:
                        extra = self.keepalive_chunk(min(due - len(batch), CHUNK), now_ms)
                        self.k += len(extra)
                        batch += extra
                else:
                    # Open loop: run the loop clock forward until a chunk of changes is due.
                    room = CHUNK if limit is None else min(CHUNK, limit - self.k)
                    batch = self._build(elapsed, now_ms, v_ms, room)
                    while len(batch) < room:
                        v_ms += SLOT_MS
                        batch += self._build(elapsed, now_ms, v_ms, room - len(batch))
                if batch:
                    pub.publish_many(batch)
            if cfg.settle and not stopped_early:
                tail = self.settle_reports(timeutil.now_ms())
                for i in range(0, len(tail), CHUNK):
                    pub.publish_many(tail[i : i + CHUNK])
                    if rate is not None:
                        time.sleep(min(CHUNK, len(tail) - i) / rate)  # no burst at the end of a paced run
            t_sent = time.monotonic()
            all_acked = pub.flush(max(60.0, pub.unacked / 2000))
        except BrokerGone as e:
            log.error("load generator lost the broker: %s", e)
            t_sent = time.monotonic()
            all_acked = False
        t_acked = time.monotonic()
        for f in self.active.values():  # still running at the end: the alarm stays raised
            self.truth.append(self._truth(f, None))
        pub.close()
        publish_s = t_sent - t0
        summary = {
            "part": cfg.part, "parts": cfg.parts, "devices": len(self.mine), "sent": pub.sent, "acked": pub.acked,
            "all_acked": all_acked, "target_rate": cfg.rate, "t_start": wall0, "t_sent": wall0 + publish_s,
            "t_acked": wall0 + (t_acked - t0), "publish_s": round(publish_s, 3),
            "achieved_rate": round(pub.sent / publish_s, 1) if publish_s > 0 else 0.0,
            "acked_rate": round(pub.acked / (t_acked - t0), 1) if t_acked > t0 else 0.0,
            "changes": self.changes, "keepalives": self.keepalives, "settled": self.settled,
            "activity": round(self.activity, 3), "natural_rate": round(self.natural, 1),
            "faults": len(self.truth), "cpu_s": round(sum(os.times()[:2]), 2), "stopped_early": stopped_early,
        }  # fmt: skip
        self._report(publish_s, summary["achieved_rate"] or 0.0, True)
        self._write_outputs()
        return summary

    def counts(self) -> dict[str, int]:
        """Messages published per device (= the last ``seq``)."""
        dev_id = self.fleet.device_id
        return {dev_id(dev): self.seq[p] for p, dev in enumerate(self.order) if self.seq[p]}

    def _write_outputs(self) -> None:
        cfg = self.cfg
        if cfg.truth_path:
            with open(cfg.truth_path, "wb") as f:
                for rec in self.truth:
                    f.write(orjson.dumps(rec) + b"\n")
        if cfg.counts_path:
            Path(cfg.counts_path).write_bytes(orjson.dumps(self.counts()))

    def _report(self, elapsed: float, rate_now: float, final: bool) -> None:
        pub = self.pub
        st = {
            "t": round(time.time(), 3), "elapsed": round(elapsed, 2), "sent": pub.sent, "acked": pub.acked,
            "rate_now": round(rate_now, 1), "avg_rate": round(pub.sent / elapsed, 1) if elapsed > 0 else 0.0,
            "faults_active": len(self.active), "faults_done": len(self.truth), "final": final,
        }  # fmt: skip
        if self.cfg.status_path:
            tmp = Path(f"{self.cfg.status_path}.tmp")
            tmp.write_bytes(orjson.dumps(st))
            os.replace(tmp, self.cfg.status_path)
        if self.cfg.progress:
            target = f"{self.cfg.rate:,.0f}" if self.cfg.rate else "max"
            sys.stderr.write(
                f"\r{elapsed:7.1f} s  sent {pub.sent:>11,}  acked {pub.acked:>11,}  now {rate_now:>9,.0f} msg/s  "
                f"avg {st['avg_rate']:>9,.0f} (target {target})  faults {len(self.active)}/{len(self.truth)}"
                + ("\n" if final else "")
            )
            sys.stderr.flush()


def run_load(cfg: LoadConfig, fleet: LoadFleet | None = None) -> dict[str, Any]:
    """Build (or reuse) the fleet and run one part; returns the summary."""
    return LoadGenerator(cfg, fleet).run()


# ---------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m semon.simulators.loadgen",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--vessel-share", type=float, default=0.3, help="fraction of the fleet that are pressure vessels")
    p.add_argument("--rate", type=float, default=None, help="msg/s for the whole fleet; omit for open loop (max)")
    p.add_argument("--duration", type=float, default=None, help="wall seconds")
    p.add_argument("--count", type=int, default=None, help="messages of this part (e.g. a 100 k burst)")
    p.add_argument("--seed", type=int, default=1, help="fleet seed (registry and templates)")
    p.add_argument("--run-seed", type=int, default=None, help="order, offsets and faults (default: --seed)")
    p.add_argument(
        "--activity", type=float, default=None,
        help="share of elevators replaying their trips, the rest idle (default: as much as the rate allows)",
    )  # fmt: skip
    p.add_argument("--no-settle", action="store_true", help="no rest reports at the end of the run")
    p.add_argument("--faults-per-min", type=float, default=0.0, help="injected faults per minute (needs --duration)")
    p.add_argument("--fault-kinds", default=",".join(FAULT_KINDS), help="comma-separated: " + ", ".join(FAULT_KINDS))
    p.add_argument("--part", default="0/1", help="I/N: drive every N-th device, starting at I, at rate/N")
    p.add_argument("--procs", type=int, default=1, help="start N processes, one part each (overrides --part)")
    p.add_argument("--qos", type=int, default=1, choices=(0, 1))
    p.add_argument("--window", type=int, default=20_000, help="max unacknowledged QoS 1 messages")
    p.add_argument("--client-id", default=None)
    p.add_argument("--templates", type=int, default=500, help="template devices whose model runs are replayed")
    p.add_argument("--trace-s", type=float, default=300.0, help="device seconds recorded per template")
    p.add_argument("--cache", type=Path, default=None, help="keep the template recording in this folder")
    p.add_argument("--registry", type=Path, default=None, help="write the fleet's registry CSV here")
    p.add_argument("--registry-only", action="store_true", help="write --registry and exit")
    p.add_argument("--truth", type=Path, default=None, help="ground truth of injected faults (JSON lines)")
    p.add_argument("--counts", type=Path, default=None, help="per-device message counts (JSON)")
    p.add_argument("--status", type=Path, default=None, help="rewritten 4× a second with one JSON status line")
    p.add_argument("--start-at", type=float, default=None, help="wall-clock epoch to start publishing")
    p.add_argument("--progress", action="store_true", help="live status line on stderr")
    return p


def _spawn_parts(argv: list[str], a: argparse.Namespace) -> int:
    """``--procs N``: run N children with ``--part i/N`` and sum their summaries."""
    base = [x for x in argv if x != "--progress"]
    # Drop our own --procs/--part/--registry* and per-process outputs; children get their own.
    skip = {"--procs", "--part", "--registry", "--status", "--counts", "--truth"}
    cleaned: list[str] = []
    it = iter(base)
    for x in it:
        if x in skip:
            next(it, None)
        elif x == "--registry-only" or any(x.startswith(s + "=") for s in skip):
            continue
        else:
            cleaned.append(x)
    start_at = time.time() + 3.0 + a.devices / 40_000  # every child builds its fleet first
    procs = []
    for i in range(a.procs):
        extra = ["--part", f"{i}/{a.procs}", "--start-at", str(start_at)]
        for flag, path in (("--status", a.status), ("--counts", a.counts), ("--truth", a.truth)):
            if path is not None:
                extra += [flag, f"{path}.{i}"]
        cmd = [sys.executable, "-m", "semon.simulators.loadgen", *cleaned, *extra]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE))
    sums = [json.loads((p.communicate()[0] or b"{}").decode().strip().splitlines()[-1]) for p in procs]
    total = {
        "parts": a.procs, "sent": sum(s.get("sent", 0) for s in sums), "acked": sum(s.get("acked", 0) for s in sums),
        "all_acked": all(s.get("all_acked") for s in sums), "t_start": min(s["t_start"] for s in sums),
        "t_sent": max(s["t_sent"] for s in sums), "faults": sum(s.get("faults", 0) for s in sums),
        "cpu_s": round(sum(s.get("cpu_s", 0) for s in sums), 2), "per_part": sums,
    }  # fmt: skip
    span = total["t_sent"] - total["t_start"]
    total["achieved_rate"] = round(total["sent"] / span, 1) if span > 0 else 0.0
    print(json.dumps(total), flush=True)
    return 0 if total["all_acked"] else 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kinds = tuple(k for k in a.fault_kinds.split(",") if k)
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        raise SystemExit(f"unknown fault kind(s): {', '.join(unknown)}")
    if a.registry is not None or a.registry_only:
        if a.registry is None:
            raise SystemExit("--registry-only needs --registry PATH")
        fleet = build_load_fleet(a.devices, a.vessel_share, a.seed, a.templates, a.trace_s, a.cache)
        fleet.write_registry_csv(a.registry)
        if a.registry_only:
            print(json.dumps({"registry": str(a.registry), "devices": len(fleet)}))
            return 0
    else:
        fleet = None
    if a.procs > 1:
        return _spawn_parts(argv, a)
    part, _, parts = a.part.partition("/")
    if a.rate is not None and a.devices / a.rate > MAX_SILENCE_S:
        log.warning(
            "%d devices at %.0f msg/s: each speaks only every %.0f s; collectors raise terminal_offline "
            "after 180 s of silence", a.devices, a.rate, a.devices / a.rate,
        )  # fmt: skip
    cfg = LoadConfig(
        host=a.host, port=a.port, devices=a.devices, vessel_share=a.vessel_share, rate=a.rate,
        duration_s=a.duration, count=a.count, seed=a.seed, run_seed=a.run_seed, activity=a.activity,
        settle=not a.no_settle, faults_per_min=a.faults_per_min,
        fault_kinds=kinds, part=int(part), parts=int(parts or 1), qos=a.qos, window=a.window, client_id=a.client_id,
        templates=a.templates, trace_s=a.trace_s, cache_dir=a.cache, progress=a.progress, status_path=a.status,
        truth_path=a.truth, counts_path=a.counts, start_at=a.start_at,
    )  # fmt: skip
    summary = run_load(cfg, fleet)
    print(json.dumps(summary), flush=True)
    return 0 if summary["all_acked"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
