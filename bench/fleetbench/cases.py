"""The cases: a fixed-rate level, the search for the highest sustained rate, a burst, a restart
with a backlog — the same load and the same checks for every system under test.

Verdicts (docs/benchmarks.md, "Fleet-scale pipeline"):

* **lost** — per device, the ``seq`` values stored in InfluxDB must be exactly 1…N where N is
  what the load generator published for that device (count, min and max per device);
* **sustained** — at a fixed rate for the whole duration: nothing lost, the generator kept the
  rate, the pipeline's backlog (acknowledged by the broker, not yet in InfluxDB) did not grow
  between the first and the second half of the measuring window by more than half a second
  of traffic, and the last point landed within 2 s of the last publish (the peer baseline's rule);
* **alarm latency** — for every injected fault: first ``raised`` alarm of the expected type on
  that device, received by the harness on ``semon/v1/alarms/#``, minus the time the alarm was
  due (fault onset + the rule's duration, in the device's clock = the generator's wall clock).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fleetbench.observe import Listener, Observer, Sample
from fleetbench.services import Proc
from fleetbench.systems import STATUS_MEASUREMENTS, Context, System

WARMUP_S = 10.0  # excluded from rates and backlog (connections, caches, the first batches)
DRAIN_LIMIT_S = 2.0  # as the peer baseline: the last point lands < 2 s after the last publish
GROWTH_LIMIT_S = 0.5  # backlog growth allowed between the window's halves, in seconds of traffic


# ----------------------------------------------------------------------------------- helpers
def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q * len(v) + 0.5) - 1))]


@dataclass
class LoadRun:
    """A load-generator process and its files."""

    proc: Proc
    dir: Path

    def summary(self) -> dict[str, Any]:
        """The generator's final JSON line (summed over parts when split)."""
        assert self.proc.log is not None
        for line in reversed(self.proc.log.read_text().splitlines()):
            if line.startswith("{"):
                return dict(orjson.loads(line))
        raise RuntimeError(f"load generator printed no summary: {self.proc.log.read_text()[-2000:]}")

    def counts(self) -> dict[str, int]:
        """Messages published per device (all parts)."""
        out: dict[str, int] = {}
        for p in self.dir.glob("counts.json*"):
            out.update(orjson.loads(p.read_bytes()))
        return out

    def truth(self) -> list[dict[str, Any]]:
        """Injected faults (all parts)."""
        rows = []
        for p in self.dir.glob("truth.jsonl*"):
            rows += [orjson.loads(x) for x in p.read_bytes().splitlines() if x.strip()]
        return rows


def start_load(
    ctx: Context,
    case_dir: Path,
    *,
    run_seed: int,
    rate: float | None = None,
    duration: float | None = None,
    count: int | None = None,
    faults_per_min: float = 0.0,
    settle: bool = True,
) -> LoadRun:
    """Start the load generator (``python -m semon.simulators.loadgen``) for one case."""
    case_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        ctx.python, "-m", "semon.simulators.loadgen", "--port", str(ctx.mq.port), "--devices", str(ctx.devices),
        "--vessel-share", str(ctx.vessel_share), "--seed", str(ctx.seed), "--run-seed", str(run_seed),
        "--templates", str(ctx.templates), "--trace-s", str(ctx.trace_s),
        "--cache", str(ctx.cache_dir), "--status", str(case_dir / "status.json"),
        "--counts", str(case_dir / "counts.json"), "--truth", str(case_dir / "truth.jsonl"),
        "--client-id", f"bench-load-{case_dir.name}",
    ]  # fmt: skip
    if rate is not None:
        cmd += ["--rate", str(rate)]
    if duration is not None:
        cmd += ["--duration", str(duration)]
    if count is not None:
        cmd += ["--count", str(count)]
    if faults_per_min:
        cmd += ["--faults-per-min", str(faults_per_min)]
    if not settle:
        cmd.append("--no-settle")
    if ctx.loadgen_procs > 1:
        cmd += ["--procs", str(ctx.loadgen_procs)]
    return LoadRun(Proc.start("loadgen", cmd, case_dir / "loadgen.log"), case_dir)


def stored_per_device(ctx: Context, db: str, t0_ms: int, t1_ms: int) -> dict[str, tuple[int, float, float]]:
    """(count, min seq, max seq) per device of the status points with device time in [t0, t1]."""
    out: dict[str, tuple[int, float, float]] = {}
    for meas in STATUS_MEASUREMENTS:
        q = (
            f'SELECT count("seq"), min("seq"), max("seq") FROM "{meas}" '
            f"WHERE time >= {t0_ms}ms AND time <= {t1_ms}ms GROUP BY \"device_id\""
        )
        for s in ctx.influx.query(q, db):
            dev = str(s["tags"]["device_id"])  # type: ignore[index]
            _, n, lo, hi = s["values"][0]  # type: ignore[index]
            out[dev] = (int(n), float(lo), float(hi))
    return out


def check_loss(expected: dict[str, int], stored: dict[str, tuple[int, float, float]]) -> dict[str, Any]:
    """Compare per device: stored seqs must be exactly 1..N (InfluxDB keeps one point per (device, seq))."""
    lost = 0
    bad: list[str] = []
    for dev, n in expected.items():
        c, lo, hi = stored.get(dev, (0, 0.0, 0.0))
        if c != n or (n and (lo != 1 or hi != n)):
            bad.append(dev)
            lost += max(0, n - c)
    unexpected = sum(c for dev, (c, _, _) in stored.items() if dev not in expected)
    return {
        "published": sum(expected.values()), "stored": sum(c for c, _, _ in stored.values()), "lost": lost,
        "devices": len(expected), "devices_wrong": len(bad), "examples": bad[:5], "unexpected_points": unexpected,
    }  # fmt: skip


def alarm_check(
    system: System,
    alarms: list[tuple[int, dict[str, Any]]],
    truth: list[dict[str, Any]],
    seen_events: set[int] | None = None,
) -> dict:
    """Match alarms to injected faults: latency, missed, duplicates, alarms on devices without a fault.

    semon's transitions are counted by what they mean, not by how many copies arrived. Delivery
    on the alarm topic is at least once and ``event_id`` is the consumers' dedupe key
    (docs/alerts.md): a transition whose ``event_id`` was already received — re-published by the
    relay because its PUBACK came after the collector stopped waiting, or an earlier case's
    transition relayed by this case's collector (same database) — is ``redelivered``, not a new
    alarm. A *duplicate* is a second alarm (another ``alarm_id``) raised for one fault; the
    escalation of the alarm already raised is the same alarm. ``seen_events`` (the event ids of
    the earlier cases on the same database) is updated in place.
    """
    faulted = {t["device_id"] for t in truth}
    peer = system.db.startswith("nodered")  # the Node-RED flow: stateless alarms, no duration rule
    seen = seen_events if seen_events is not None else set()
    # (device, type) → [(arrival, alarm id)]; the peer's messages have no id: each is its own alarm.
    raised: dict[tuple[str, str], list[tuple[int, object]]] = {}
    other = redelivered = 0
    other_alarms: set[object] = set()
    other_types: Counter[str] = Counter()
    for n, (recv, m) in enumerate(alarms):
        key = (str(m.get("device_id")), str(m.get("type")))
        if not peer:
            event_id = m.get("event_id")
            if event_id is not None:
                if event_id in seen:
                    redelivered += 1
                    continue
                seen.add(event_id)
            escalated = m.get("event") == "severity_changed" and m.get("severity") == "critical"
            if m.get("event") != "raised" and not escalated:
                continue
        alarm: object = ("message", n) if peer or m.get("alarm_id") is None else m["alarm_id"]
        raised.setdefault(key, []).append((recv, alarm))
        if key[0] not in faulted and alarm not in other_alarms:
            other_alarms.add(alarm)
            other += 1
            other_types[key[1]] += 1
    latencies: list[float] = []
    missed = 0
    dup = 0
    for t in truth:
        if peer and t["alarm_type"] == "trapped_passenger":
            continue  # the Node-RED flow has no duration rule
        got = sorted(x for x in raised.get((t["device_id"], t["alarm_type"]), []) if x[0] >= t["onset_ts"] - 1000)
        if not got:
            missed += 1
            continue
        latencies.append(max(0, got[0][0] - t["due_ts"]))
        if not peer:
            dup += len({alarm for _, alarm in got}) - 1
    considered = len([t for t in truth if not (peer and t["alarm_type"] == "trapped_passenger")])
    return {
        "faults": considered, "detected": considered - missed, "missed": missed, "duplicates": dup,
        "redelivered": redelivered, "alarms_without_fault": other, "alarms_without_fault_by_type": dict(other_types),
        "latency_ms": {
            "p50": pct(latencies, 0.5), "p95": pct(latencies, 0.95), "p99": pct(latencies, 0.99),
            "max": max(latencies) if latencies else None,
        },
    }  # fmt: skip


def window(series: list[Sample], t0: float, t1: float) -> list[Sample]:
    """Samples taken within [t0, t1]."""
    return [s for s in series if t0 <= s.t <= t1]


def rate_between(rows: list[Sample], attr: str) -> float | None:
    """Slope of a cumulative series over the rows (per second)."""
    if len(rows) < 2 or rows[-1].t <= rows[0].t:
        return None
    return (getattr(rows[-1], attr) - getattr(rows[0], attr)) / (rows[-1].t - rows[0].t)


def wait_drained(obs: Observer, target: int, stall_s: float, limit_s: float) -> float | None:
    """Until InfluxDB holds ``target`` points (returns the time), or nothing moved for ``stall_s``."""
    deadline = time.time() + limit_s
    last, last_t = -1, time.time()
    while time.time() < deadline:
        n = obs.points()
        if n >= target:
            return time.time()
        if n != last:
            last, last_t = n, time.time()
        elif time.time() - last_t > stall_s:
            return None
        time.sleep(0.25)
    return None


# ----------------------------------------------------------------------------------- cases
class Runner:
    """Runs cases against one broker/InfluxDB pair, one at a time."""

    def __init__(self, ctx: Context, listener: Listener, log: Any = print) -> None:
        self.ctx = ctx
        self.listener = listener
        self.log = log
        self.n = 0
        # semon event ids received in this runner's cases (one database per fleet phase): a case's
        # collector relays what an earlier one left unmarked, and that is no new alarm.
        self.seen_events: set[int] = set()

    def _observer(self, system: System, case_dir: Path) -> Observer:
        obs = Observer(self.ctx.influx, self.listener, case_dir / "status.json")
        for p in (self.ctx.mq.proc, self.ctx.influx.proc):
            if p is not None:
                obs.watch(p)
        for p in system.procs:
            obs.watch(p)
        return obs

    def _case(self, system: System, label: str) -> tuple[str, Path]:
        self.n += 1
        case = f"{self.n:02d}-{system.name}-{label}"
        return case, self.ctx.workdir / case

    def _begin(self, system: System, case: str, cdir: Path) -> tuple[Observer, int, float]:
        """Start the system and its observer; the listener's mark and the start time."""
        system.start(case)
        obs = self._observer(system, cdir)
        mark = self.listener.mark()
        obs.start()
        return obs, mark, time.time()

    def level(
        self, system: System, rate: float, duration: float, faults_per_min: float = 0.0
    ) -> dict[str, Any]:
        """A fixed-rate run: is ``rate`` sustained by ``system``?"""
        case, cdir = self._case(system, f"rate{int(rate)}")
        self.log(f"[{case}] {system.name} at {rate:,.0f} msg/s for {duration:.0f} s …")
        obs, mark, t_start = self._begin(system, case, cdir)
        load = start_load(
            self.ctx, cdir, run_seed=self.n, rate=rate, duration=duration, faults_per_min=faults_per_min
        )
        obs.watch(load.proc)
        if load.proc.popen:
            load.proc.popen.wait(duration + 600)
        summ = load.summary()
        t_sent = float(summ["t_sent"])
        drained = wait_drained(obs, int(summ["sent"]), stall_s=20, limit_s=180)
        time.sleep(1.5)  # the last alarm transitions and samples
        system.stop()
        obs.stop()
        res = self._measure(system, case, cdir, obs, load, summ, t_start, t_sent, drained, mark)
        res.update({"kind": "level", "target_rate": rate, "duration_s": duration})
        w0, w1 = t_start + WARMUP_S, t_sent
        growth = res["backlog"]["growth_msgs"]
        # (The accepted rate is reported, not judged: telemetry reaches InfluxDB in bursts — a
        # spool replay writes several batches at once — so its slope over the window is noisy;
        # the backlog's growth and the drain time are the steady measures of keeping up.)
        res["sustained"] = bool(
            res["loss"]["lost"] == 0
            and (res["published_rate"] or 0) >= 0.97 * rate
            and growth is not None
            and growth <= GROWTH_LIMIT_S * rate
            and drained is not None
            and drained - t_sent <= DRAIN_LIMIT_S
            and w1 - w0 > 5
        )
        system.forget_sessions()
        self.log(
            f"[{case}] accepted {res['accepted_rate'] or 0:,.0f} msg/s, lost {res['loss']['lost']}, "
            f"backlog growth {growth}, drain {res['drain_s']} s → "
            + ("SUSTAINED" if res["sustained"] else "not sustained")
        )
        return res

    def _measure(
        self,
        system: System,
        case: str,
        cdir: Path,
        obs: Observer,
        load: LoadRun,
        summ: dict[str, Any],
        t_start: float,
        t_sent: float,
        drained: float | None,
        mark: int,
    ) -> dict[str, Any]:
        rows = window(obs.series, t_start + WARMUP_S, t_sent)
        backlog = [s.acked - s.points for s in rows]
        half = len(backlog) // 2
        first = statistics.mean(backlog[:half]) if half else None
        second = statistics.mean(backlog[half:]) if half else None
        stores = [s.store for s in rows if s.store is not None]
        counts = load.counts()
        t0_ms = int(summ["t_start"] * 1000) - 1000
        t1_ms = int((drained or time.time()) * 1000) + 120_000
        stored = stored_per_device(self.ctx, system.db, t0_ms, t1_ms)
        loss = check_loss(counts, stored)
        alarms = self.listener.alarms[mark:]
        # semon's transitions carry an "event"; the Node-RED flow's alarms do not.
        if system.db.startswith("nodered"):
            own = [(r, m) for r, m in alarms if "event" not in m]
        else:
            own = [(r, m) for r, m in alarms if "event" in m]
        truth = load.truth()
        cpu = obs.cpu_pct(t_start + WARMUP_S, t_sent)
        res = {
            "case": case, "system": system.name, "devices": self.ctx.devices,
            "published": int(summ["sent"]), "published_rate": rate_between(rows, "acked"),
            "accepted_rate": rate_between(rows, "points"),
            "points_written": obs.points(), "loadgen": {k: summ.get(k) for k in (
                "achieved_rate", "changes", "keepalives", "settled", "activity", "natural_rate", "cpu_s")},
            "drain_s": round(drained - t_sent, 2) if drained else None,
            "backlog": {
                "first_half_msgs": round(first) if first is not None else None,
                "second_half_msgs": round(second) if second is not None else None,
                "growth_msgs": round(second - first) if first is not None and second is not None else None,
                "max_msgs": max(backlog) if backlog else None,
                "broker_store_max": max(stores) if stores else None,
                "broker_store_last": stores[-1] if stores else None,
            },
            "loss": loss,
            "alarms": alarm_check(system, own, truth, self.seen_events),
            "cpu_pct": cpu,
            "peak_rss_mb": {k: round(v) for k, v in obs.peak_rss.items()},
            "series": [[round(s.t - t_start, 1), s.sent, s.acked, s.points, s.store, s.cpu] for s in obs.series],
        }  # fmt: skip
        (cdir / "result.json").write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
        return res

    def search(
        self, system: System, levels: list[float], duration: float, faults_per_min: float, refine: bool = True
    ) -> dict[str, Any]:
        """Ramp through ``levels`` until one is not sustained; then try once between the last two."""
        runs: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        failed: float | None = None
        for r in levels:
            res = self.level(system, r, duration, faults_per_min)
            runs.append(res)
            if res["sustained"]:
                best = res
            else:
                failed = r
                break
        if refine and best is not None and failed is not None and failed / best["target_rate"] > 1.12:
            mid = round((best["target_rate"] + failed) / 2 / 500) * 500
            res = self.level(system, mid, duration, faults_per_min)
            runs.append(res)
            if res["sustained"]:
                best = res
        return {
            "system": system.name, "runs": runs,
            "max_sustained_rate": best["target_rate"] if best else None,
            "max_sustained_accepted": best["accepted_rate"] if best else None,
            "first_failed_rate": failed, "ceiling_reached": failed is None,
        }  # fmt: skip

    def burst(self, system: System, count: int) -> dict[str, Any]:
        """``count`` messages as fast as the broker takes them; end to end rate and loss."""
        case, cdir = self._case(system, f"burst{count}")
        self.log(f"[{case}] {system.name}: burst of {count:,} messages …")
        obs, mark, t_start = self._begin(system, case, cdir)
        load = start_load(self.ctx, cdir, run_seed=self.n, count=count, settle=False)
        obs.watch(load.proc)
        if load.proc.popen:
            load.proc.popen.wait(600)
        summ = load.summary()
        t_sent = float(summ["t_sent"])
        drained = wait_drained(obs, int(summ["sent"]), stall_s=30, limit_s=300)
        system.stop()
        obs.stop()
        res = self._measure(system, case, cdir, obs, load, summ, t_start, t_sent, drained, mark)
        end = drained or (obs.series[-1].t if obs.series else time.time())
        res.update({
            "kind": "burst", "count": count, "publish_s": round(t_sent - summ["t_start"], 2),
            "end_to_end_rate": round(res["loss"]["stored"] / (end - summ["t_start"]), 1),
            "cpu_pct": obs.cpu_pct(t_start, end),
        })  # fmt: skip
        system.forget_sessions()
        self.log(
            f"[{case}] {res['end_to_end_rate']:,.0f} msg/s end to end, lost {res['loss']['lost']} of {count:,}"
        )
        return res

    def restart(self, system: System, count: int, kill_after_s: float = 1.0) -> dict[str, Any]:
        """Kill the system (SIGKILL) while a burst arrives, restart it once the burst is queued: lost?"""
        case, cdir = self._case(system, f"restart{count}")
        self.log(f"[{case}] {system.name}: SIGKILL {kill_after_s:g} s into a {count:,}-message burst, restart …")
        system.start(case, persistent=True)
        obs = self._observer(system, cdir)
        mark = self.listener.mark()
        obs.start()
        t_start = time.time()
        load = start_load(self.ctx, cdir, run_seed=self.n, count=count, settle=False)
        obs.watch(load.proc)
        time.sleep(kill_after_s)
        system.kill()
        killed_at = time.time()
        if load.proc.popen:
            load.proc.popen.wait(600)
        summ = load.summary()
        t_sent = float(summ["t_sent"])
        time.sleep(1.0)
        backlog_at_restart = self.listener.store
        t_restart = time.time()
        for p in system.restart():
            obs.watch(p)
        drained = wait_drained(obs, int(summ["sent"]), stall_s=30, limit_s=300)
        time.sleep(1.0)
        system.stop()
        obs.stop()
        res = self._measure(system, case, cdir, obs, load, summ, t_start, t_sent, drained, mark)
        res.update({
            "kind": "restart", "count": count, "killed_after_s": round(killed_at - t_start, 2),
            "cpu_pct": obs.cpu_pct(t_start, drained or time.time()),
            "broker_store_at_restart": backlog_at_restart,
            "restart_to_drained_s": round(drained - t_restart, 2) if drained else None,
        })  # fmt: skip
        system.forget_sessions()
        self.log(
            f"[{case}] lost {res['loss']['lost']} of {count:,}; drained {res['restart_to_drained_s']} s after restart"
        )
        return res
