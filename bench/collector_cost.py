"""CPU cost of semon's collector per message, in-process, without broker or database in the way.

    .venv/bin/python bench/collector_cost.py --devices 100000 --messages 300000 [--profile]

Feeds the fleet generator's real message stream (bench/run.py's load: recorded device
behaviour, 100 k devices) through the collector's own pipeline code — decode and validate,
rules, points, batching, acknowledgement bookkeeping — and the line-protocol encoding the
writer thread does, with a telemetry store that only encodes (no network). Prints CPU µs per
message (process time: not distorted by other load on the machine) per stage and, with
``--profile``, the functions where the time goes (cProfile). This is the number the
"Fleet-scale pipeline" section of docs/benchmarks.md tracks before/after each hot-path change.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleetbench.registry import load_fleet_registry

from semon.config import Settings
from semon.ingest.collector import Collector, Inbound, tune_runtime
from semon.simulators.loadgen import LoadConfig, LoadGenerator, build_load_fleet
from semon.store.db import Database
from semon.store.influx import encode_lines
from semon.store.telemetry import Point


class EncodeOnlyStore:
    """A telemetry store that encodes like InfluxStore and discards (the writer's CPU share)."""

    def __init__(self) -> None:
        self.points = 0

    def encode(self, points: Sequence[Point]) -> bytes:
        """Line protocol, as the InfluxDB store would send it."""
        return encode_lines(points)

    def write_encoded(self, body: bytes) -> list[tuple[bytes, str]]:
        """Count and drop."""
        self.points += body.count(b"\n") + 1
        return []


def messages(devices: int, n: int, seed: int, rate: float) -> list[tuple[str, bytes]]:
    """``n`` messages of the generator's stream at ``rate`` msg/s (changes + keep-alives), in order."""
    fleet = build_load_fleet(devices, seed=seed, cache_dir=Path(__file__).resolve().parent / "out" / "cache")
    g = LoadGenerator(LoadConfig(devices=devices, rate=rate, seed=seed), fleet)
    out: list[tuple[str, bytes]] = []
    t0 = int(time.time() * 1000) - n * 1000 // int(rate) - 60_000
    step = 10  # ms of stream per build
    v = 0
    while len(out) < n:
        v += step
        now = t0 + v
        batch = g._build(v / 1000, now, v, 1 << 30)
        due = int(v / 1000 * rate) - g.k
        if due > 0:
            extra = g.keepalive_chunk(due, now)
            g.k += len(extra)
            batch += extra
        out += batch
    return out[:n]


def main() -> None:
    """Run and print one JSON line (µs per message)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--rate", type=float, default=26_000, help="stream shape: changes + keep-alives at this rate")
    ap.add_argument("--read", type=int, default=256, help="messages per network read handed to the pipeline")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--python-defaults", action="store_true", help="CPython's GC thresholds, not the collector's")
    a = ap.parse_args()
    # A warm-up pass first (every device seen once: caches filled, rule state created), as in a
    # collector that has been running; only the second part is measured.
    warm = max(a.devices, a.messages // 2)
    msgs = messages(a.devices, warm + a.messages, a.seed, a.rate)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/semon.db"
        fleet = build_load_fleet(a.devices, seed=a.seed, cache_dir=Path(__file__).resolve().parent / "out" / "cache")
        load_fleet_registry(url, fleet)
        # No registry reloads (a PostgreSQL registry is only reloaded when it changed: see Collector).
        settings = Settings(
            mqtt_url="mqtt://127.0.0.1:1", db_url=url, data_dir=Path(tmp) / "data", registry_refresh_s=1e9
        )
        db = Database(url)
        store = EncodeOnlyStore()
        col = Collector(settings, db, store)  # type: ignore[arg-type]
        col.engine.watch(col.decoder.registry.values(), int(time.time() * 1000))
        gc.collect()
        if not a.python_defaults:
            tune_runtime()  # as `semon collect` does
        reads = [
            Inbound([(t, p, (k + i) % 65535 + 1, 1) for i, (t, p) in enumerate(msgs[k : k + a.read])], 1, 0)
            for k in range(0, len(msgs), a.read)
        ]
        n_warm = -(-warm // a.read)

        def pipeline(items: list[Inbound]) -> None:
            # The pipeline thread's per-read work (Pipeline.run without its timers).
            for item in items:
                item.arrived_ms = int(time.time() * 1000)
                col.pipeline._take(item)

        def writer() -> None:
            q = col.telemetry_sink.queue
            while not q.empty():
                b = q.get_nowait()
                if b is not None:
                    store.write_encoded(store.encode(b.points))

        col.telemetry_sink.queue.maxsize = 0  # unbounded: no writer thread runs here
        pipeline(reads[:n_warm])
        writer()
        measured = reads[n_warm:]
        gc.collect()
        # Process CPU time, not wall time: other load on the machine does not distort it.
        prof = cProfile.Profile(time.process_time) if a.profile else None
        t0 = time.process_time()
        if prof:
            prof.enable()
        pipeline(measured)
        t1 = time.process_time()
        col.pipeline._count_messages()
        col.pipeline._cut()
        writer()
        t2 = time.process_time()
        if prof:
            prof.disable()
        n = sum(len(r.deliveries) for r in measured)
        print(json.dumps({
            "messages": n, "devices": a.devices, "accepted": col.stats["accepted"],
            "dead_letters": col.stats["dead_letters"], "points": store.points,
            "pipeline_us_per_msg": round((t1 - t0) / n * 1e6, 2),
            "writer_encode_us_per_msg": round((t2 - t1) / n * 1e6, 2),
            "total_us_per_msg": round((t2 - t0) / n * 1e6, 2),
            "one_core_msg_per_s": round(n / (t2 - t0)),
        }))  # fmt: skip
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        db.dispose()


if __name__ == "__main__":
    main()
