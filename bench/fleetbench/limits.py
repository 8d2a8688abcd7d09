"""The raw limits on this machine, measured in the same run: what the broker can deliver to a
native QoS 1 subscriber, and what InfluxDB can write from pre-built line protocol.

Nothing of semon runs here — these are the ceilings any pipeline on the same broker and
database lives under (ratios in the report are semon / limit).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import threading
import time
from typing import Any

import httpx

from fleetbench.cases import start_load
from fleetbench.services import cpu_seconds
from fleetbench.systems import Context
from semon.store.influx import encode_lines
from semon.store.telemetry import Point


def mosquitto_sub_limit(ctx: Context, count: int, log: Any = print) -> dict[str, Any]:
    """``mosquitto_sub -q 1 -C count`` on the status topics while the generator publishes ``count``
    as fast as possible: messages the broker delivered per second, end to end."""
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        msg = "mosquitto_sub not found (apt-get install mosquitto-clients)"
        log(f"[limit] skipped: {msg}")
        return {"skipped": msg}
    cdir = ctx.workdir / "limit-mosquitto_sub"
    cdir.mkdir(parents=True, exist_ok=True)
    log(f"[limit] mosquitto_sub QoS 1, {count:,} messages …")
    out = (cdir / "sub.out").open("wb")
    sub = subprocess.Popen(
        [binary, "-h", "127.0.0.1", "-p", str(ctx.mq.port), "-i", "bench-limit-sub", "-q", "1", "-C", str(count),
         "-t", "semon/v1/+/+/status"],
        stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    time.sleep(1.0)
    t0 = time.time()
    load = start_load(ctx, cdir, run_seed=9_000, count=count, settle=False)
    mq_cpu0 = cpu_seconds(ctx.mq.proc.pid) if ctx.mq.proc else None
    try:
        sub.wait(600)
    except subprocess.TimeoutExpired:
        sub.kill()
        return {"skipped": "mosquitto_sub did not receive every message within 600 s"}
    t1 = time.time()
    out.close()
    mq_cpu1 = cpu_seconds(ctx.mq.proc.pid) if ctx.mq.proc else None
    if load.proc.popen:
        load.proc.popen.wait(120)
    summ = load.summary()
    rate = count / (t1 - summ["t_start"])
    res = {
        "messages": count, "rate": round(rate, 1), "seconds": round(t1 - summ["t_start"], 2),
        "publish_rate": summ.get("achieved_rate"),
        "mosquitto_cpu_pct": round((mq_cpu1 - mq_cpu0) / (t1 - t0) * 100, 1) if mq_cpu0 and mq_cpu1 else None,
    }  # fmt: skip
    log(f"[limit] mosquitto_sub: {rate:,.0f} msg/s")
    return res


def _bodies(ctx: Context, points: int, batch: int) -> list[bytes]:
    """Pre-built, gzip-compressed write bodies in semon's own schema (the fleet's replayed statuses)."""
    fl = ctx.fleet
    bodies: list[bytes] = []
    t0 = int(time.time() * 1000) * 1_000_000
    n = len(fl)
    pts: list[Point] = []
    for k in range(points):
        i = k % n
        tr = fl.traces[fl.template_of[i]]
        st = tr.states[k % len(tr.states)]
        kind = fl.kind(i)
        fields: dict[str, Any] = {"seq": k // n + 1}
        for key, v in st.items():
            if v is None:
                continue
            fields[key] = ",".join(map(str, v)) if isinstance(v, list) else v
        dev = fl.device_id(i)
        tags = {"kind": kind, "device_id": dev, "district": "Tianhe", "firm": f"F{i % 5000:04d}"}
        pts.append(Point(f"{kind}_status", tags, fields, t0 + k * 1000, dev))
        if len(pts) == batch:
            bodies.append(gzip.compress(encode_lines(pts), 1))
            pts = []
    if pts:
        bodies.append(gzip.compress(encode_lines(pts), 1))
    return bodies


def influx_write_limit(
    ctx: Context, points: int, batch: int = 5000, connections: tuple[int, ...] = (1, 2), log: Any = print
) -> dict[str, Any]:
    """Points/s InfluxDB writes from pre-built ``batch``-line bodies on 1 and 2 connections."""
    log(f"[limit] InfluxDB raw writes: {points:,} points in {batch}-line batches …")
    bodies = _bodies(ctx, points, batch)
    out: dict[str, Any] = {"points": points, "batch": batch}
    for conns in connections:
        db = f"limit{conns}"
        ctx.influx.recreate(db)
        queue = list(range(len(bodies)))
        lock = threading.Lock()
        errors: list[str] = []

        def worker(db: str = db, queue: list[int] = queue, lock: threading.Lock = lock, errors: list[str] = errors) -> None:  # noqa: E501
            with httpx.Client(base_url=ctx.influx.url, timeout=60) as c:
                while True:
                    with lock:
                        if not queue:
                            return
                        k = queue.pop()
                    r = c.post(
                        "/write", params={"db": db, "precision": "ns"}, content=bodies[k],
                        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
                    )  # fmt: skip
                    if r.status_code != 204:
                        errors.append(f"{r.status_code} {r.text[:200]}")

        ix = ctx.influx.proc
        c0 = cpu_seconds(ix.pid) if ix else None
        t0 = time.time()
        threads = [threading.Thread(target=worker) for _ in range(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.time() - t0
        c1 = cpu_seconds(ix.pid) if ix else None
        out[f"conn{conns}"] = {
            "points_per_s": round(points / dt, 1), "seconds": round(dt, 2), "errors": len(errors),
            "influxd_cpu_pct": round((c1 - c0) / dt * 100, 1) if c0 is not None and c1 is not None else None,
        }  # fmt: skip
        log(f"[limit] InfluxDB, {conns} connection(s): {points / dt:,.0f} points/s")
        ctx.influx.query(f'DROP DATABASE "{db}"')
    return out

