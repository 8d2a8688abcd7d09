"""Fleet-scale benchmark: semon vs the Node-RED peer flows vs the raw limits, one command.

    .venv/bin/python bench/run.py                 # the full run (~40 min), docs/benchmarks.md
    .venv/bin/python bench/run.py --short         # smoke: ≤ 2 min, small fleet, no Node-RED

Self-contained: starts its own Mosquitto and InfluxDB on free ports from the repo's templates
(config/), creates a temporary PostgreSQL database on ``--pg`` (dropped at the end), loads the
generated fleet's registry, and runs, in this order:

1. the raw limits: ``mosquitto_sub`` at QoS 1 (the broker's delivery limit) and InfluxDB fed
   pre-built line protocol on 1 and 2 connections;
2. semon: fixed-rate levels (the first one, with injected faults, gives the alarm latency),
   ramping until a level is not sustained, then one level in between; a burst; a SIGKILL
   with a backlog and a restart;
3. the Node-RED peers (installed from npm into a cache folder, not a project dependency): the
   batched flow and the per-message flow, same levels logic, burst and restart.

Every case starts its system afresh, checks per device and ``seq`` what reached InfluxDB, and
records CPU and peak RSS per process and the backlog. Results: ``<out>/results.json`` and
``<out>/report.md`` (also printed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleetbench import report
from fleetbench.cases import Runner
from fleetbench.limits import influx_write_limit, mosquitto_sub_limit
from fleetbench.observe import Listener
from fleetbench.registry import load_fleet_registry, prime_series
from fleetbench.services import REPO, Influx, Mosquitto, Postgres, ServiceMissing, stop_all
from fleetbench.systems import Context, NodeRed, NodeRedInstall, Semon, System

from semon.simulators.loadgen import build_load_fleet


def _levels(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults = the documented full run)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--short", action="store_true", help="smoke mode: small fleet, one level, ≤ 2 min, no Node-RED")
    p.add_argument("--out", type=Path, default=None, help="output folder (default bench/out/<timestamp>)")
    p.add_argument("--pg", default=os.environ.get("SEMON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument(
        "--fleets", default="1000:full,100000:city",
        help="fleet phases, SIZE:full|city: full = every case and peer; city = InfluxDB limit, semon and the\n"
        "batched Node-RED flow at --city-levels, semon's burst and restart",
    )  # fmt: skip
    p.add_argument("--vessel-share", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=None, help="seconds per level (default 60; short: 15)")
    p.add_argument("--faults-per-min", type=float, default=60.0, help="injected faults per minute during levels")
    p.add_argument("--semon-levels", default="5000,10000,12500,15000,17500,20000,26000,30000")
    p.add_argument("--nodered-batch-levels", default="5000,10000,12500,15000,17500,20000,26000")
    p.add_argument("--nodered-permsg-levels", default="1000,2000,3000,4000,5000")
    p.add_argument("--city-levels", default="2500,5000,7500,10000,12500,15000")
    p.add_argument("--collectors", type=int, default=1, help="semon collector processes (partitioned by device)")
    p.add_argument("--burst", type=int, default=100_000)
    p.add_argument("--restart", type=int, default=100_000)
    p.add_argument("--sub-limit", type=int, default=500_000, help="messages for the mosquitto_sub limit (0: skip)")
    p.add_argument("--influx-limit", type=int, default=500_000, help="points for the InfluxDB limit (0: skip)")
    p.add_argument("--no-nodered", action="store_true", help="skip the Node-RED peers")
    p.add_argument("--nodered", action="store_true", help="run the Node-RED peers in --short mode too")
    p.add_argument("--nodered-home", type=Path, default=REPO / "bench" / "out" / "nodered", help="npm install here")
    p.add_argument("--only", default="", help="comma list of parts: limits,semon,nodered-batch,nodered-permsg")
    p.add_argument("--profile", action="store_true", help="py-spy the semon collector during its levels")
    p.add_argument("--loadgen-procs", type=int, default=1, help="split the load generator over N processes")
    a = p.parse_args(argv)
    if a.short:
        a.fleets = "2000:full" if a.fleets == p.get_default("fleets") else a.fleets
        a.duration = a.duration or 15.0
        a.semon_levels = "2000"
        a.burst, a.restart = min(a.burst, 5000), min(a.restart, 5000)
        a.sub_limit, a.influx_limit = min(a.sub_limit, 20_000), min(a.influx_limit, 50_000)
        a.faults_per_min = 30.0
        a.no_nodered = a.no_nodered or not a.nodered
    a.duration = a.duration or 60.0
    a.fleet_specs = []
    for item in a.fleets.split(","):
        size, _, mode = item.partition(":")
        if mode not in ("full", "city", ""):
            p.error(f"--fleets: unknown mode {mode!r} in {item!r}")
        a.fleet_specs.append((int(size), mode or "full"))
    return a


def _versions(nr: NodeRedInstall | None) -> str:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    mq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    parts = [
        f"Python {platform.python_version()}",
        out([mq, "-h"]).replace("mosquitto version", "Mosquitto").strip(),
        "InfluxDB " + out(["influxd", "version"]).replace("InfluxDB", "").strip(),
    ]
    if nr and nr.versions:
        parts.append(", ".join(f"{k} {v}" for k, v in nr.versions.items()))
    return "; ".join(parts)


def _profile(a: argparse.Namespace, system: System, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not a.profile or not Path(spy).exists() or not system.procs:
        return None
    return subprocess.Popen(
        # --nonblocking: sample without pausing the collector (the profile must not slow what it measures).
        [spy, "record", "--nonblocking", "-p", str(system.procs[0].pid), "-d", str(int(seconds)), "-r", "100",
         "-f", "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


class Bench:
    """One harness run: services, then each fleet phase."""

    def __init__(self, a: argparse.Namespace, argv: list[str]) -> None:
        self.a = a
        self.started = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
        self.out = a.out or REPO / "bench" / "out" / self.started
        self.out.mkdir(parents=True, exist_ok=True)
        self._logf = (self.out / "run.log").open("a")
        self.only = {x.strip() for x in a.only.split(",") if x.strip()}
        self.results: dict[str, Any] = {
            "started": self.started,
            "command": "python bench/run.py " + " ".join(shlex.quote(x) for x in argv),
            "environment": {"cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2), "git": _git()},
            "fleets": [], "limits": {}, "skipped": [],
        }  # fmt: skip
        self.nr_install: NodeRedInstall | None = None

    def log(self, msg: str) -> None:
        """Print and keep a line of the run log."""
        line = f"{datetime.now(UTC).strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        self._logf.write(line + "\n")
        self._logf.flush()

    def part(self, name: str) -> bool:
        """Is this part of the run selected (``--only``)?"""
        return not self.only or name in self.only

    def node_red(self) -> NodeRedInstall | None:
        """Node-RED from npm (once per run), or None with the reason in ``skipped``."""
        a = self.a
        if a.no_nodered:
            why = "short mode: needs npm and minutes" if a.short else "--no-nodered"
            msg = f"Node-RED peers ({why})"
            if msg not in self.results["skipped"]:
                self.results["skipped"].append(msg)
                self.log(f"skipped: {msg}")
            return None
        if self.nr_install is None:
            self.nr_install = NodeRedInstall(a.nodered_home)
            self.log(f"Node-RED: npm install into {a.nodered_home} (once) …")
            if not self.nr_install.ensure(self.out / "npm.log"):
                self.results["skipped"].append(f"Node-RED peers: {self.nr_install.problem}")
                self.log(f"Node-RED skipped: {self.nr_install.problem}")
        return self.nr_install if self.nr_install.problem is None else None

    def fleet(self, devices: int, mode: str, mq: Mosquitto, influx: Influx, listener: Listener) -> dict[str, Any]:
        """One fleet phase: its own registry database and InfluxDB databases, then its cases."""
        a = self.a
        res: dict[str, Any] = {"devices": devices, "mode": mode, "cases": [], "searches": {}, "limits": {}}
        pg = Postgres(a.pg)
        pg.create()
        try:
            t = time.time()
            templates, trace_s = (100, 120.0) if a.short else (500, 300.0)
            cache = REPO / "bench" / "out" / "cache"
            fleet = build_load_fleet(devices, a.vessel_share, a.seed, templates, trace_s, cache)
            specs = fleet.registry_specs()
            reg = load_fleet_registry(pg.url, fleet, specs)
            self.log(f"fleet of {devices:,} devices ({reg['firms']} firms) registered in {time.time() - t:.1f} s")
            semon_db, peer_db = f"semon_{devices}", f"nodered_{devices}"
            for db in (semon_db, peer_db):
                influx.recreate(db)
            res["influx_priming_s"] = round(prime_series(influx.url, specs, semon_db, peer_db), 1)
            self.log(f"InfluxDB series of every device created in {res['influx_priming_s']} s")
            ctx = Context(
                mq=mq, influx=influx, pg=pg, workdir=self.out / f"fleet{devices}", fleet=fleet, devices=devices,
                vessel_share=a.vessel_share, seed=a.seed, cache_dir=cache, templates=templates, trace_s=trace_s,
                loadgen_procs=a.loadgen_procs,
            )  # fmt: skip
            runner = Runner(ctx, listener, self.log)
            full = mode == "full"
            if self.part("limits"):
                if full and a.sub_limit and "mosquitto_sub" not in self.results["limits"]:
                    sub = mosquitto_sub_limit(ctx, a.sub_limit, self.log)
                    self.results["limits"]["mosquitto_sub"] = sub
                    if "skipped" in sub:
                        self.results["skipped"].append(sub["skipped"])
                if a.influx_limit:
                    res["limits"]["influx"] = influx_write_limit(ctx, a.influx_limit, log=self.log)
            if self.part("semon"):
                label = "semon" if a.collectors == 1 else f"semon-{a.collectors}c"
                sem = Semon(ctx, collectors=a.collectors, label=label, db=semon_db)
                if a.profile:
                    self._profile_levels(sem)
                levels = _levels(a.semon_levels if full else a.city_levels)
                search = runner.search(sem, levels, a.duration, a.faults_per_min, refine=not a.short)
                res["searches"]["semon"] = {k: v for k, v in search.items() if k != "runs"}
                res["cases"] += search["runs"]
                res["latency_level"] = next(
                    (r for r in search["runs"] if r["target_rate"] == 10_000), search["runs"][0]
                )
                if a.burst:
                    res["cases"].append(runner.burst(sem, min(a.burst, devices * 100)))
                if a.restart:
                    res["cases"].append(runner.restart(sem, min(a.restart, devices * 100)))
            plans = [(500, a.nodered_batch_levels if full else a.city_levels, "nodered-batch")]
            if full:
                plans.append((0, a.nodered_permsg_levels, "nodered-permsg"))
            for batch, levels_text, name in plans:
                if not self.part(name):
                    continue
                install = self.node_red()
                if install is None:
                    break
                nr = NodeRed(ctx, install, batch, db=peer_db)
                search = runner.search(nr, _levels(levels_text), a.duration, a.faults_per_min, refine=not a.short)
                res["searches"][nr.name] = {k: v for k, v in search.items() if k != "runs"}
                res["cases"] += search["runs"]
                if full and a.burst:
                    res["cases"].append(runner.burst(nr, min(a.burst, devices * 100)))
                if full and a.restart:
                    res["cases"].append(runner.restart(nr, min(a.restart, devices * 100)))
        finally:
            try:
                pg.drop()
            except Exception as e:  # the server went away: say so, do not hide the results
                self.log(f"could not drop {pg.name}: {e}")
        return res

    def _profile_levels(self, sem: Semon) -> None:
        """py-spy the first collector through each of its fixed-rate levels."""
        start = sem.start
        a = self.a

        def start_with_profile(case: str, persistent: bool = False) -> list[Any]:
            procs = start(case, persistent)
            if "rate" in case:
                _profile(a, sem, a.duration + 5, self.out / f"profile-{case}.txt")
            return procs

        sem.start = start_with_profile  # type: ignore[method-assign]

    def run(self) -> int:
        """Services up, each fleet, report; exit 0 when every planned case ran."""
        a = self.a
        self.log(f"fleet benchmark → {self.out} (load average {os.getloadavg()[0]:.2f})")
        mq = Mosquitto(self.out / "mosquitto")
        influx = Influx(self.out / "influxdb")
        listener: Listener | None = None
        code = 0
        try:
            mq.start()
            influx.start()
            listener = Listener(mq.port, f"bench-listener-{os.getpid()}")
            for devices, mode in a.fleet_specs:
                self.results["fleets"].append(self.fleet(devices, mode, mq, influx, listener))
        except ServiceMissing as e:
            self.log(f"cannot run: {e}")
            self.results["skipped"].append(str(e))
            code = 2
        finally:
            if listener is not None:
                listener.close()
            stop_all()
            mq.stop()
            influx.stop()
            env = self.results["environment"]
            env["load_after"] = round(os.getloadavg()[0], 2)
            env["versions"] = _versions(self.nr_install)
            env["git_after"] = _git()
            (self.out / "results.json").write_text(json.dumps(self.results, indent=1, default=str))
        if code:
            return code
        md = report.markdown(self.results)
        (self.out / "report.md").write_text(md)
        print(md)
        self.log(f"results: {self.out / 'results.json'}, report: {self.out / 'report.md'}")
        return 0


def _git() -> dict[str, str]:
    """Commit and a digest of the pipeline's source files as they are (they may be uncommitted)."""

    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    files = ["ingest/collector.py", "ingest/decode.py", "ingest/mqtt_client.py", "ingest/spool.py",
             "core/store/influx.py", "rules/engine.py", "simulators/loadgen.py"]  # fmt: skip
    h = hashlib.sha256()
    for f in files:
        p = REPO / f
        h.update(p.read_bytes() if p.exists() else b"-")
    return {"commit": run("git", "rev-parse", "--short", "HEAD"), "sources_sha256": h.hexdigest()[:16],
            "dirty": run("git", "status", "--porcelain", "--", *files)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (see the module docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    bench = Bench(parse_args(args), args)

    def on_signal(signum: int, _frame: object) -> None:
        stop_all()  # every process this run started, by its PID
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    return bench.run()


if __name__ == "__main__":
    raise SystemExit(main())
