"""The run's tables (Markdown) from its results: one row per case, then the headline comparison."""

from __future__ import annotations

from typing import Any


def _n(v: float | None, unit: str = "") -> str:
    return "–" if v is None else f"{v:,.0f}{unit}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if not a or not b else f"{a / b:.2f}×"


def _cpu(res: dict[str, Any]) -> str:
    cpu = res.get("cpu_pct") or {}
    sut = sum(v for k, v in cpu.items() if k.startswith(("collector", "node-red")))
    parts = [f"SUT {sut:.0f}"]
    for k in ("mosquitto", "influxd", "loadgen"):
        if k in cpu:
            parts.append(f"{k} {cpu[k]:.0f}")
    return " / ".join(parts)


def _rss(res: dict[str, Any]) -> str:
    rss = res.get("peak_rss_mb") or {}
    sut = [v for k, v in rss.items() if k.startswith(("collector", "node-red"))]
    return _n(max(sut) if sut else None)


def _lat(res: dict[str, Any]) -> str:
    a = res.get("alarms") or {}
    lat = a.get("latency_ms") or {}
    if not a.get("faults"):
        return "–"
    return f"{_n(lat.get('p50'))} / {_n(lat.get('p95'))} / {_n(lat.get('p99'))} ({a['detected']}/{a['faults']})"


def _dups(a: dict[str, Any]) -> str:
    """Duplicate / other alarms, and the transitions received again (same ``event_id``), if any."""
    text = f"{a.get('duplicates', '–')} / {a.get('alarms_without_fault', '–')}"
    return text + (f" ({a['redelivered']} redelivered)" if a.get("redelivered") else "")


def case_rows(cases: list[dict[str, Any]]) -> str:
    """One row per case."""
    head = (
        "| case | system | load | published msg/s | accepted msg/s (points/s) | lost "
        "| backlog growth / max (broker) | drain s | alarm latency p50 / p95 / p99 ms (detected) "
        "| dup / other alarms | CPU % | peak RSS MB | verdict |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in cases:
        if r.get("kind") == "level":
            load = f"{r['target_rate']:,.0f}/s × {r['duration_s']:.0f} s"
            verdict = "sustained" if r.get("sustained") else "not sustained"
            acc = _n(r.get("accepted_rate"))
        elif r.get("kind") == "burst":
            load = f"burst {r['count']:,}"
            verdict = f"{_n(r.get('end_to_end_rate'))} msg/s end to end"
            acc = _n(r.get("end_to_end_rate"))
        else:
            load = f"SIGKILL + restart, {r['count']:,}"
            verdict = f"drained {r.get('restart_to_drained_s')} s after restart"
            acc = "–"
        b = r.get("backlog") or {}
        a = r.get("alarms") or {}
        lost = r["loss"]["lost"]
        rows.append(
            f"| {r['case']} | {r['system']} | {load} | {_n(r.get('published_rate'))} | {acc} | "
            f"**{lost:,}** of {r['loss']['published']:,} | {_n(b.get('growth_msgs'))} / {_n(b.get('max_msgs'))} "
            f"({_n(b.get('broker_store_max'))}) | {r.get('drain_s') if r.get('drain_s') is not None else '–'} | "
            f"{_lat(r)} | {_dups(a)} | {_cpu(r)} | {_rss(r)} | "
            f"{verdict} |"
        )
    return head + "\n".join(rows) + "\n"


def headline(fleet: dict[str, Any], limits: dict[str, Any]) -> str:
    """The comparison table of one fleet: sustained rates, ratios, burst and restart losses, limits."""
    results = fleet
    s = results.get("searches", {})
    sem = s.get("semon", {})
    nrb = s.get("nodered-batch500", {})
    nrp = s.get("nodered-permsg", {})
    sub = (limits.get("mosquitto_sub") or {}).get("rate")
    ix = (fleet.get("limits") or {}).get("influx") or {}
    ix1 = (ix.get("conn1") or {}).get("points_per_s")
    ix2 = (ix.get("conn2") or {}).get("points_per_s")
    sem_rate = sem.get("max_sustained_rate")
    sem_acc = sem.get("max_sustained_accepted")

    def cap(x: dict[str, Any]) -> str:
        if not x:
            return "not run"
        if x.get("max_sustained_rate") is None:
            return f"none of the levels (first failed: {_n(x.get('first_failed_rate'))})"
        more = "" if x.get("first_failed_rate") is None else f", {_n(x['first_failed_rate'])} not"
        top = " (highest level tried)" if x.get("ceiling_reached") else ""
        return f"**{_n(x['max_sustained_rate'])}**{top}{more}"

    bursts = {r["system"]: r for r in results.get("cases", []) if r.get("kind") == "burst"}
    restarts = {r["system"]: r for r in results.get("cases", []) if r.get("kind") == "restart"}

    def loss(d: dict[str, dict[str, Any]], name: str) -> str:
        r = d.get(name)
        if not r:
            return "not run"
        lost = r["loss"]["lost"]
        pctl = lost / r["loss"]["published"] * 100 if r["loss"]["published"] else 0
        return f"{lost:,} lost ({pctl:.1f} %)"

    lines = [
        f"| {fleet['devices']:,} devices: figure (same run, same load, same checks) | value | ratio |",
        "|---|---|---|",
        f"| semon sustained, QoS 1, 0 lost (msg/s) | {cap(sem)} | – |",
        f"| Node-RED batched (join 500) sustained (msg/s) | {cap(nrb)} | semon / it: "
        f"{_ratio(sem_rate, nrb.get('max_sustained_rate'))} |",
        f"| Node-RED per-message sustained (msg/s) | {cap(nrp)} | semon / it: "
        f"{_ratio(sem_rate, nrp.get('max_sustained_rate'))} |",
        f"| broker limit: `mosquitto_sub` QoS 1 (msg/s) | {_n(sub)} | semon / it: {_ratio(sem_acc, sub)} |",
        f"| InfluxDB limit: this fleet's series, pre-built 5,000-line batches (points/s), 1 / 2 connections "
        f"| {_n(ix1)} / {_n(ix2)} "
        f"| semon points/s / it: {_ratio(sem_acc, ix1)} / {_ratio(sem_acc, ix2)} |",
    ]
    lat = results.get("latency_level")
    if lat:
        lines.append(
            f"| semon alarm latency at {lat['target_rate']:,.0f} msg/s, p50 / p95 / p99 (ms) | {_lat(lat)} | – |"
        )
    for name in ("semon", "nodered-batch500", "nodered-permsg"):
        if name in bursts or name in restarts:
            lines.append(
                f"| {name}: burst {_n((bursts.get(name) or {}).get('count'))} / restart with backlog | "
                f"{loss(bursts, name)} / {loss(restarts, name)} | – |"
            )
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, Any]) -> str:
    """The whole report."""
    env = results.get("environment", {})
    git = env.get("git") or {}
    out = [
        f"### Run {results.get('started', '')}\n",
        f"Command: `{results.get('command', '')}`\n",
        f"Machine: {env.get('cpus')} CPUs, 1-min load average before the run {env.get('load_before')}, "
        f"after {env.get('load_after')}; {env.get('versions', '')}; commit {git.get('commit')} "
        f"(pipeline sources {git.get('sources_sha256')}{', uncommitted changes' if git.get('dirty') else ''})\n",
    ]
    for fleet in results.get("fleets", []):
        out += ["", headline(fleet, results.get("limits") or {}), "", case_rows(fleet.get("cases", []))]
    skipped = results.get("skipped") or []
    if skipped:
        out.append("Skipped: " + "; ".join(skipped) + "\n")
    return "\n".join(out)
