"""Grafana boards: the committed JSON is what dashboards/build.py generates, it is well formed and
provisioned the way docker-compose mounts it, and every query of every board — panels, annotations,
variables — runs on a real InfluxDB filled by the simulator through the real collector and
returns data.

Grafana's macros and variables are substituted the way Grafana does it: ``$timeFilter`` becomes
``time >= {from}ms and time <= {to}ms`` for the panel's time range (its own relative time when
it has one), ``$__interval`` the datasource's minimum interval, ``${__to}`` the range end in ms,
constants their value, and query variables a value their own query returned.

Two series are written by this test rather than by the pipeline, because other parts of semon
produce them: ``alarm_event`` (the alarm engine's transitions, here derived from the alarms the
collector really raised, plus rescue steps) and ``maintenance_plan`` (the 3+2 planner's output).
Their shape is the contract in docs/boards.md.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from semon.config import Settings
from semon.dashboards.push import DATASOURCE_NAME, DATASOURCE_UID, datasource_model, sync_device_info
from semon.ingest.collector import Collector
from semon.rules.hazards import service as hazards
from semon.simulators.fleet import MEDIA, Fleet, build_fleet
from semon.simulators.run import SimulationConfig, run_simulation
from semon.store.access import SYSTEM, Access
from semon.store.db import Database
from semon.store.influx import InfluxStore
from semon.store.models import Alarm, AlarmEvent
from semon.store.registry import import_devices_csv
from semon.store.telemetry import Point
from tests.helpers import publish_all, wait_until
from tests.services import REPO, Influx, Mosquitto, drop_postgres_database, free_port, postgres_database, unavailable

JSON_DIR = REPO / "dashboards" / "json"
PROVISIONING = REPO / "dashboards" / "provisioning"
GRAFANA_GLOBALS = {"timeFilter", "__interval", "__interval_ms", "__from", "__to", "__range", "interval"}
TAGS = {"kind", "device_id", "district", "firm", "type", "severity", "mode"}  # docs/boards.md
MIN_INTERVAL = "10s"  # jsonData.timeInterval of the datasource
ELEVATORS, VESSELS, SEED = 30, 8, 11
MINUTE_NS = 60_000_000_000
DAY_MS = 86_400_000


def load_build() -> ModuleType:
    """dashboards/build.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("semon_dashboards_build", REPO / "dashboards" / "build.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def boards() -> dict[str, dict[str, Any]]:
    """Committed boards by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(JSON_DIR.glob("*.json"))}


def all_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Panels, including those nested in collapsed rows."""
    for p in board["panels"]:
        yield p
        yield from p.get("panels", [])


@dataclass(frozen=True)
class Query:
    """One query of a board and where it comes from."""

    board: str  # file name
    where: str  # "panel 'Floor' A", "annotation 'Alarms'", "variable device"
    text: str
    time_from: str  # relative start of the range it runs with
    vessel: bool  # the panel is about a vessel: $device must be a vessel


def board_queries() -> list[Query]:
    """Every InfluxQL query in every committed board."""
    out: list[Query] = []
    for name, b in boards().items():
        rng = b["time"]["from"]
        for p in all_panels(b):
            targets = p.get("targets", [])
            vessel = any("vessel_status" in t.get("query", "") for t in targets)
            for t in targets:
                where = f"panel {p['title']!r} {t['refId']}"
                out.append(Query(name, where, t["query"], p.get("timeFrom", rng), vessel))
        for a in b["annotations"]["list"]:
            if "target" in a:
                out.append(Query(name, f"annotation {a['name']!r}", a["target"]["query"], rng, False))
        for v in b["templating"]["list"]:
            if v["type"] == "query":
                out.append(Query(name, f"variable {v['name']}", v["query"], rng, False))
    return out


# ----------------------------------------------------------------------------- static checks
def test_committed_boards_are_the_generated_ones():
    build = load_build()
    generated = build.generate()
    assert set(generated) == set(boards()), "dashboards/json holds files build.py does not generate (or misses some)"
    for name, text in generated.items():
        assert (JSON_DIR / name).read_text() == text, f"{name} is stale: run python dashboards/build.py"
    assert build.main(["--check"]) == 0


def test_build_check_detects_a_stale_file(tmp_path: Path):
    build = load_build()
    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--check", "--out", str(tmp_path)]) == 0
    victim = next(tmp_path.glob("*.json"))
    victim.write_text(victim.read_text().replace('"semon"', '"other"', 1))
    assert build.main(["--check", "--out", str(tmp_path)]) == 1


def test_boards_are_well_formed():
    bs = boards()
    assert {"regulator-fleet.json", "firm.json", "device.json"} <= set(bs)
    uids = [b["uid"] for b in bs.values()]
    titles = [b["title"] for b in bs.values()]
    assert len(set(uids)) == len(uids) and all(uids), uids
    assert len(set(titles)) == len(titles), titles
    ds_uid = yaml.safe_load((PROVISIONING / "datasources" / "semon.yml").read_text())["datasources"][0]["uid"]
    assert ds_uid == DATASOURCE_UID
    for name, b in bs.items():
        assert b["id"] is None, f"{name}: a fixed id would clash with the target Grafana's ids"
        panels = list(all_panels(b))
        ids = [p["id"] for p in panels]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        ptitles = [p["title"] for p in panels]
        assert len(set(ptitles)) == len(ptitles), f"{name}: duplicate panel titles"
        defined = {v["name"] for v in b["templating"]["list"]}
        for p in panels:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, (name, p["title"], g)
            if p["type"] == "row":
                continue
            assert p.get("datasource") == {"type": "influxdb", "uid": ds_uid}, (name, p["title"])
            refs = [t["refId"] for t in p["targets"]]
            assert p["targets"] and len(set(refs)) == len(refs), (name, p["title"])
            for t in p["targets"]:
                assert t["datasource"] == {"type": "influxdb", "uid": ds_uid}, (name, p["title"])
                assert t["rawQuery"] is True and t["query"].strip(), (name, p["title"])
                assert t["resultFormat"] in ("time_series", "table"), (name, p["title"])
            for tr in p.get("transformations", []):
                if tr["id"] == "configFromData":
                    assert tr["options"]["configRefId"] in refs, (name, p["title"])
        for a in b["annotations"]["list"]:
            if "target" in a:
                assert a["datasource"] == {"type": "influxdb", "uid": ds_uid}, (name, a["name"])
        for v in b["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"] == {"type": "influxdb", "uid": ds_uid}, (name, v["name"])
        # Every $variable a query uses is defined on the board or is one of Grafana's own.
        for q in (q for q in board_queries() if q.board == name):
            used = set(re.findall(r"\$\{?(\w+)", q.text))
            assert used <= defined | GRAFANA_GLOBALS, (name, q.where, used - defined - GRAFANA_GLOBALS)
            # GROUP BY only on tags: grouping by a field silently yields one series with an empty tag.
            for clause in re.findall(r"GROUP BY ([^)]*?)(?: fill\(|\)|$)", q.text):
                for key in re.findall(r'"(\w+)"', clause):
                    assert key in TAGS, (name, q.where, key)
            # InfluxQL only: nothing of Flux (which InfluxDB 3 does not have).
            assert "|>" not in q.text and "from(bucket" not in q.text, (name, q.where)
    assert any(v["name"] == "firm" for v in bs["firm.json"]["templating"]["list"])
    assert any(v["name"] == "device" for v in bs["device.json"]["templating"]["list"])


def test_provisioning_lines_up_with_compose_volumes():
    exe = shutil.which("docker-compose")
    if exe is None:
        unavailable("docker-compose not installed (apt-get install docker-compose)")
    out = subprocess.run([exe, "config"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    grafana = yaml.safe_load(out.stdout)["services"]["grafana"]
    mounts: dict[str, Path] = {}
    for v in grafana["volumes"]:
        if isinstance(v, str):
            src, dst = v.split(":")[:2]
        else:
            src, dst = v["source"], v["target"]
        if src.startswith("/"):
            mounts[dst] = Path(src)

    def host_path(container: str) -> Path:
        for dst, src in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if container == dst or container.startswith(dst + "/"):
                return src / container[len(dst) :].lstrip("/")
        raise AssertionError(f"{container} is not on a bind mount of the grafana service: {mounts}")

    prov = host_path("/etc/grafana/provisioning")
    assert prov.resolve() == PROVISIONING.resolve()
    providers = yaml.safe_load((prov / "dashboards" / "semon.yml").read_text())["providers"]
    dash_dir = host_path(providers[0]["options"]["path"])
    assert dash_dir.resolve() == JSON_DIR.resolve()
    assert {p.name for p in dash_dir.glob("*.json")} == set(boards())
    assert host_path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]).is_file()
    ds = yaml.safe_load((prov / "datasources" / "semon.yml").read_text())["datasources"][0]
    assert ds["url"].split("//")[1].split(":")[0] in yaml.safe_load(out.stdout)["services"], "datasource host"
    assert "${SEMON_INFLUX_TOKEN}" in ds["secureJsonData"]["httpHeaderValue1"]
    assert "SEMON_INFLUX_TOKEN" in grafana["environment"]
    # The datasource `semon dashboards push` creates is the provisioned one.
    pushed = datasource_model("http://influxdb:8086", "semon", "t")
    assert (ds["name"], ds["uid"], ds["type"], ds["access"]) == (
        DATASOURCE_NAME, DATASOURCE_UID, pushed["type"], pushed["access"],
    )  # fmt: skip
    for k, v in pushed["jsonData"].items():
        assert ds["jsonData"][k] == v, k


# ------------------------------------------------------------------ the data every query needs
TZ = "Asia/Shanghai"


@dataclass
class Filled:
    """InfluxDB after a simulated run, and the values chosen for the board variables."""

    store: InfluxStore
    firm: str
    elevator: str
    vessel: str
    now_ms: int


def _choose(fleet: Fleet) -> tuple[str, str, str, str]:
    """A vessel with level and gas sensors, its firm, and two elevators of that firm."""
    def sensors(d: Any) -> bool:
        return d.vessel is not None and MEDIA[d.vessel.medium].liquefied and MEDIA[d.vessel.medium].flammable

    vessel = next(d for d in fleet if sensors(d))
    firm = vessel.firm.firm_id
    lifts = [d.device_id for d in fleet if d.kind == "elevator" and d.firm.firm_id == firm]
    assert len(lifts) >= 2, "the seed must give the vessel's firm two elevators"
    return firm, lifts[0], lifts[1], vessel.device_id


def _alarm_points(db: Database, store: InfluxStore, fleet: Fleet, rescued: str, now_ms: int) -> list[Point]:
    """alarm_event as the alarm engine writes it: the real transitions plus rescue steps.

    Transitions the collector already wrote to InfluxDB are not written again.
    """

    def point(dev: str, t_ms: int, event: str, alarm_id: int, type_: str, severity: str, msg: str,
              actor: str = "rules") -> Point:  # fmt: skip
        d = fleet.by_id[dev]
        tags = {"kind": d.kind, "device_id": dev, "district": d.district, "firm": d.firm.firm_id,
                "type": type_, "severity": severity}  # fmt: skip
        fields = {"event": event, "alarm_id": alarm_id, "message": msg, "actor": actor}
        # Distinct nanoseconds, as the collector's point time gives each transition (docs/storage.md).
        return Point("alarm_event", tags, fields, t_ms * 1_000_000 + next(ns), dev)

    ns = itertools.count(1)

    with db.session() as s:
        rows = s.execute(select(AlarmEvent, Alarm).join(Alarm, Alarm.id == AlarmEvent.alarm_id)).all()
    assert {a.type for _, a in rows} >= {"trapped_passenger", "overpressure"}, "the injected faults raised alarms"
    stored = {(int(r["alarm_id"]), r["event"]) for r in store.rows('SELECT "alarm_id", "event" FROM "alarm_event"')}
    pts = [point(a.device_id, e.ts, e.event, a.id, a.type, e.severity, a.message)
           for e, a in rows if (a.id, e.event) not in stored]  # fmt: skip
    next_id = max(a.id for _, a in rows) + 1
    minute = 60_000
    others = [d.device_id for d in fleet if d.kind == "elevator" and d.device_id != rescued][:3]
    # Two finished rescues earlier today (one arrival after 31 min: a breach), one in progress.
    steps = [
        (others[0], [("raised", -50), ("dispatched", -48), ("arrived", -19), ("released", -12), ("cleared", -11)]),
        (others[1], [("raised", -40), ("dispatched", -39), ("arrived", -28), ("released", -22), ("cleared", -22)]),
        (rescued, [("raised", -2), ("dispatched", -1)]),
    ]
    for dev, seq in steps:
        for event, at in seq:
            pts.append(point(dev, now_ms + at * minute, event, next_id, "trapped_passenger", "critical",
                             f"passenger trapped in {dev}", "rules" if event in ("raised", "cleared") else "firm"))
        next_id += 1
    # Open alarms of the other severities (the alarm engine's catalog).
    pts.append(point(others[2], now_ms - 3 * minute, "raised", next_id, "door_fault", "minor", "door close fault"))
    pts.append(point(rescued, now_ms - 3 * minute, "raised", next_id + 1, "stopped_outside_door_zone", "major",
                     "car stopped outside the door zone"))  # fmt: skip
    return pts


MODES = ("standard_15", "on_demand_30", "on_demand_90")
CLASSES = ("half_month", "quarterly", "half_year", "yearly")


def _plan_points(fleet: Fleet, at_ms: int, stale: bool = False) -> list[Point]:
    """maintenance_plan as the 3+2 planner writes it after a run: counts per firm, district, kind, mode.

    ``stale`` gives an older snapshot with other numbers, which the boards must ignore.
    """
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, d in enumerate(fleet):
        key = (d.kind, d.firm.firm_id, d.district, MODES[i % 3] if d.kind == "elevator" else "")
        groups.setdefault(key, []).append(i)
    pts = []
    for (kind, firm, district, mode), members in sorted(groups.items()):
        n = len(members)
        tags = {"kind": kind, "firm": firm, "district": district, "mode": mode}
        fields: dict[str, Any] = {
            "devices": n + 5 if stale else n,
            "inspection_overdue": sum(i % 5 == 0 for i in members),
            "inspection_due_soon": sum(i % 5 == 1 for i in members),
            "inspection_unknown": 0,
        }
        if kind == "elevator":
            fields["mean_score"] = {"standard_15": 55.0, "on_demand_30": 74.5, "on_demand_90": 88.0}[mode]
            for k, c in enumerate(CLASSES):
                fields[f"overdue_{c}"] = sum((i + k) % 4 == 0 for i in members)
                fields[f"due_soon_{c}"] = sum((i + k) % 4 == 1 for i in members)
        pts.append(Point("maintenance_plan", tags, fields, at_ms * 1_000_000, f"{kind}/{firm}/{district}/{mode}"))
    return pts


def _hazard_points(db: Database, lift: str, vessel: str, now_ms: int) -> list[Point]:
    """hazard_indicators as the hazard scan writes it, from real hazard records and an accident."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    with db.session() as s:
        access = Access(s, SYSTEM)
        hazards.record(access, hazards.Finding(lift, "EL-M-DOORLOCK-BYPASS", "门锁短接"), "inspector", TZ, now)
        old = now - timedelta(days=20)  # found and left open past its 15-day deadline
        hazards.record(access, hazards.Finding(vessel, "PV-M-SAFETY-ACCESSORY-FAILED", at=old), "inspector", TZ, now)
        hazards.record_accident(access, lift, now.date(), 1, 0, "", "city", now)
        s.commit()
    # The period starts 30 days back, so both hazards are in it whatever today's date.
    return hazards.indicator_points(db, now, TZ, since=(now - timedelta(days=30)).date())


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    tmp = tmp_path_factory.mktemp("boards")
    mq, ix = Mosquitto(tmp / "mosquitto"), Influx(tmp / "influx")
    mq.start()
    ix.start()
    url, dbname = postgres_database()
    db = Database(url)
    settings = Settings(mqtt_url=mq.url, influx_url=ix.url, influx_db="semon", db_url=url, data_dir=tmp / "data",
                        mqtt_client_id=f"semon-boards-{free_port()}")  # fmt: skip
    store = InfluxStore(ix.url, "semon")
    collector = None
    try:
        fleet = build_fleet(ELEVATORS, VESSELS, SEED)
        firm, lift, lift2, vessel = _choose(fleet)
        import_devices_csv(db, fleet.write_registry_csv(tmp / "registry.csv"))
        collector = Collector(settings, db, InfluxStore(ix.url, "semon"))
        collector.start()
        assert collector.connected.wait(10)
        assert sync_device_info(db, store) == ELEVATORS + VESSELS
        # Terminal events (the simulator publishes status only): a door fault raised and reset.
        now = int(time.time() * 1000)
        events = [
            (now - 5000, 900_001, {"code": 2, "active": True, "text": "door close fault"}),
            (now - 2000, 900_002, {"code": 2, "active": False, "text": "door close fault reset"}),
            (now - 1000, 900_003, {"code": 43, "active": True, "scheme": "gbt24476"}),
        ]
        publish_all(settings, [(f"semon/v1/elevator/{lift}/event", json.dumps({"ts": t, "seq": s, **p}).encode())
                               for t, s, p in events])  # fmt: skip
        res = run_simulation(SimulationConfig(
            host="127.0.0.1", port=int(mq.url.rsplit(":", 1)[1]), elevators=ELEVATORS, vessels=VESSELS, rate=60,
            duration_s=10, speed=4, seed=SEED, faults=[f"trapped:{lift}@2s+26s", f"overpressure:{vessel}@4s+8s"],
            client_id="boards-sim",
        ))  # fmt: skip
        assert res.all_acked
        # Some terminals go offline (retained flag), so both online states exist.
        offline = [d.device_id for d in fleet if d.kind == "elevator"][-3:]
        publish_all(settings, [(f"semon/v1/elevator/{d}/online", b"0") for d in offline], client_id="boards-off")
        stored = lambda: sum(  # noqa: E731
            int(r["count"]) for r in store.rows('SELECT count("seq") FROM "elevator_status", "vessel_status"')
        )
        wait_until(lambda: stored() >= res.total_messages, 60, "every status stored")
        wait_until(lambda: len(store.rows('SELECT "online" FROM "device_online" WHERE "online" = false')) >= 3, 20,
                   "offline flags stored")  # fmt: skip
        def cleared() -> int:
            with db.session() as s:
                return len(s.scalars(select(Alarm).where(~Alarm.active)).all())

        wait_until(lambda: cleared() >= 2, 30, "alarms cleared")
        time.sleep(2 * settings.batch_max_age_s)  # a collector that writes alarm_event itself has done so
        now = int(time.time() * 1000)
        store.write(_alarm_points(db, store, fleet, lift2, now))
        store.write(_plan_points(fleet, now - 3_600_000, stale=True))
        store.write(_plan_points(fleet, now - 60_000))
        store.write(_hazard_points(db, lift, vessel, now))
        yield Filled(store, firm, lift, vessel, int(time.time() * 1000))
    finally:
        if collector is not None:
            collector.stop()
        store.close()
        db.dispose()
        drop_postgres_database(dbname)
        ix.stop()
        mq.stop()


# ---------------------------------------------------------------------------- substitution
_REL = re.compile(r"^now-(\d+)([smhdwy])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS, "y": 365 * DAY_MS}


def range_start(rel: str, now_ms: int) -> int:
    """Start of a Grafana relative range (``now-6h``, ``now/d``) in epoch ms."""
    if rel == "now/d":
        day = datetime.fromtimestamp(now_ms / 1000, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        midnight = int(day.timestamp() * 1000)
        # Just after midnight the test's data (minutes old) belongs to yesterday; look back a
        # little so the outcome does not depend on the hour the test runs.
        return min(midnight, now_ms - 3_600_000)
    m = _REL.match(rel)
    assert m, f"relative time {rel!r} not understood by the test"
    return now_ms - int(m[1]) * _UNIT_MS[m[2]]


def render(q: Query, filled: Filled, variables: dict[str, str]) -> str:
    """The query as Grafana sends it to InfluxDB."""
    now = int(time.time() * 1000)
    start = range_start(q.time_from, now)
    values = {
        **variables,
        "timeFilter": f"time >= {start}ms and time <= {now}ms",
        "__interval": MIN_INTERVAL,
        "__interval_ms": "10000",
        "interval": MIN_INTERVAL,
        "__from": str(start),
        "__to": str(now),
        "__range": f"{(now - start) // 1000}s",
        "device": filled.vessel if q.vessel else filled.elevator,
        "firm": filled.firm,
    }

    def sub(m: re.Match[str]) -> str:
        name = m[1] or m[2]
        assert name in values, f"{q.where}: no value for ${name}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, q.text)


def board_constants(name: str) -> dict[str, str]:
    """Constant variables of a board."""
    return {v["name"]: v["query"] for v in boards()[name]["templating"]["list"] if v["type"] == "constant"}


QUERIES = board_queries()


@pytest.mark.parametrize("q", QUERIES, ids=[f"{q.board}:{q.where}" for q in QUERIES])
def test_every_board_query_returns_data(filled: Filled, q: Query):
    sent = render(q, filled, board_constants(q.board))
    series = filled.store.influxql(sent)  # raises InfluxError on any error InfluxDB reports
    values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
    assert values, f"{q.board} {q.where}: no data for\n{sent}"
    if q.where.startswith("variable "):
        # The value the test substitutes must be one the variable offers.
        wanted = {"firm": filled.firm, "device": filled.elevator}[q.where.split()[1]]
        assert wanted in values, (wanted, values)


def _run(filled: Filled, board: str, where: str) -> list[dict[str, Any]]:
    q = next(q for q in QUERIES if q.board == board and q.where == where)
    return filled.store.influxql(render(q, filled, board_constants(board)))


def _values(series: list[dict[str, Any]], column: str) -> dict[str, Any]:
    """``{series label: value}`` of a one-row-per-series result."""
    out = {}
    for s in series:
        label = ",".join((s.get("tags") or {}).values()) or s["name"]
        out[label] = s["values"][0][s["columns"].index(column)]
    return out


def test_board_queries_compute_what_they_claim(filled: Filled):
    """Beyond "returns data": a few panels checked against numbers known from the test data."""
    major = _run(filled, "regulator-fleet.json", "panel 'Major hazards this year' A")[0]
    got = dict(zip(major["columns"], major["values"][0], strict=True))
    assert (got["found"], got["overdue"], got["closed on time"]) == (2, 1, 0), got
    grades = _run(filled, "regulator-fleet.json", "panel 'Devices by risk grade' A")[0]
    assert sum(v for v in grades["values"][0][1:]) == ELEVATORS + VESSELS
    reporting = _values(_run(filled, "regulator-fleet.json", "panel 'Devices reporting' A"), "devices")
    assert reporting == {"elevator": ELEVATORS, "vessel": VESSELS}
    # Only the newest maintenance snapshot of each group counts (the stale one has +5 per group).
    modes = _values(_run(filled, "regulator-fleet.json", "panel 'Elevators by maintenance mode' A"), "elevators")
    assert set(modes) == set(MODES) and sum(modes.values()) == ELEVATORS, modes
    # Rescues: arrivals after 31 and 12 minutes; the collector's own trapped alarm has no arrival.
    rescue = lambda ref: _values(_run(filled, "regulator-fleet.json", f"panel 'Rescue times' {ref}"), "v")  # noqa: E731
    assert rescue("A") == {"alarm_event": 21.5}
    assert rescue("B") == {"alarm_event": (7 + 6) / 2}
    assert rescue("D") == {"alarm_event": 1}
    progress = _run(filled, "firm.json", "panel 'Rescues open' A")
    assert _values(progress, "rescues") == {"alarm_event": 1}
    open_list = _run(filled, "firm.json", "panel 'Active alarms' A")
    types = {s["tags"]["type"] for s in open_list}
    assert {"trapped_passenger", "stopped_outside_door_zone"} <= types, types
    assert all(s["values"][0][s["columns"].index("last event")] != "cleared" for s in open_list)
