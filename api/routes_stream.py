"""``GET /alarms/stream``: alarm transitions as Server-Sent Events, in the caller's tenancy.

Built like the live board's stream (:mod:`semon.api.board`, whose SSE framing and timing it
reuses): one poller per process finds new transitions (:class:`semon.notify.sse.Horizon`, a
cheap id-only query) and wakes the open streams; each stream then reads its own transitions
through :class:`~semon.store.access.Access`, so a firm only ever receives its own equipment's.
``id:`` is the ``alarm_events`` id; reconnecting with ``Last-Event-ID`` (or ``?after=``) resumes
right after it. A stream ends after :data:`~semon.api.board.STREAM_MAX_S`; EventSource clients
reconnect at once (``retry``) and resume, which keeps server restarts quick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from semon.api.auth import PrincipalDep
from semon.api.board import KEEPALIVE_S, POLL_S, RETRY_MS, STREAM_MAX_S, _sse
from semon.api.openapi import problem_responses
from semon.notify.sse import Horizon, transitions_after
from semon.store.access import Access, Principal
from semon.store.db import Database

log = logging.getLogger(__name__)

router = APIRouter(prefix="/alarms", tags=["alarms"])

READ_LIMIT = 200


class StreamHub:
    """Polls for new transitions once per process and wakes every open stream."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.horizon: Horizon | None = None
        self.safe = 0
        self.waiters: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self) -> asyncio.Event:
        """Register a stream; returns the event set whenever there may be something new."""
        if self.horizon is None:
            self.horizon = await run_in_threadpool(Horizon, self.db)
            self.safe = self.horizon.safe
        wake = asyncio.Event()
        self.waiters.add(wake)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="alarm-stream-hub")
        return wake

    def unsubscribe(self, wake: asyncio.Event) -> None:
        """Forget a closed stream."""
        self.waiters.discard(wake)

    async def _run(self) -> None:
        try:
            while self.waiters:
                horizon = self.horizon
                try:
                    safe = await run_in_threadpool(horizon.advance) if horizon is not None else self.safe
                except Exception:  # a database hiccup must not end the streams; the next poll retries
                    log.exception("alarm stream poll failed")
                    safe = self.safe
                if safe > self.safe:
                    self.safe = safe
                    for w in self.waiters:
                        w.set()
                await asyncio.sleep(POLL_S)
        finally:
            self._task = None
            self.horizon = None  # idle: the next stream starts from a fresh horizon


def _hub(request: Request) -> StreamHub:
    hub = getattr(request.app.state, "alarm_stream_hub", None)
    if hub is None or hub.db is not request.app.state.db:
        hub = StreamHub(request.app.state.db)
        request.app.state.alarm_stream_hub = hub
    return hub


def _read(db: Database, principal: Principal, after: int, upto: int) -> list[tuple[int, dict[str, Any]]]:
    with db.session() as s:
        return transitions_after(Access(s, principal), after, upto, READ_LIMIT)


_EXAMPLE = (
    "retry: 500\n\n"
    'id: 90817\nevent: alarm\ndata: {"event_id":90817,"alarm_id":1842,"event":"raised","device_id":"gz-el-00042",'
    '"firm_id":"F-GZ-017","type":"trapped_passenger","severity":"critical",…}\n\n'
    ": keep-alive\n\n"
)


@router.get(
    "/stream",
    summary="Alarm transitions as Server-Sent Events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "``text/event-stream``: events ``alarm`` whose data is the alarm transition "
            "(schemas/alarm.json) and whose id is its ``event_id``",
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _EXAMPLE}},
        },
        **problem_responses(),
    },
)
async def alarm_stream(
    request: Request,
    principal: PrincipalDep,
    after: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="resume after this event id (without Last-Event-ID)")
    ] = None,
    last_event_id: Annotated[str | None, Header(description="set by EventSource on reconnect")] = None,
) -> StreamingResponse:
    """Every alarm transition of the caller's equipment (raised, cleared, acknowledged, escalated,
    rescue steps…) as it is stored, oldest first. Without ``Last-Event-ID`` / ``after`` the stream
    starts with the next transition. The same document goes out on MQTT and to webhooks."""
    db: Database = request.app.state.db
    # A header is free text: anything but a plausible id (digits, within BIGINT) is ignored.
    resume = int(last_event_id) if last_event_id and last_event_id.isdigit() and len(last_event_id) < 19 else after
    hub = _hub(request)
    wake = await hub.subscribe()

    async def events() -> AsyncIterator[bytes]:
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            cursor = resume if resume is not None else hub.safe
            ends = time.monotonic() + STREAM_MAX_S
            while (left := ends - time.monotonic()) > 0:
                upto = hub.safe
                if upto > cursor:
                    rows = await run_in_threadpool(_read, db, principal, cursor, upto)
                    for event_id, msg in rows:
                        yield _sse("alarm", msg, event_id)
                    # Nothing else of the caller's is at or below `upto` unless the page was full.
                    cursor = rows[-1][0] if len(rows) == READ_LIMIT else upto
                    if len(rows) == READ_LIMIT:
                        continue
                if await request.is_disconnected():
                    return
                try:
                    await asyncio.wait_for(wake.wait(), timeout=min(KEEPALIVE_S, left))
                    wake.clear()
                except TimeoutError:
                    yield b": keep-alive\n\n"
        finally:
            hub.unsubscribe(wake)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )
