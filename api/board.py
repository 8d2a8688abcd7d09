"""The built-in live board: ``/board`` (fleet and device views) fed by Server-Sent Events.

What everyone sees from ``semon demo``, with no Grafana: counters, the open alarms, a district
grid, and one device's live values and chart. The page and its assets ship in the package
(``semon/api/static/board``); nothing comes from a CDN.

The API process does not run the collector, so the live updates come from polling the stores,
server side, every :data:`POLL_S` seconds — once per process, not per browser:

- the relational database for alarm transitions newer than the last one seen
  (``alarm_events.id`` grows with every transition), followed by a fresh fleet summary;
- the telemetry store for the newest status of each device a browser is watching.

``/board/stream`` pushes them as SSE events ``summary``, ``alarm`` (with ``id:`` = the
transition id, so a reconnecting browser resumes where it left off via ``Last-Event-ID``) and
``device``. A stream ends after :data:`STREAM_MAX_S`; the browser reconnects at once (``retry``)
and catches up from ``Last-Event-ID``. That bounds how long a graceful server shutdown waits for
open boards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import case, func, select
from starlette.concurrency import run_in_threadpool

from semon.api.auth import BoardDep
from semon.api.deps import DbDep, TelemetryDep
from semon.api.problems import not_found
from semon.i18n import LANGUAGES, messages
from semon.store.db import Database
from semon.store.models import Alarm, AlarmEvent, Device, Firm, UseUnit
from semon.store.seq_state import gaps_by_device
from semon.store.telemetry import STATUS_MEASUREMENT, TelemetryStore
from semon.timeutil import from_ms, now_ms, utc_now

log = logging.getLogger(__name__)

router = APIRouter(prefix="/board", include_in_schema=False)

POLL_S = 0.4  # store polling period: an alarm reaches the page well within 1 s of being stored
KEEPALIVE_S = 10.0  # comment line so proxies and phones keep an idle stream open
STREAM_MAX_S = 15.0  # a stream's lifetime; the browser reconnects and resumes (see module doc)
RETRY_MS = 500  # EventSource reconnection delay
SUMMARY_REFRESH_S = 15.0  # the summary is re-sent this often even without transitions (registry changes)
OPEN_LIST_LIMIT = 100  # open alarms listed (the counters count all of them)
HISTORY_MINUTES = 10  # device chart history loaded when a device is opened
HISTORY_POINTS = 600  # at most this many points of history are sent
QUEUE_MAX = 500  # a browser this far behind is dropped; it reconnects and catches up
SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2}
ASSETS = {
    "board.js": "text/javascript; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
    "desk.js": "text/javascript; charset=utf-8",
    "hazards.js": "text/javascript; charset=utf-8",
    "map.js": "text/javascript; charset=utf-8",
    "board.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
_STATIC = resources.files("semon.api") / "static" / "board"


# ------------------------------------------------------------------------------ store reads
def _iso(ms: int | None) -> str | None:
    return None if ms is None else from_ms(ms).isoformat().replace("+00:00", "Z")


def _alarm_row(a: Alarm, district: str | None, firm_name: str | None = None) -> dict[str, Any]:
    return {
        "id": a.id,
        "device_id": a.device_id,
        "kind": a.kind,
        "type": a.type,
        "severity": a.severity,
        "firm_id": a.firm_id,
        "firm_name": firm_name,  # a person reads names, not ids
        "district": district,
        "active": a.active,
        "acknowledged": a.acknowledged,
        "start_ts": a.start_ts,
        "end_ts": a.end_ts,
        "message": a.message,
    }


# Keyed by the Database object itself (weakly): an id() could be reused by another handle.
_registry_cache: weakref.WeakKeyDictionary[Database, tuple[float, list[tuple[str, str | None, int]]]] = (
    weakref.WeakKeyDictionary()
)


def _registry_counts(db: Database) -> list[tuple[str, str | None, int]]:
    """Devices per kind and district, re-counted at most every :data:`SUMMARY_REFRESH_S`.

    A city registry is ~400 k rows and the summary is rebuilt after every batch of transitions;
    the registry changes by imports, rarely.
    """
    now = time.monotonic()
    hit = _registry_cache.get(db)
    if hit is None or now - hit[0] >= SUMMARY_REFRESH_S:
        with db.session() as s:
            rows = s.execute(select(Device.kind, Device.district, func.count()).group_by(Device.kind, Device.district))
            hit = (now, [(k, d, n) for k, d, n in rows])
        _registry_cache[db] = hit
    return hit[1]


def fleet_summary(db: Database) -> dict[str, Any]:
    """Counters, open alarms (most severe and newest first) and the district grid."""
    severity_order = case(SEVERITY_RANK, value=Alarm.severity, else_=len(SEVERITY_RANK))
    day_ago = utc_now() - timedelta(days=1)
    registry = _registry_counts(db)
    with db.session() as s:
        by_severity = s.execute(
            select(Alarm.severity, func.count()).where(Alarm.active.is_(True)).group_by(Alarm.severity)
        ).all()
        by_district = s.execute(
            select(Device.district, Alarm.severity, func.count())
            .join(Device, Device.id == Alarm.device_id)
            .where(Alarm.active.is_(True))
            .group_by(Device.district, Alarm.severity)
        ).all()
        raised = s.scalar(
            select(func.count()).select_from(AlarmEvent).where(AlarmEvent.event == "raised", AlarmEvent.at >= day_ago)
        )
        # Read before the open list: a transition stored in between is then sent again, never lost.
        last_id = s.scalar(select(func.max(AlarmEvent.id))) or 0
        open_rows = s.execute(
            select(Alarm, Device.district, Firm.name)
            .join(Device, Device.id == Alarm.device_id)
            .outerjoin(Firm, Firm.id == Alarm.firm_id)
            .where(Alarm.active.is_(True))
            .order_by(severity_order, Alarm.start_ts.desc(), Alarm.id.desc())
            .limit(OPEN_LIST_LIMIT)
        ).all()
        alarms = [_alarm_row(a, district, firm) for a, district, firm in open_rows]
    devices: dict[str, int] = {}
    districts: dict[str, dict[str, Any]] = {}
    for kind, district, n in registry:
        devices[kind] = devices.get(kind, 0) + n
        d = districts.setdefault(district or "—", {"name": district or "—", "devices": 0, "open": {}})
        d["devices"] += n
    for district, severity, n in by_district:
        d = districts.setdefault(district or "—", {"name": district or "—", "devices": 0, "open": {}})
        d["open"][severity] = n
    return {
        "at": now_ms(),
        "last_event_id": last_id,
        "devices": devices,
        "open": {sev: n for sev, n in by_severity},
        "raised_24h": raised or 0,
        "districts": sorted(districts.values(), key=lambda d: (-sum(d["open"].values()), d["name"])),
        "alarms": alarms,
    }


def transitions_after(db: Database, after_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """Alarm transitions with ``alarm_events.id`` > ``after_id``, oldest first."""
    with db.session() as s:
        rows = s.execute(
            select(AlarmEvent, Alarm, Device.district, Firm.name)
            .join(Alarm, Alarm.id == AlarmEvent.alarm_id)
            .join(Device, Device.id == Alarm.device_id)
            .outerjoin(Firm, Firm.id == Alarm.firm_id)
            .where(AlarmEvent.id > after_id)
            .order_by(AlarmEvent.id)
            .limit(limit)
        ).all()
        return [
            {"event_id": e.id, "event": e.event, "ts": e.ts, "at": e.at.isoformat(), "actor": e.actor,
             "alarm": {**_alarm_row(a, district, firm), "severity": e.severity}}
            for e, a, district, firm in rows
        ]  # fmt: skip


def _values(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None and k not in ("device_id", "kind", "district", "firm")}


def device_latest(telemetry: TelemetryStore, kind: str, device_id: str) -> dict[str, Any] | None:
    """Newest status row of a device (``time`` = device ms), or None."""
    measurement = STATUS_MEASUREMENT.get(kind)
    row = telemetry.latest(measurement, device_id) if measurement else None
    return None if row is None else _values(row)


def device_detail(db: Database, telemetry: TelemetryStore, device_id: str) -> dict[str, Any]:
    """Registry record, chart history, newest status and recent alarms of one device."""
    with db.session() as s:
        row = s.execute(
            select(Device, Firm.name, UseUnit.name).outerjoin(Firm, Firm.id == Device.firm_id)
            .outerjoin(UseUnit, UseUnit.id == Device.use_unit_id).where(Device.id == device_id)
        ).first()
        if row is None:
            raise not_found("device", device_id)
        d, firm_name, use_unit_name = row
        info: dict[str, Any] = {
            "id": d.id, "kind": d.kind, "district": d.district, "address": d.address, "firm_id": d.firm_id,
            "firm_name": firm_name, "use_unit_name": use_unit_name, "lat": d.lat, "lon": d.lon,
            "equipment_code": d.equipment_code, "rated_speed": d.rated_speed,
            "floors": d.floors, "bottom_floor": d.bottom_floor, "set_pressure": d.set_pressure,
            "design_pressure": d.design_pressure, "design_temperature": d.design_temperature, "medium": d.medium,
            "seq_gaps": gaps_by_device(s, [device_id]).get(device_id, 0),
        }  # fmt: skip
        alarms = [
            _alarm_row(a, d.district, firm_name)
            for a in s.scalars(
                select(Alarm).where(Alarm.device_id == device_id).order_by(Alarm.id.desc()).limit(20)
            )
        ]
    history: list[dict[str, Any]] = []
    latest = device_latest(telemetry, info["kind"], device_id)
    measurement = STATUS_MEASUREMENT.get(info["kind"])
    if measurement and latest is not None:
        # The window ends at the device's newest report: its clock, not the server's, places the chart.
        end = int(latest["time"]) + 1
        rows = telemetry.query(measurement, device_id, end - HISTORY_MINUTES * 60_000, end, 20_000)
        step = max(1, len(rows) // HISTORY_POINTS)
        history = [_values(r) for r in rows[::step]]
        if rows and history[-1]["time"] != rows[-1]["time"]:
            history.append(_values(rows[-1]))
    return {"device": info, "latest": latest, "history": history, "alarms": alarms}


# ----------------------------------------------------------------------------------- hub
@dataclass(eq=False)
class Subscriber:
    """One open stream: what it watches and its outbound queue."""

    device: tuple[str, str] | None  # (kind, device id)
    queue: asyncio.Queue[tuple[str, Any] | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))


class BoardHub:
    """Polls the stores once per process and fans the changes out to every open stream."""

    def __init__(self, db: Database, telemetry: TelemetryStore) -> None:
        self.db = db
        self.telemetry = telemetry
        self.subscribers: set[Subscriber] = set()
        # Newest transition already fanned out. Set from the first stream's snapshot, so nothing
        # stored between that snapshot and the first poll is skipped.
        self.last_id: int | None = None
        self._polled = False
        self._latest: dict[tuple[str, str], Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._summary_at = 0.0

    def subscribe(self, device: tuple[str, str] | None) -> Subscriber:
        """Register a stream; the polling task runs while anyone listens."""
        sub = Subscriber(device)
        self.subscribers.add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="board-hub")
        return sub

    def start_from(self, snapshot_id: int) -> None:
        """A stream's snapshot covers transitions up to ``snapshot_id``; poll from there at the latest."""
        if not self._polled:
            self.last_id = snapshot_id if self.last_id is None else min(self.last_id, snapshot_id)
            self._summary_at = time.monotonic()  # the stream has just sent one

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a closed stream."""
        self.subscribers.discard(sub)

    def _send(self, subs: set[Subscriber], item: tuple[str, Any]) -> None:
        for sub in list(subs):
            try:
                sub.queue.put_nowait(item)
            except asyncio.QueueFull:
                # Too slow (or gone without a word): end its stream; the browser reconnects and
                # catches up from Last-Event-ID instead of us buffering without bound.
                self.subscribers.discard(sub)
                with contextlib.suppress(asyncio.QueueEmpty):
                    sub.queue.get_nowait()
                sub.queue.put_nowait(None)

    async def _run(self) -> None:
        try:
            while self.subscribers:
                try:
                    await self._poll()
                except Exception:  # a store hiccup must not end the board; the next poll retries
                    log.exception("board poll failed")
                await asyncio.sleep(POLL_S)
        finally:
            # Idle: the next stream's snapshot sets the starting point again.
            self._task = None
            self._latest.clear()
            self.last_id, self._polled = None, False

    async def _poll(self) -> None:
        if self.last_id is None:
            return  # no stream has its snapshot yet
        self._polled = True
        rows = await run_in_threadpool(transitions_after, self.db, self.last_id)
        now = time.monotonic()
        if rows:
            self.last_id = rows[-1]["event_id"]
            for r in rows:
                self._send(self.subscribers, ("alarm", r))
        if rows or now - self._summary_at >= SUMMARY_REFRESH_S:
            self._summary_at = now
            self._send(self.subscribers, ("summary", await run_in_threadpool(fleet_summary, self.db)))
        watched = {s.device for s in self.subscribers if s.device is not None}
        for kind, dev in watched:
            latest = await run_in_threadpool(device_latest, self.telemetry, kind, dev)
            if latest is not None and latest != self._latest.get((kind, dev)):
                self._latest[(kind, dev)] = latest
                self._send({s for s in self.subscribers if s.device == (kind, dev)},
                           ("device", {"device_id": dev, "kind": kind, "latest": latest}))  # fmt: skip
        for key in set(self._latest) - watched:
            del self._latest[key]


def _hub(request: Request) -> BoardHub:
    hub = getattr(request.app.state, "board_hub", None)
    db, telemetry = request.app.state.db, request.app.state.telemetry
    if hub is None or hub.db is not db or hub.telemetry is not telemetry:
        # Created on first use (the app factory is not ours to extend); re-created when a
        # restarted lifespan (tests) opened new store handles.
        hub = BoardHub(db, telemetry)
        request.app.state.board_hub = hub
    return hub


def _device_kind(db: Database, device_id: str) -> str | None:
    with db.session() as s:
        return s.scalar(select(Device.kind).where(Device.id == device_id))


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


# --------------------------------------------------------------------------------- routes
def _asset(name: str) -> bytes:
    return (_STATIC / name).read_bytes()


@router.get("")
def board_page() -> Response:
    """The board (one page; the fleet or a device is chosen in the URL fragment)."""
    return Response(_asset("index.html"), media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})  # fmt: skip


@router.get("/assets/{name}")
def board_asset(name: str) -> Response:
    """Script, style sheet and icon of the board, from the package."""
    if name not in ASSETS:
        raise not_found("board asset", name)
    return Response(_asset(name), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


@router.get("/i18n/{lang}.json")
def board_i18n(lang: str) -> Response:
    """Every text of one language (``zh-CN`` or ``en``): semon.i18n."""
    if lang not in LANGUAGES:
        raise not_found("language", lang)
    return Response(orjson.dumps(messages(lang)), media_type="application/json",
                    headers={"Cache-Control": "no-cache"})  # fmt: skip


@router.get("/state")
def board_state(db: DbDep, _: BoardDep) -> dict[str, Any]:
    """The fleet summary the stream starts with (also handy for scripts)."""
    return fleet_summary(db)


@router.get("/device/{device_id}")
def board_device(db: DbDep, _: BoardDep, telemetry: TelemetryDep, device_id: str) -> dict[str, Any]:
    """What the device view opens with; live values then come over the stream."""
    return device_detail(db, telemetry, device_id)


@router.get("/stream")
async def board_stream(
    request: Request,
    _: BoardDep,
    device: Annotated[str | None, Query(max_length=64, description="device whose values to stream")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events: ``summary``, ``alarm`` (id = transition id) and ``device``."""
    db: Database = request.app.state.db
    watched: tuple[str, str] | None = None
    if device:
        kind = await run_in_threadpool(_device_kind, db, device)
        if kind is None:
            raise not_found("device", device)
        watched = (kind, device)
    resume = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
    hub = _hub(request)
    sub = hub.subscribe(watched)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            sent_id = resume
            if resume is not None:
                # Transitions stored while this browser was reconnecting.
                for r in await run_in_threadpool(transitions_after, db, resume):
                    yield _sse("alarm", r, r["event_id"])
                    sent_id = r["event_id"]
            summary = await run_in_threadpool(fleet_summary, db)
            hub.start_from(summary["last_event_id"])
            # The snapshot reflects every transition up to its last_event_id: that is where a
            # reconnecting browser resumes, and older ones arriving from the hub are not repeated.
            sent_id = max(sent_id or 0, summary["last_event_id"])
            yield _sse("summary", summary, sent_id)
            if watched is not None:
                latest = await run_in_threadpool(device_latest, hub.telemetry, *watched)
                if latest is not None:
                    yield _sse("device", {"device_id": watched[1], "kind": watched[0], "latest": latest})
            ends = time.monotonic() + STREAM_MAX_S
            while (left := ends - time.monotonic()) > 0:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), timeout=min(KEEPALIVE_S, left))
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if item is None:
                    return
                kind, data = item
                if kind == "alarm":
                    if data["event_id"] <= sent_id:
                        continue  # already sent in the catch-up or the snapshot
                    sent_id = data["event_id"]
                    yield _sse(kind, data, sent_id)
                else:
                    yield _sse(kind, data)
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        # no-transform/X-Accel-Buffering: proxies (nginx) must pass events through unbuffered.
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )
