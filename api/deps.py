"""Request dependencies: the store handles the app was built with, and list parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from semon.store.db import Database
from semon.store.telemetry import TelemetryStore
from semon.timeutil import DEFAULT_TIMEZONE, now_ms


def get_db(request: Request) -> Database:
    """The relational database handle held by the application."""
    return request.app.state.db


def get_telemetry(request: Request) -> TelemetryStore:
    """The telemetry store handle held by the application."""
    return request.app.state.telemetry


def get_now_ms() -> int:
    """The request's "now", epoch ms: the wall clock.

    Routes that turn "now" into a calendar day (maintenance due dates, inspection status, firm
    rates) read it from here once per request, so whoever embeds the app can fix the day with
    ``app.dependency_overrides[get_now_ms]`` (the tests plan on a fixed date that way).
    """
    return now_ms()


def get_timezone(request: Request) -> str:
    """The zone of local calendar days (``SEMON_TIMEZONE``) the app was built with."""
    settings = getattr(request.app.state, "settings", None)
    return getattr(settings, "timezone", DEFAULT_TIMEZONE)


DbDep = Annotated[Database, Depends(get_db)]
TzDep = Annotated[str, Depends(get_timezone)]
TelemetryDep = Annotated[TelemetryStore, Depends(get_telemetry)]
NowMs = Annotated[int, Depends(get_now_ms)]

MAX_PAGE = 1000
Limit = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description="page size (1–1000)", examples=[100])
]
# Bounded so a huge value is a 422, not a database integer overflow.
Offset = Annotated[int, Query(ge=0, le=10**9, description="rows to skip", examples=[0])]
