"""Grafana boards as code: the single source of ``dashboards/json/*.json``.

    python dashboards/build.py          # (re)write the JSON files
    python dashboards/build.py --check  # exit 1 when a committed file differs (CI runs the same check)

Every query is **InfluxQL** on the v1-compatible API, so the boards work on InfluxDB 1.x, 2.x
(DBRP mapping) and 3.x alike — no Flux. Only functions InfluxDB 3 implements are used
(``last``, ``count``, ``mean``, ``max``, ``elapsed``, ``difference``, subqueries, ``SHOW TAG
VALUES``; no ``SHOW SERIES``, ``SAMPLE``, ``INTEGRAL``, ``SLIMIT``). The measurements and the
fields the boards read are listed in docs/boards.md; ``tests/dashboards/test_dashboards.py`` runs every
query below against a real InfluxDB filled by the simulator through the collector.

Conventions the queries rely on (docs/boards.md, "What the boards read"):

- ``alarm_event``: one point per alarm transition. An alarm is open while the newest of its
  lifecycle events (everything except the rescue steps ``dispatched`` / ``arrived`` /
  ``released``) is not ``cleared``; the severity tag of that newest point is its current severity.
- ``maintenance_plan``: the 3+2 planner's snapshot after each run (at least every
  ``$plan_window``), one point per firm, district, kind and mode with counts; the boards take
  the newest point of each group and add them up.
- ``device_info``: registry ratings (set pressure, design temperature…) written by
  ``semon dashboards push`` so limits can be drawn next to live values.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "json"
DATASOURCE_UID = "semon-influx"  # the provisioned datasource (provisioning/datasources/semon.yml)
DS = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39  # Grafana 11.x dashboard schema
GRID_WIDTH = 24

# Rescue steps are recorded on the trapped-passenger alarm but do not open or close it.
LIFECYCLE = "\"event\" != 'dispatched' AND \"event\" != 'arrived' AND \"event\" != 'released'"
SEVERITY_COLORS = {"critical": "red", "major": "orange", "minor": "yellow"}
# The planner's modes (rules/maintenance/default_policy.toml): standard 15-day cycle, on demand 30 / 90.
MODE_COLORS = {"standard_15": "red", "on_demand_30": "yellow", "on_demand_90": "green"}
ITEM_CLASSES = ("half_month", "quarterly", "half_year", "yearly")
RISK_COLORS = {"A": "blue", "B": "yellow", "C": "orange", "D": "red"}


def sql(text: str) -> str:
    """One-line InfluxQL from an indented literal (keeps the Python readable, the JSON compact)."""
    return " ".join(text.split())


# --------------------------------------------------------------------------- query library
def open_alarms(where: str = "", group: Iterable[str] = (), fields: str = "") -> str:
    """Subquery: newest lifecycle event (and its severity) per device and alarm type."""
    cond = f"{where} AND " if where else ""
    tags = ", ".join(f'"{g}"' for g in ("device_id", "type", *group))
    extra = f", {fields}" if fields else ""
    return sql(f"""
        SELECT last("event") AS "event", "severity" AS "sev"{extra} FROM "alarm_event"
        WHERE {cond}{LIFECYCLE} AND time > now() - $alarm_window GROUP BY {tags}""")


def open_alarm_count(severity: str | None = None, where: str = "", by: str | None = None) -> str:
    """Number of open alarms, optionally of one severity and/or per tag ``by``."""
    sev = f" AND \"sev\" = '{severity}'" if severity else ""
    group = f' GROUP BY "{by}"' if by else ""
    inner = open_alarms(where, (by,) if by else ())
    return f'SELECT count("event") AS "open" FROM ({inner}) WHERE "event" != \'cleared\'{sev}{group}'


def open_alarm_list(where: str = "") -> str:
    """Open alarms with their newest transition (table)."""
    inner = open_alarms(where, ("district", "firm"), '"message", "alarm_id"')
    return sql(f"""
        SELECT "sev" AS "severity", "event" AS "last event", "message", "alarm_id" FROM ({inner})
        WHERE "event" != 'cleared' GROUP BY "device_id", "type", "district", "firm\"""")


def reporting(where: str = "") -> str:
    """Devices with a status message within ``$report_window`` (3 × keep-alive), per kind."""
    cond = f"{where} AND " if where else ""
    return sql(f"""
        SELECT count("seq") AS "devices" FROM (SELECT last("seq") AS "seq" FROM "elevator_status", "vessel_status"
        WHERE {cond}time > now() - $report_window GROUP BY "device_id", "kind") GROUP BY "kind\"""")


def online_flag(value: bool, by: str) -> str:
    """Terminals whose newest online flag is ``value``, per tag ``by``."""
    flag = "true" if value else "false"
    name = "online" if value else "offline"
    return sql(f"""
        SELECT count("online") AS "{name}" FROM (SELECT last("online") AS "online" FROM "device_online"
        WHERE time > now() - $online_window GROUP BY "device_id", "{by}") WHERE "online" = {flag} GROUP BY "{by}\"""")


def rescue_minutes(start: str, end: str, agg: str, where: str = "", extra: str = "") -> str:
    """Minutes from rescue step ``start`` to ``end`` of the same alarm, aggregated with ``agg``.

    ``elapsed`` gives the time between consecutive points of a device's series; keeping only the
    two steps and the pairs whose ``alarm_id`` did not change (``difference`` = 0) leaves exactly
    the start → end intervals of each alarm (ids grow, so a pair spanning two alarms has d > 0).
    """
    cond = f"{where} AND " if where else ""
    inner = sql(f"""
        SELECT elapsed("alarm_id", 1s) AS "s", difference("alarm_id") AS "d" FROM "alarm_event"
        WHERE {cond}"type" = 'trapped_passenger' AND ("event" = '{start}' OR "event" = '{end}') AND $timeFilter
        GROUP BY "device_id\"""")
    value = 'count("s")' if agg == "count" else f'{agg}("s") / 60'
    # s > 0: the same transition stored twice (two writers) must not count as a 0-minute rescue.
    return f'SELECT {value} AS "v" FROM ({inner}) WHERE "d" = 0 AND "s" > 0{extra}'


def plan_sum(fields: dict[str, str], where: str = "", by: Iterable[str] = ()) -> str:
    """Sum over the planner's groups of the newest value of each field (``{field: alias}``).

    ``maintenance_plan`` holds one point per firm, district, kind and mode per planning run; the
    newest point of every group within ``$plan_window`` is the current state of that group.
    """
    cond = f"{where} AND " if where else ""
    inner = ", ".join(f'last("{f}") AS "{f}"' for f in fields)
    outer = ", ".join(f'sum("{f}") AS "{a}"' for f, a in fields.items())
    group = ", ".join(f'"{t}"' for t in by)
    return sql(f"""
        SELECT {outer} FROM (SELECT {inner} FROM "maintenance_plan" WHERE {cond}time > now() - $plan_window
        GROUP BY "kind", "firm", "district", "mode"){f" GROUP BY {group}" if group else ""}""")


def hazard_sum(fields: dict[str, str]) -> str:
    """City-wide sum over districts of the newest ``hazard_indicators`` value of each field.

    The hazard scan writes one point per district every ``SEMON_HAZARD_BOARD_S`` (this local
    year so far); the newest point of each district within ``$plan_window`` is its current state.
    """
    inner = ", ".join(f'last("{f}") AS "{f}"' for f in fields)
    outer = ", ".join(f'sum("{f}") AS "{a}"' for f, a in fields.items())
    return sql(f"""
        SELECT {outer} FROM (SELECT {inner} FROM "hazard_indicators" WHERE time > now() - $plan_window
        GROUP BY "district")""")


# ------------------------------------------------------------------------------ builders
def target(query: str, ref: str = "A", fmt: str = "time_series", alias: str | None = None) -> dict[str, Any]:
    """A raw InfluxQL target."""
    t: dict[str, Any] = {"refId": ref, "datasource": DS, "rawQuery": True, "resultFormat": fmt, "query": query}
    if alias:
        t["alias"] = alias
    return t


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    """Absolute thresholds; the first step is the base (value null)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def by_name(name: str, **props: Any) -> dict[str, Any]:
    """A field override matched by display name."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
    }


def color(c: str) -> dict[str, Any]:
    """Fixed colour config."""
    return {"mode": "fixed", "fixedColor": c}


def link(title: str, board_uid: str, var: str) -> list[dict[str, Any]]:
    """A data link opening another board with ``var`` set to the clicked cell, same time range."""
    return [{"title": title, "url": f"/d/{board_uid}?var-{var}=${{__value.raw}}&${{__url_time_range}}"}]


DRILL_DOWN = [
    by_name("device_id", links=link("Device drill-down", "semon-device", "device")),
    by_name("firm", links=link("Firm board", "semon-firm", "firm")),
]


class Board:
    """Collects panels and lays them out left to right, top to bottom, on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._x = 0
        self._y = 0
        self._row_h = 0
        self._next_id = 1

    def _place(self, w: int, h: int) -> dict[str, int]:
        if self._x + w > GRID_WIDTH:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_h = max(self._row_h, h)
        return pos

    def row(self, title: str) -> None:
        """A (non-collapsing) row header starting a new line."""
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        self.panels.append(
            {"id": self._take_id(), "type": "row", "title": title, "collapsed": False, "panels": [],
             "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": self._y}}
        )  # fmt: skip
        self._y += 1

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def add(
        self,
        kind: str,
        title: str,
        description: str,
        targets: list[dict[str, Any]],
        *,
        w: int,
        h: int,
        defaults: dict[str, Any] | None = None,
        overrides: list[dict[str, Any]] | None = None,
        options: dict[str, Any] | None = None,
        transformations: list[dict[str, Any]] | None = None,
        time_from: str | None = None,
    ) -> None:
        """Append a panel of type ``kind``."""
        panel: dict[str, Any] = {
            "id": self._take_id(),
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": self._place(w, h),
            "targets": targets,
            "fieldConfig": {"defaults": defaults or {}, "overrides": overrides or []},
            "options": options or {},
        }
        if transformations:
            panel["transformations"] = transformations
        if time_from:
            panel["timeFrom"] = time_from
        self.panels.append(panel)

    # Panel kinds with the options semon uses everywhere -------------------------------
    def stat(
        self,
        title: str,
        description: str,
        targets: list[dict[str, Any]],
        *,
        w: int = 6,
        h: int = 5,
        unit: str = "none",
        overrides: list[dict[str, Any]] | None = None,
        time_from: str | None = None,
        steps: tuple[tuple[float | None, str], ...] = ((None, "blue"),),
        decimals: int | None = 0,
    ) -> None:
        """Big numbers; ``noValue`` 0 because an empty count means none."""
        defaults: dict[str, Any] = {
            "unit": unit, "noValue": "0", "color": {"mode": "thresholds"}, "thresholds": thresholds(*steps),
        }  # fmt: skip
        if decimals is not None:
            defaults["decimals"] = decimals
        self.add(
            "stat", title, description, targets, w=w, h=h, defaults=defaults, overrides=overrides,
            time_from=time_from,
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "orientation": "auto", "textMode": "value_and_name", "colorMode": "value",
                "graphMode": "none", "justifyMode": "auto", "wideLayout": True,
            },
        )  # fmt: skip

    def table(
        self,
        title: str,
        description: str,
        targets: list[dict[str, Any]],
        *,
        w: int = 12,
        h: int = 8,
        overrides: list[dict[str, Any]] | None = None,
        transformations: list[dict[str, Any]] | None = None,
        sort_by: str | None = None,
        hide: Iterable[str] = ("Time",),
    ) -> None:
        """A table; the aggregate queries' meaningless Time column is hidden."""
        organize = {"id": "organize", "options": {"excludeByName": dict.fromkeys(hide, True)}}
        # Device and firm cells open the drill-down boards (harmless where a table has no such column).
        overrides = [*DRILL_DOWN, *(overrides or [])]
        options: dict[str, Any] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
        if sort_by:
            options["sortBy"] = [{"displayName": sort_by, "desc": True}]
        self.add(
            "table", title, description, targets, w=w, h=h, overrides=overrides,
            defaults={"custom": {"align": "auto", "filterable": True}},
            options=options, transformations=[*(transformations or []), organize],
        )  # fmt: skip

    def timeseries(
        self,
        title: str,
        description: str,
        targets: list[dict[str, Any]],
        *,
        w: int = 12,
        h: int = 8,
        unit: str = "short",
        draw: str = "line",
        interpolation: str = "linear",
        decimals: int | None = None,
        steps: tuple[tuple[float | None, str], ...] | None = None,
        threshold_style: str = "off",
        overrides: list[dict[str, Any]] | None = None,
        transformations: list[dict[str, Any]] | None = None,
    ) -> None:
        """A time series graph; thresholds can be drawn as dashed lines (``threshold_style``)."""
        defaults: dict[str, Any] = {
            "unit": unit,
            "custom": {
                "drawStyle": draw, "lineInterpolation": interpolation, "lineWidth": 1,
                "fillOpacity": 60 if draw == "bars" else 10, "showPoints": "never", "spanNulls": False,
                "thresholdsStyle": {"mode": threshold_style},
            },
        }  # fmt: skip
        if decimals is not None:
            defaults["decimals"] = decimals
        if steps:
            defaults["thresholds"] = thresholds(*steps)
        self.add(
            "timeseries", title, description, targets, w=w, h=h, defaults=defaults, overrides=overrides,
            transformations=transformations,
            options={"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                     "tooltip": {"mode": "multi", "sort": "none"}},
        )  # fmt: skip


def constant(name: str, value: str, label: str) -> dict[str, Any]:
    """A hidden constant variable (a design-choice window, editable in this file)."""
    return {
        "name": name, "label": label, "type": "constant", "query": value, "hide": 2, "skipUrlSync": False,
        "current": {"selected": True, "text": value, "value": value},
        "options": [{"selected": True, "text": value, "value": value}],
    }  # fmt: skip


def tag_variable(name: str, label: str, key: str) -> dict[str, Any]:
    """A single-value variable listing a tag's values in the status measurements."""
    q = f'SHOW TAG VALUES FROM "elevator_status", "vessel_status" WITH KEY = "{key}"'
    return {
        "name": name, "label": label, "type": "query", "datasource": DS, "query": q, "definition": q,
        "refresh": 1, "sort": 1, "multi": False, "includeAll": False, "current": {}, "options": [],
        "hide": 0, "regex": "", "skipUrlSync": False,
    }  # fmt: skip


def annotation(name: str, query: str, color_: str, text: str, tags: str, title: str = "event") -> dict[str, Any]:
    """An InfluxQL annotation query (Grafana 10+ ``target`` form)."""
    return {
        "name": name, "enable": True, "hide": False, "iconColor": color_, "datasource": DS,
        "target": {
            "refId": "Anno", "query": query, "rawQuery": True, "fromAnnotations": True, "queryType": "tags",
            "textColumn": text, "tagsColumn": tags, "titleColumn": title, "timeEndColumn": "",
            "limit": 100, "matchAny": False, "tags": [], "type": "tags",
        },
    }  # fmt: skip


BUILTIN_ANNOTATION = {
    "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
}  # fmt: skip

WINDOWS = [
    constant("alarm_window", "30d", "Alarms older than this are not counted as open"),
    constant("report_window", "3m", "A device is reporting when it sent a status within this (3 × keep-alive)"),
    constant("online_window", "30d", "Online flags older than this are ignored"),
    constant("plan_window", "2d", "Maintenance-plan snapshots older than this are ignored"),
]


def dashboard(
    uid: str,
    title: str,
    description: str,
    board: Board,
    *,
    variables: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    time_from: str,
    refresh: str,
) -> dict[str, Any]:
    """The dashboard document (``id`` null so Grafana matches it by ``uid``)."""
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["semon"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "liveNow": False,
        "refresh": refresh,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "weekStart": "",
        "annotations": {"list": [BUILTIN_ANNOTATION, *annotations]},
        "links": [
            {
                "title": "semon boards",
                "type": "dashboards",
                "tags": ["semon"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            },
        ],
        "templating": {"list": variables},
        "panels": board.panels,
    }


SEVERITY_OVERRIDES = [by_name(s, color=color(c)) for s, c in SEVERITY_COLORS.items()]


def severity_targets(where: str = "") -> list[dict[str, Any]]:
    """One open-alarm count per severity (a stat tile each)."""
    return [
        target(open_alarm_count(sev, where), ref, alias=sev) for ref, sev in zip("ABC", SEVERITY_COLORS, strict=True)
    ]


# ---------------------------------------------------------------------------- the boards
def regulator() -> dict[str, Any]:
    """Regulator fleet board: the whole city."""
    b = Board()
    b.row("Fleet")
    b.stat("Devices reporting", "Devices with a status message in the last 3 minutes (3 × the 60 s keep-alive), "
           "by kind.", [target(reporting(), alias="$tag_kind")], w=6)  # fmt: skip
    b.stat(
        "Terminals online / offline",
        "Newest MQTT online flag (retained, with a last will) per terminal, by kind.",
        [target(online_flag(True, "kind"), "A", alias="$tag_kind online"),
         target(online_flag(False, "kind"), "B", alias="$tag_kind offline")],
        w=6, overrides=[by_name("elevator offline", color=color("red")), by_name("vessel offline", color=color("red"))],
    )  # fmt: skip
    b.table(
        "Online / offline by district",
        "Terminals per district by their newest online flag.",
        [target(online_flag(True, "district"), "A", "table"), target(online_flag(False, "district"), "B", "table")],
        w=12, h=5, transformations=[{"id": "merge", "options": {}}],
    )  # fmt: skip
    b.timeseries(
        "Messages stored per minute",
        "Status and event messages written to InfluxDB per minute, by measurement and kind.",
        [target(sql("""SELECT count("seq") AS "messages" FROM "elevator_status", "vessel_status", "device_event"
                       WHERE $timeFilter GROUP BY time(1m), "kind" fill(0)"""), alias="$measurement ($tag_kind)")],
        w=24, h=6, draw="bars",
    )  # fmt: skip

    b.row("Hazard alarms")
    b.stat("Open alarms by severity", "Alarms whose newest lifecycle transition is not 'cleared' (rescue steps do "
           "not count), by current severity.", severity_targets(), w=8, overrides=SEVERITY_OVERRIDES)  # fmt: skip
    b.add(
        "bargauge", "Open alarms by type", "Open alarms per alarm type.",
        [target(open_alarm_count(by="type"), alias="$tag_type")], w=8, h=5,
        defaults={"unit": "none", "decimals": 0, "min": 0, "color": {"mode": "thresholds"},
                  "thresholds": thresholds((None, "orange"))},
        options={"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    )  # fmt: skip
    b.table(
        "Open alarms by district", "Open hazards per district (domain.md §1: what the regulator watches).",
        [target(open_alarm_count(by="district"), fmt="table")], w=8, h=5, sort_by="open",
    )  # fmt: skip
    b.table(
        "Open alarms", "Every open alarm with its newest transition; the time is when that transition happened.",
        [target(open_alarm_list(), fmt="table")], w=14, h=9, hide=(), sort_by="Time",
        overrides=[by_name("severity", **{"custom__cellOptions": {"type": "color-text"}},
                           mappings=[{"type": "value", "options": {s: {"color": c, "index": i}
                                      for i, (s, c) in enumerate(SEVERITY_COLORS.items())}}])],
    )  # fmt: skip
    b.timeseries(
        "Alarms raised", "Alarms raised per interval, by severity.",
        [target(sql("""SELECT count("alarm_id") AS "raised" FROM "alarm_event" WHERE "event" = 'raised' AND $timeFilter
                       GROUP BY time($__interval), "severity" fill(0)"""), alias="$tag_severity")],
        w=10, h=9, draw="bars", decimals=0, overrides=SEVERITY_OVERRIDES,
    )  # fmt: skip

    b.row("Trapped-passenger rescues (困梯救援)")
    b.stat(
        "Entrapments today", "Trapped-passenger alarms raised since midnight.",
        [target(sql("""SELECT count("alarm_id") AS "entrapments" FROM "alarm_event"
                       WHERE "type" = 'trapped_passenger' AND "event" = 'raised' AND $timeFilter"""))],
        w=4, time_from="now/d", steps=((None, "green"), (1, "orange")),
    )  # fmt: skip
    b.stat(
        "Rescue times",
        "Mean minutes from the alarm to the firm's arrival (limit 30 min, TSG T5002-2017) and from arrival to "
        "release, for rescues in the time range; and how many arrivals took longer than 30 minutes.",
        [target(rescue_minutes("raised", "arrived", "mean"), "A", alias="alarm → arrival"),
         target(rescue_minutes("arrived", "released", "mean"), "B", alias="arrival → release"),
         target(rescue_minutes("raised", "arrived", "max"), "C", alias="slowest arrival"),
         target(rescue_minutes("raised", "arrived", "count", extra=' AND "s" > 1800'), "D", alias="arrivals > 30 min")],
        w=12, unit="m", decimals=1, steps=((None, "green"), (30, "red")),
        overrides=[by_name("arrivals > 30 min", unit="none", decimals=0,
                           thresholds=thresholds((None, "green"), (1, "red")))],
    )  # fmt: skip
    b.table(
        "Rescue steps", "Every transition of trapped-passenger alarms: raised → dispatched → arrived → released.",
        [target(sql("""SELECT "event", "alarm_id", "message" FROM "alarm_event"
                       WHERE "type" = 'trapped_passenger' AND $timeFilter GROUP BY "device_id", "district", "firm\""""),
                fmt="table")],
        w=8, h=5, hide=(), sort_by="Time",
    )  # fmt: skip

    b.row("Maintenance (3+2 on-demand) and inspections")
    b.stat(
        "Elevators by maintenance mode",
        "Newest plan: standard 15-day cycle, or on-demand maintenance within 30 / 90 days (domain.md §4.5).",
        [target(plan_sum({"devices": "elevators"}, "\"kind\" = 'elevator'", ("mode",)), alias="$tag_mode")],
        w=8, overrides=[by_name(m, color=color(c)) for m, c in MODE_COLORS.items()],
    )  # fmt: skip
    b.stat(
        "Overdue maintenance items",
        "Elevators with an overdue item class: half-month (per the mode's interval), quarterly, half-year, yearly "
        "(TSG T5002-2017).",
        [target(plan_sum({f"overdue_{c}": c.replace("_", "-") for c in ITEM_CLASSES}, "\"kind\" = 'elevator'"))],
        w=8, steps=((None, "green"), (1, "red")),
    )  # fmt: skip
    b.stat(
        "Periodic inspections",
        "Devices whose periodic inspection (elevators yearly; vessels by safety grade) is overdue or due within "
        "30 days, by kind.",
        [target(plan_sum({"inspection_overdue": "overdue", "inspection_due_soon": "due soon"}, by=("kind",)),
                alias="$tag_kind $col")],
        w=8, steps=((None, "orange"),),
    )  # fmt: skip
    b.table(
        "Maintenance and inspections by district",
        "Per district: elevators per mode, overdue half-month maintenance, and overdue periodic inspections (all "
        "kinds).",
        [target(plan_sum({"devices": "devices", "overdue_half_month": "half-month overdue",
                          "inspection_overdue": "inspection overdue", "inspection_due_soon": "inspection due soon"},
                         by=("district",)), fmt="table")],
        w=24, h=7, sort_by="half-month overdue",
    )  # fmt: skip

    b.row("Dual prevention: hazards and risk (双重预防)")
    b.stat(
        "Major hazards this year",
        "City-wide, this local year: major hazards (GB 45067-2024) found, closed on time, closed late and open past "
        "their deadline (target: 100 % remediated). From the newest hazard_indicators snapshot.",
        [target(hazard_sum({"major_found": "found", "major_closed_on_time": "closed on time",
                            "major_closed_late": "closed late", "major_open_overdue": "overdue"}))],
        w=8, overrides=[by_name("overdue", thresholds=thresholds((None, "green"), (1, "red"))),
                        by_name("closed late", thresholds=thresholds((None, "green"), (1, "orange")))],
    )
    b.stat(
        "Devices by risk grade",
        "Risk grades A (low) … D (very high) from the documented factors (docs/hazards.md).",
        [target(hazard_sum({f"grade_{g}": g for g in "ABCD"}))],
        w=6, overrides=[by_name(g, color=color(c)) for g, c in RISK_COLORS.items()],
    )
    b.table(
        "Hazards and accidents by district",
        "Per district, this local year: units, hazards per 10,000 units, major hazards found and their remediation "
        "rate, overdue ones, accidents and deaths per 10,000 units (docs/hazards.md, Indicators).",
        [target(sql("""SELECT last("units") AS "units", last("hazards_per_10k") AS "hazards / 10k",
                       last("major_found") AS "major found", last("major_remediation_rate") AS "remediation rate",
                       last("major_open_overdue") AS "overdue", last("accidents") AS "accidents",
                       last("deaths_per_10k") AS "deaths / 10k", last("grade_D") AS "grade D"
                       FROM "hazard_indicators" WHERE time > now() - $plan_window GROUP BY "district\""""),
                fmt="table")],
        w=10, h=7, sort_by="overdue",
        overrides=[by_name("remediation rate", unit="percentunit", decimals=1)],
    )

    critical = sql("""SELECT "message", "event", "device_id", "type", "severity" FROM "alarm_event"
                      WHERE "event" = 'raised' AND "severity" = 'critical' AND $timeFilter""")
    return dashboard(
        "semon-regulator", "semon · Regulator fleet",
        "The whole fleet for the special-equipment regulator: terminals online, open hazards by severity, type and "
        "district, trapped-passenger rescues and their times, 3+2 maintenance modes, overdue maintenance and "
        "inspections. InfluxQL only. Schema: docs/storage.md, docs/boards.md.",
        b, variables=list(WINDOWS), time_from="now-6h", refresh="30s",
        annotations=[annotation("Critical alarms", critical, "red", "message", "device_id,type,severity")],
    )  # fmt: skip


def firm() -> dict[str, Any]:
    """Maintenance firm board: one firm's equipment (variable ``firm``)."""
    f = "\"firm\" = '$firm'"
    b = Board()
    b.row("$firm")
    b.stat("Devices reporting", "This firm's devices with a status message in the last 3 minutes, by kind.",
           [target(reporting(f), alias="$tag_kind")], w=6)  # fmt: skip
    b.stat("Active alarms by severity", "This firm's open alarms by current severity.", severity_targets(f), w=6,
           overrides=SEVERITY_OVERRIDES)  # fmt: skip
    rescue_open = sql(f"""
        SELECT "event" AS "step", "message", "alarm_id" FROM (SELECT last("event") AS "event", "message", "alarm_id"
        FROM "alarm_event" WHERE {f} AND "type" = 'trapped_passenger' AND time > now() - $alarm_window
        GROUP BY "device_id", "district") WHERE "event" != 'released' AND "event" != 'cleared'
        GROUP BY "device_id", "district\"""")
    b.stat(
        "Rescues open", "Trapped-passenger alarms neither released nor cleared.",
        [target(f'SELECT count("step") AS "rescues" FROM ({rescue_open})')], w=4,
        steps=((None, "green"), (1, "red")),
    )  # fmt: skip
    b.stat(
        "Maintenance due",
        "This firm's elevators whose half-month maintenance is due within the planner's due-soon window "
        "(7 days by default) or overdue.",
        [target(plan_sum({"due_soon_half_month": "due this week", "overdue_half_month": "overdue"},
                         f"{f} AND \"kind\" = 'elevator'"))],
        w=8, overrides=[by_name("overdue", color=color("red")), by_name("due this week", color=color("orange"))],
    )  # fmt: skip
    b.table("Active alarms", "Open alarms of this firm's equipment with their newest transition.",
            [target(open_alarm_list(f), fmt="table")], w=14, h=8, hide=(), sort_by="Time")  # fmt: skip
    b.table("Rescues in progress", "Where each open rescue stands: raised → dispatched → arrived.",
            [target(rescue_open, fmt="table")], w=10, h=8, hide=(), sort_by="Time")  # fmt: skip
    b.table(
        "Maintenance due this week",
        "Per district and mode: this firm's elevators, those due within 7 days and those overdue, by item class; "
        "and periodic inspections. The device list is in the API (/maintenance/plans).",
        [target(plan_sum({"devices": "devices", "due_soon_half_month": "half-month due this week",
                          "overdue_half_month": "half-month overdue", "due_soon_quarterly": "quarterly due",
                          "overdue_quarterly": "quarterly overdue", "inspection_due_soon": "inspection due soon",
                          "inspection_overdue": "inspection overdue"},
                         f, ("district", "mode")), fmt="table")],
        w=24, h=7, sort_by="half-month due this week",
    )  # fmt: skip
    b.table(
        "Elevators", "Newest state of each of this firm's elevators in the time range.",
        [target(sql(f"""SELECT last("mode") AS "mode", last("floor") AS "floor", last("door") AS "door",
                        last("running") AS "running", last("faults") AS "faults" FROM "elevator_status"
                        WHERE {f} AND $timeFilter GROUP BY "device_id", "district\""""), fmt="table")],
        w=12, h=9,
    )  # fmt: skip
    b.table(
        "Pressure vessels", "Newest readings of each of this firm's vessels in the time range.",
        [target(sql(f"""SELECT last("pressure") AS "pressure (MPa)", last("temperature") AS "temperature (°C)",
                        last("level") AS "level (%)", last("gas_lel") AS "gas (% LEL)" FROM "vessel_status"
                        WHERE {f} AND $timeFilter GROUP BY "device_id", "district\""""), fmt="table")],
        w=12, h=9,
    )  # fmt: skip
    b.timeseries(
        "Alarms raised", "This firm's alarms raised per interval, by alarm type.",
        [target(sql(f"""SELECT count("alarm_id") AS "raised" FROM "alarm_event" WHERE {f} AND "event" = 'raised'
                        AND $timeFilter GROUP BY time($__interval), "type" fill(0)"""), alias="$tag_type")],
        w=24, h=7, draw="bars", decimals=0,
    )  # fmt: skip
    raised = sql(f"""SELECT "message", "event", "device_id", "type", "severity" FROM "alarm_event"
                     WHERE {f} AND "event" = 'raised' AND $timeFilter""")
    return dashboard(
        "semon-firm", "semon · Maintenance firm",
        "One maintenance firm's equipment (variable firm): devices, active alarms, rescues in progress, "
        "maintenance due this week. InfluxQL only.",
        b, variables=[tag_variable("firm", "Maintenance firm", "firm"), *WINDOWS], time_from="now-24h",
        refresh="30s", annotations=[annotation("Alarms", raised, "orange", "message", "device_id,type,severity")],
    )  # fmt: skip


def device() -> dict[str, Any]:
    """Device drill-down: one elevator or vessel (variable ``device``)."""
    d = "\"device_id\" = '$device'"
    b = Board()
    b.row("Elevator")
    b.timeseries(
        "Floor", "Floor reported by the elevator.",
        [target(sql(f"""SELECT last("floor") AS "floor" FROM "elevator_status" WHERE {d} AND $timeFilter
                        GROUP BY time($__interval) fill(none)"""))],
        w=12, h=7, interpolation="stepAfter", decimals=0, unit="none",
    )  # fmt: skip
    b.timeseries(
        "Speed", "Highest car speed per interval.",
        [target(sql(f"""SELECT max("speed") AS "speed" FROM "elevator_status" WHERE {d} AND $timeFilter
                        GROUP BY time($__interval) fill(none)"""))],
        w=12, h=7, unit="velocityms",
    )  # fmt: skip
    door_colors = {"closed": "green", "opening": "light-blue", "open": "blue", "closing": "light-blue",
                   "normal": "green", "inspection": "orange", "true": "purple", "false": "transparent"}  # fmt: skip
    b.add(
        "state-timeline", "Door, mode, running and active faults",
        "Every status message: door state, service mode, running flag and the active GB/T 24476 fault codes.",
        [target(sql(f"""SELECT "door", "mode", "running", "faults" FROM "elevator_status"
                        WHERE {d} AND $timeFilter"""), alias="$col")],
        w=24, h=8,
        defaults={"color": {"mode": "fixed", "fixedColor": "red"},
                  "custom": {"fillOpacity": 80, "lineWidth": 0},
                  "mappings": [{"type": "value", "options": {k: {"color": c, "index": i}
                                                              for i, (k, c) in enumerate(door_colors.items())}},
                               {"type": "special", "options": {"match": "empty",
                                                               "result": {"text": "no fault", "color": "green"}}}]},
        options={"mergeValues": True, "showValue": "auto", "alignValue": "left", "rowHeight": 0.85,
                 "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"},
                 "tooltip": {"mode": "single", "sort": "none"}},
    )  # fmt: skip
    b.table(
        "Terminal events", "Fault, mode and alarm-button codes reported on the event topic (GB/T 24476 numbering).",
        [target(sql(f"""SELECT "code", "active", "scheme", "text" FROM "device_event" WHERE {d} AND $timeFilter"""),
                fmt="table")],
        w=12, h=7, hide=(), sort_by="Time",
    )  # fmt: skip
    b.table(
        "Alarm transitions", "Every transition of this device's alarms in the time range.",
        [target(sql(f"""SELECT "event", "alarm_id", "message" FROM "alarm_event" WHERE {d} AND $timeFilter
                        GROUP BY "type", "severity\""""), fmt="table")],
        w=12, h=7, hide=(), sort_by="Time",
    )  # fmt: skip

    b.row("Pressure vessel")

    def limits(ref: str, *fields: tuple[str, str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        # Registry limits (device_info) become threshold lines on the graph: "config from query
        # results" maps each field of the limits query to a threshold step. Grafana turns the first
        # step into the base, so a zero-valued "base" column goes first.
        cols = ", ".join([f'last("{fields[0][0]}") * 0 AS "base"'] + [f'last("{f}"){m} AS "{n}"' for f, m, n in fields])
        q = target(f'SELECT {cols} FROM "device_info" WHERE {d}', ref, "table")
        colors = ("green", "orange", "red")[: len(fields) + 1] if len(fields) > 1 else ("green", "red")
        mapping: list[dict[str, Any]] = [
            {"fieldName": name, "handlerKey": "threshold1", "handlerArguments": {"threshold": {"color": c}}}
            for name, c in zip(["base", *(n for _, _, n in fields)], colors, strict=True)
        ]
        mapping.append({"fieldName": "Time", "handlerKey": "__ignore"})
        transform = {
            "id": "configFromData",
            "options": {"configRefId": ref, "mappings": mapping, "applyTo": {"id": "byFrameRefID", "options": "A"}},
        }
        return q, transform

    lim_q, lim_t = limits(
        "B", ("max_working_pressure", "", "maximum working pressure"), ("set_pressure", "", "set pressure")
    )
    b.timeseries(
        "Pressure against the maximum working and set pressures",
        "Highest pressure per interval; dashed lines at the maximum working pressure (above it: major alarm; the "
        "registry's, else set pressure / 1.05) and at the safety-valve set pressure (at or above it: critical).",
        [target(sql(f"""SELECT max("pressure") AS "pressure" FROM "vessel_status" WHERE {d} AND $timeFilter
                        GROUP BY time($__interval) fill(none)""")), lim_q],
        w=12, h=8, unit="suffix: MPa", threshold_style="dashed", transformations=[lim_t],
    )  # fmt: skip
    temp_q, temp_t = limits("B", ("design_temperature", "", "design temperature"))
    b.timeseries(
        "Temperature", "Mean temperature per interval; dashed line at the registry's design temperature.",
        [target(sql(f"""SELECT mean("temperature") AS "temperature" FROM "vessel_status" WHERE {d} AND $timeFilter
                        GROUP BY time($__interval) fill(none)""")), temp_q],
        w=12, h=8, unit="celsius", threshold_style="dashed", transformations=[temp_t],
    )  # fmt: skip
    b.timeseries(
        "Liquid level", "Liquefied-gas level; the band 10–85 % is semon's default (design choice).",
        [target(sql(f"""SELECT mean("level") AS "level" FROM "vessel_status" WHERE {d} AND $timeFilter
                        GROUP BY time($__interval) fill(none)"""))],
        w=12, h=7, unit="percent", steps=((None, "red"), (10, "green"), (85, "red")), threshold_style="dashed",
    )  # fmt: skip
    b.timeseries(
        "Combustible gas", "Gas near the vessel; alarm levels 25 % and 50 % LEL (GB/T 50493-2019).",
        [target(sql(f"""SELECT max("gas_lel") AS "gas" FROM "vessel_status" WHERE {d} AND $timeFilter
                        GROUP BY time($__interval) fill(none)"""))],
        w=12, h=7, unit="suffix: % LEL", steps=((None, "green"), (25, "orange"), (50, "red")),
        threshold_style="dashed",
    )  # fmt: skip
    alarms = sql(f"""SELECT "message", "event", "type", "severity" FROM "alarm_event" WHERE {d} AND $timeFilter""")
    faults = sql(f"""SELECT "text", "code", "scheme" FROM "device_event" WHERE {d} AND "active" = true
                     AND $timeFilter""")
    return dashboard(
        "semon-device", "semon · Device drill-down",
        "One device (variable device): an elevator's floor, speed, door/mode timeline and fault codes, or a "
        "vessel's pressure against 90 % and 100 % of its set pressure, temperature, level and gas. InfluxQL only.",
        b, variables=[tag_variable("device", "Device", "device_id")], time_from="now-1h", refresh="10s",
        annotations=[annotation("Alarms", alarms, "red", "message", "type,severity"),
                     annotation("Terminal faults", faults, "orange", "text", "code,scheme", title="code")],
    )  # fmt: skip


BOARDS = {"regulator-fleet.json": regulator, "firm.json": firm, "device.json": device}


def render(doc: dict[str, Any]) -> str:
    """Stable JSON text (what is committed)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name → JSON text of every board."""
    return {name: render(build()) for name, build in BOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    """Write the boards, or with ``--check`` report stale or stray files."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only compare with the files on disk")
    p.add_argument("--out", type=Path, default=OUT_DIR)
    a = p.parse_args(argv)
    boards = generate()
    on_disk = {f.name for f in a.out.glob("*.json")} if a.out.exists() else set()
    if a.check:
        stale = [n for n, text in boards.items() if not (a.out / n).exists() or (a.out / n).read_text() != text]
        stray = sorted(on_disk - set(boards))
        for n in stale:
            print(f"stale: {a.out / n} (run python dashboards/build.py)", file=sys.stderr)
        for n in stray:
            print(f"not generated: {a.out / n} (delete it or add it to BOARDS)", file=sys.stderr)
        return 1 if stale or stray else 0
    a.out.mkdir(parents=True, exist_ok=True)
    for n in on_disk - set(boards):
        (a.out / n).unlink()
    for n, text in boards.items():
        (a.out / n).write_text(text)
    print(f"wrote {len(boards)} boards to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
