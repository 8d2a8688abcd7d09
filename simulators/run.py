"""Run a simulated fleet against an MQTT broker: ``run_simulation(SimulationConfig(...))``.

Usable in-process from any thread (stop it with ``stop_event``) and from the command line:
``python -m semon.simulators.run --elevators 20 --vessels 10 --rate 30 --duration 60
--fault trapped:E000003@30s``, or a day of a large fleet with every fault type:
``--elevators 1000 --vessels 200 --speed 60 --duration 1440 --scenario mixed --per-type 3``.

Device time runs ``speed`` times faster than wall time. When ``speed`` > 1 and no ``start_ms``
is given, the device clock starts in the past so that it reaches "now" at the end of the run
instead of running into the future (collectors reject timestamps far ahead of their clock).

Reporting: every device reports on change and at least every ``keepalive_s`` of *device*
time (the terminals' keep-alive, default 60 s); ``rate`` asks for periodic reports of the
whole fleet per *wall* second, i.e. one per device every ``devices / rate`` wall seconds =
``speed × devices / rate`` device seconds. The periodic interval is the shorter of the two, so
``rate`` can only add traffic; ``rate=0`` means keep-alive only (the realistic setting for
long accelerated runs: 1,200 devices send ≈ 190 messages per device-time second, keep-alives
and changes, so ≈ 11.5 k messages/s at speed 60).

Throughput: the paho client costs ≈ 100 µs of CPU per QoS 1 publish, the engine ≈ 30-50 µs
per message; on the 2-core dev machine (shared) this loop sustained ≈ 5.6 k messages/s, i.e.
speed ≈ 30 for 1,200 devices. When the loop falls behind, device time simply runs slower than
``speed`` (nothing is dropped; ``end_ms`` tells how far it got). For scoring and long runs
without MQTT, use ``FleetEngine.iter_messages`` (≈ 20-33 k messages/s on one core).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from semon.contract.topics import device_topic
from semon.mqtt_connect import TlsFiles
from semon.simulators.engine import FleetEngine
from semon.simulators.faults import FaultSpec, check_no_overlap, parse_fault_specs
from semon.simulators.fleet import Fleet, build_fleet
from semon.simulators.progress import ProgressView
from semon.simulators.publisher import MAX_UNACKED, StatusPublisher
from semon.simulators.scenario import SCENARIOS, mixed_scenario
from semon.simulators.truth import TruthRecord, TruthWriter
from semon.timeutil import now_ms

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SimulationConfig:
    """What to simulate and where to publish it."""

    host: str = "127.0.0.1"
    port: int = 1883
    elevators: int = 10
    vessels: int = 5
    rate: float = 10.0  # periodic status reports per wall second, whole fleet (0: keep-alive only)
    keepalive_s: float = 60.0  # device seconds: every device reports at least this often
    duration_s: float | None = None  # wall seconds; None: until stop_event is set
    faults: list[str] = field(default_factory=list)  # TYPE:DEVICE@ONSET[+DURATION]
    seed: int = 1
    speed: float = 1.0  # device time per wall time
    truth_path: str | Path | None = None  # ground-truth JSON lines
    registry_path: str | Path | None = None  # registry CSV, written at start
    client_id: str = "semon-sim"
    progress: bool = False
    stop_event: threading.Event | None = None
    start_ms: int | None = None  # device clock at start, ms UTC
    step_ms: int = 100  # device-time step of the engine
    username: str | None = None
    password: str | None = None
    tls: TlsFiles | None = None  # set: connect over TLS (mqtts), verifying the broker's certificate
    ack_timeout_s: float = 30.0  # how long to wait for outstanding PUBACKs at the end
    offline_at_end: bool = False  # publish retained "0" on every online topic when done
    # End when *device* time has covered duration_s × speed, however long that takes on the wall:
    # the same messages and faults on a loaded machine as on an idle one (tests).
    device_time_bound: bool = False
    scenario: str | None = None  # "mixed": every fault type, ``per_type`` times (needs duration_s)
    per_type: int = 3
    scenario_types: list[str] | None = None  # restrict the mixed scenario to these fault types


@dataclass(slots=True)
class SimulationResult:
    """What a run published."""

    per_device: dict[str, int]  # device id -> status messages published (= last status seq)
    total_messages: int  # status messages
    online_messages: int  # online-flag publishes (start, last wills, end)
    elapsed_s: float  # wall time of the stepping loop
    achieved_rate: float  # status messages per wall second
    faults: list[TruthRecord]  # ground truth of the injected faults
    start_ms: int  # device time of the first step
    end_ms: int  # device time after the last step
    all_acked: bool  # every publish got its PUBACK before disconnecting
    per_device_events: dict[str, int] = field(default_factory=dict)  # device id -> events (= last event seq)
    total_events: int = 0
    fault_specs: list[str] = field(default_factory=list)  # every injected fault, as a spec text


def _check(cfg: SimulationConfig) -> None:
    if cfg.elevators + cfg.vessels <= 0:
        raise ValueError("the fleet needs at least one device")
    if cfg.rate < 0 or cfg.speed <= 0 or cfg.keepalive_s <= 0:
        raise ValueError("rate must be >= 0, speed and keepalive_s > 0")
    if cfg.duration_s is not None and cfg.duration_s < 0:
        raise ValueError("duration_s must be >= 0")
    if cfg.scenario is not None:
        if cfg.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {cfg.scenario!r} (known: {', '.join(SCENARIOS)})")
        if not cfg.duration_s:
            raise ValueError("a scenario needs a duration (its faults are spread over duration × speed)")


def report_interval_ms(n_devices: int, rate: float, speed: float, keepalive_s: float) -> int:
    """Periodic report interval per device, device ms: the keep-alive, or shorter if ``rate`` asks for more."""
    keepalive = round(keepalive_s * 1000)
    if rate <= 0:
        return max(1, keepalive)
    # Each device reports every n / rate wall seconds, i.e. speed × that in device time.
    return max(1, min(keepalive, round(speed * n_devices / rate * 1000)))


def build_fault_specs(cfg: SimulationConfig, fleet: Fleet) -> list[FaultSpec]:
    """The explicit ``faults`` plus the scenario's, checked against the fleet and each other."""
    specs = parse_fault_specs(cfg.faults, fleet)
    if cfg.scenario == "mixed":
        assert cfg.duration_s
        horizon = round(cfg.duration_s * cfg.speed * 1000)
        specs += mixed_scenario(
            fleet, horizon_ms=horizon, per_type=cfg.per_type, seed=cfg.seed, types=cfg.scenario_types, reserved=specs
        )
        check_no_overlap(specs)
    return sorted(specs, key=lambda s: (s.onset_ms, s.device_id))


def default_start_ms(speed: float, duration_s: float | None) -> int:
    """Device clock start: now, or earlier by the lead an accelerated run will build up."""
    now = now_ms()
    if speed > 1 and duration_s:
        return now - int((speed - 1) * duration_s * 1000)
    return now


def run_simulation(cfg: SimulationConfig) -> SimulationResult:
    """Publish the fleet's status stream until ``duration_s`` elapses or ``stop_event`` is set."""
    _check(cfg)
    fleet = build_fleet(cfg.elevators, cfg.vessels, cfg.seed)
    specs = build_fault_specs(cfg, fleet)  # bad specs fail before anything is sent
    if cfg.registry_path:
        fleet.write_registry_csv(cfg.registry_path)
    n = len(fleet)
    start_ms = cfg.start_ms if cfg.start_ms is not None else default_start_ms(cfg.speed, cfg.duration_s)
    interval_ms = report_interval_ms(n, cfg.rate, cfg.speed, cfg.keepalive_s)
    engine = FleetEngine(fleet, start_ms=start_ms, report_interval_ms=interval_ms, faults=specs, step_ms=cfg.step_ms)
    topics = _Topics(engine.kinds, engine.device_ids)
    stop = cfg.stop_event or threading.Event()

    pub = StatusPublisher(cfg.host, cfg.port, cfg.client_id, username=cfg.username, password=cfg.password, tls=cfg.tls)
    pub.connect()
    writer = TruthWriter(cfg.truth_path) if cfg.truth_path else None
    online = 0
    t0 = time.monotonic()
    elapsed = 0.0
    all_acked = False
    try:
        for k, d in zip(engine.kinds, engine.device_ids, strict=True):
            pub.publish(device_topic(k, d, "online"), b"1", retain=True)
            online += 1
            if pub.unacked > MAX_UNACKED:
                pub.wait_below(MAX_UNACKED // 2, stop)
        t0 = time.monotonic()
        with ProgressView(cfg.progress, n) as view:
            online += _step_loop(cfg, engine, pub, topics, writer, stop, view, t0)
        elapsed = time.monotonic() - t0
    finally:
        # Faults still open at the end go to the ground truth with end_ts null.
        for rec in engine.finish():
            if writer is not None:
                writer.write(rec)
        if writer is not None:
            writer.close()
        try:
            if cfg.offline_at_end:
                for k, d in zip(engine.kinds, engine.device_ids, strict=True):
                    pub.publish(device_topic(k, d, "online"), b"0", retain=True)
                    online += 1
            all_acked = pub.wait_acked(cfg.ack_timeout_s)
            if not all_acked:
                log.warning("%d messages still unacknowledged after %.0fs", pub.unacked, cfg.ack_timeout_s)
        finally:
            pub.close()
    return SimulationResult(
        per_device=engine.last_seq(),
        total_messages=engine.messages,
        online_messages=online,
        elapsed_s=elapsed,
        achieved_rate=engine.messages / elapsed if elapsed > 0 else 0.0,
        faults=list(engine.truth),
        start_ms=start_ms,
        end_ms=engine.now_ms,
        all_acked=all_acked,
        per_device_events=engine.last_event_seq(),
        total_events=engine.event_messages,
        fault_specs=[s.text for s in specs],
    )


class _Topics:
    """Topic strings per device index and channel, built once (status) or on first use (the rest)."""

    def __init__(self, kinds: list[str], device_ids: list[str]) -> None:
        self.kinds, self.device_ids = kinds, device_ids
        self.status = [device_topic(k, d, "status") for k, d in zip(kinds, device_ids, strict=True)]
        self._other: dict[tuple[int, str], str] = {}

    def get(self, i: int, channel: str) -> str:
        """Topic of device ``i`` on ``channel``."""
        if channel == "status":
            return self.status[i]
        t = self._other.get((i, channel))
        if t is None:
            t = self._other[(i, channel)] = device_topic(self.kinds[i], self.device_ids[i], channel)
        return t


def _step_loop(
    cfg: SimulationConfig,
    engine: FleetEngine,
    pub: StatusPublisher,
    topics: _Topics,
    writer: TruthWriter | None,
    stop: threading.Event,
    view: ProgressView,
    t0: float,
) -> int:
    """Pace the engine to wall time and publish; returns the online-flag messages sent."""
    speed_ms = cfg.speed * 1000.0
    status_topics = topics.status
    online = 0
    dumps = orjson.dumps
    publish = pub.publish
    next_view = 0.0
    bounded_by_device = cfg.device_time_bound and cfg.duration_s is not None
    deadline = None if cfg.duration_s is None or bounded_by_device else t0 + cfg.duration_s
    horizon_ms = None if cfg.duration_s is None else cfg.duration_s * speed_ms
    try:
        while not stop.is_set():
            wall = time.monotonic() - t0
            if horizon_ms is not None and bounded_by_device and engine.elapsed_ms >= horizon_ms:
                break
            if cfg.duration_s is not None and not bounded_by_device and wall >= cfg.duration_s:
                break
            if wall >= next_view:
                view.update(wall, engine.elapsed_ms / 1000, engine.messages, pub.sent, pub.acked, engine.active_faults)
                next_view = wall + 0.25
            # Real-time pacing: the step at device offset E is due at wall time E / speed.
            ahead = engine.elapsed_ms / speed_ms - wall
            if ahead > 0:
                stop.wait(min(ahead, 0.1))
                continue
            for i, channel, payload in engine.step_messages():
                if channel == "status":
                    publish(status_topics[i], dumps(payload))
                elif channel == "event":
                    publish(topics.get(i, channel), dumps(payload))
                else:  # online flag (last will of an offline fault): raw text, retained
                    publish(topics.get(i, channel), b"1" if payload["online"] else b"0", retain=True)
                    online += 1
                if pub.sent - pub.acked > MAX_UNACKED:
                    # The broker is slower than us (or gone): wait instead of queueing without end.
                    pub.wait_below(MAX_UNACKED // 2, stop, deadline)
            for rec in engine.pop_truth():
                if writer is not None:
                    writer.write(rec)
    except KeyboardInterrupt:
        log.info("interrupted; finishing")
    wall = time.monotonic() - t0
    view.update(wall, engine.elapsed_ms / 1000, engine.messages, pub.sent, pub.acked, engine.active_faults)
    return online


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (the ``semon`` CLI may wrap :func:`run_simulation` instead)."""
    p = argparse.ArgumentParser(prog="python -m semon.simulators.run", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--tls", action="store_true", help="connect over TLS (mqtts), e.g. --port 8883")
    p.add_argument("--ca-file", type=Path, default=None, help="CA bundle of the broker's certificate (PEM)")
    p.add_argument("--cert-file", type=Path, default=None, help="client certificate (PEM), if the broker wants one")
    p.add_argument("--key-file", type=Path, default=None, help="client key (PEM)")
    p.add_argument("--elevators", type=int, default=10)
    p.add_argument("--vessels", type=int, default=5)
    p.add_argument(
        "--rate", type=float, default=10.0, help="periodic status messages per wall second, whole fleet (0: keep-alive)"
    )
    p.add_argument("--keepalive", type=float, default=60.0, help="device seconds between a device's reports, at most")
    p.add_argument("--duration", type=float, default=None, help="wall seconds (default: until Ctrl-C)")
    p.add_argument("--fault", action="append", default=[], help="TYPE:DEVICE@ONSET[+DURATION], repeatable")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--speed", type=float, default=1.0, help="device time per wall time")
    p.add_argument("--truth", default=None, help="ground-truth JSON-lines file")
    p.add_argument("--registry", default=None, help="write the registry CSV here first")
    p.add_argument("--client-id", default="semon-sim")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--scenario", choices=SCENARIOS, default=None, help="mixed: every fault type, --per-type times")
    p.add_argument("--per-type", type=int, default=3)
    p.add_argument("--scenario-types", default=None, help="comma-separated fault types for the scenario")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = SimulationConfig(
        host=a.host, port=a.port, elevators=a.elevators, vessels=a.vessels, rate=a.rate,
        duration_s=a.duration, faults=a.fault, seed=a.seed, speed=a.speed, truth_path=a.truth,
        registry_path=a.registry, client_id=a.client_id, progress=a.progress, keepalive_s=a.keepalive,
        scenario=a.scenario, per_type=a.per_type,
        scenario_types=a.scenario_types.split(",") if a.scenario_types else None,
        tls=TlsFiles(a.ca_file, a.cert_file, a.key_file, names=("--ca-file", "--cert-file", "--key-file"))
        if a.tls or a.ca_file or a.cert_file else None,
    )  # fmt: skip
    try:
        r = run_simulation(cfg)
    except (ValueError, ConnectionError) as e:  # ConfigError is a ValueError
        p.error(str(e))
    print(
        f"published {r.total_messages} status and {r.total_events} event messages from {len(r.per_device)} devices in "
        f"{r.elapsed_s:.1f}s ({r.achieved_rate:.1f} msg/s), faults {len(r.faults)}, "
        f"all acknowledged: {r.all_acked}"
    )
    return 0 if r.all_acked else 1


if __name__ == "__main__":
    raise SystemExit(main())
