"""Run a simulated fleet against an MQTT broker: ``run_simulation(SimulationConfig(...))``.

Usable in-process from any thread (stop it with ``stop_event``) and from the command line:
``python -m semon.simulators.run --elevators 20 --vessels 10 --rate 30 --duration 60
--fault trapped:E000003@30s``.

Device time runs ``speed`` times faster than wall time. When ``speed`` > 1 and no ``start_ms``
is given, the device clock starts in the past so that it reaches "now" at the end of the run
instead of running into the future (collectors reject timestamps far ahead of their clock).
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
from semon.simulators.engine import FleetEngine
from semon.simulators.faults import parse_fault_specs
from semon.simulators.fleet import build_fleet
from semon.simulators.progress import ProgressView
from semon.simulators.publisher import MAX_UNACKED, StatusPublisher
from semon.simulators.truth import TruthRecord, TruthWriter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SimulationConfig:
    """What to simulate and where to publish it."""

    host: str = "127.0.0.1"
    port: int = 1883
    elevators: int = 10
    vessels: int = 5
    rate: float = 10.0  # periodic status reports per wall second, whole fleet (changes come on top)
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
    ack_timeout_s: float = 30.0  # how long to wait for outstanding PUBACKs at the end
    offline_at_end: bool = False  # publish retained "0" on every online topic when done


@dataclass(slots=True)
class SimulationResult:
    """What a run published."""

    per_device: dict[str, int]  # device id -> status messages published (= last seq)
    total_messages: int  # status messages
    online_messages: int
    elapsed_s: float  # wall time of the stepping loop
    achieved_rate: float  # status messages per wall second
    faults: list[TruthRecord]  # ground truth of the injected faults
    start_ms: int  # device time of the first step
    end_ms: int  # device time after the last step
    all_acked: bool  # every publish got its PUBACK before disconnecting


def _check(cfg: SimulationConfig) -> None:
    if cfg.elevators + cfg.vessels <= 0:
        raise ValueError("the fleet needs at least one device")
    if cfg.rate <= 0 or cfg.speed <= 0:
        raise ValueError("rate and speed must be > 0")
    if cfg.duration_s is not None and cfg.duration_s < 0:
        raise ValueError("duration_s must be >= 0")


def default_start_ms(speed: float, duration_s: float | None) -> int:
    """Device clock start: now, or earlier by the lead an accelerated run will build up."""
    now = int(time.time() * 1000)
    if speed > 1 and duration_s:
        return now - int((speed - 1) * duration_s * 1000)
    return now


def run_simulation(cfg: SimulationConfig) -> SimulationResult:
    """Publish the fleet's status stream until ``duration_s`` elapses or ``stop_event`` is set."""
    _check(cfg)
    fleet = build_fleet(cfg.elevators, cfg.vessels, cfg.seed)
    specs = parse_fault_specs(cfg.faults, fleet)  # bad specs fail before anything is sent
    if cfg.registry_path:
        fleet.write_registry_csv(cfg.registry_path)
    n = len(fleet)
    start_ms = cfg.start_ms if cfg.start_ms is not None else default_start_ms(cfg.speed, cfg.duration_s)
    # Each device reports every n / rate wall seconds, i.e. speed × that in device time.
    interval_ms = max(1, round(cfg.speed * n / cfg.rate * 1000))
    engine = FleetEngine(fleet, start_ms=start_ms, report_interval_ms=interval_ms, faults=specs, step_ms=cfg.step_ms)
    topics = [device_topic(k, d, "status") for k, d in zip(engine.kinds, engine.device_ids, strict=True)]
    stop = cfg.stop_event or threading.Event()

    pub = StatusPublisher(cfg.host, cfg.port, cfg.client_id, username=cfg.username, password=cfg.password)
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
            _step_loop(cfg, engine, pub, topics, writer, stop, view, t0)
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
    )


def _step_loop(
    cfg: SimulationConfig,
    engine: FleetEngine,
    pub: StatusPublisher,
    topics: list[str],
    writer: TruthWriter | None,
    stop: threading.Event,
    view: ProgressView,
    t0: float,
) -> None:
    speed_ms = cfg.speed * 1000.0
    dumps = orjson.dumps
    publish = pub.publish
    next_view = 0.0
    deadline = None if cfg.duration_s is None else t0 + cfg.duration_s
    try:
        while not stop.is_set():
            wall = time.monotonic() - t0
            if cfg.duration_s is not None and wall >= cfg.duration_s:
                break
            if wall >= next_view:
                view.update(wall, engine.elapsed_ms / 1000, engine.messages, pub.sent, pub.acked, engine.active_faults)
                next_view = wall + 0.25
            # Real-time pacing: the step at device offset E is due at wall time E / speed.
            ahead = engine.elapsed_ms / speed_ms - wall
            if ahead > 0:
                stop.wait(min(ahead, 0.1))
                continue
            for i, status in engine.step():
                publish(topics[i], dumps(status))
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


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (the ``semon`` CLI may wrap :func:`run_simulation` instead)."""
    p = argparse.ArgumentParser(prog="python -m semon.simulators.run", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--elevators", type=int, default=10)
    p.add_argument("--vessels", type=int, default=5)
    p.add_argument("--rate", type=float, default=10.0, help="periodic status messages per second, whole fleet")
    p.add_argument("--duration", type=float, default=None, help="wall seconds (default: until Ctrl-C)")
    p.add_argument("--fault", action="append", default=[], help="TYPE:DEVICE@ONSET[+DURATION], repeatable")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--speed", type=float, default=1.0, help="device time per wall time")
    p.add_argument("--truth", default=None, help="ground-truth JSON-lines file")
    p.add_argument("--registry", default=None, help="write the registry CSV here first")
    p.add_argument("--client-id", default="semon-sim")
    p.add_argument("--progress", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = SimulationConfig(
        host=a.host, port=a.port, elevators=a.elevators, vessels=a.vessels, rate=a.rate,
        duration_s=a.duration, faults=a.fault, seed=a.seed, speed=a.speed, truth_path=a.truth,
        registry_path=a.registry, client_id=a.client_id, progress=a.progress,
    )  # fmt: skip
    try:
        r = run_simulation(cfg)
    except (ValueError, ConnectionError) as e:
        p.error(str(e))
    print(
        f"published {r.total_messages} status messages from {len(r.per_device)} devices in "
        f"{r.elapsed_s:.1f}s ({r.achieved_rate:.1f} msg/s), faults {len(r.faults)}, "
        f"all acknowledged: {r.all_acked}"
    )
    return 0 if r.all_acked else 1


if __name__ == "__main__":
    raise SystemExit(main())
