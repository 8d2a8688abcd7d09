"""Application factory and server entry point of the semon HTTP API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

import semon
from semon.api import board as board_routes
from semon.api import (
    routes_alarms,
    routes_channels,
    routes_dead_letters,
    routes_devices,
    routes_hazards,
    routes_health,
    routes_keys,
    routes_maintenance,
    routes_rescues,
    routes_session,
    routes_stream,
    routes_webhooks,
)
from semon.api.auth import FAILED_AUTH_BURST, FAILED_AUTH_RATE, RateLimiter
from semon.api.docs import install_docs
from semon.api.limits import BodyLimitMiddleware
from semon.api.metrics import MetricsMiddleware
from semon.api.openapi import install_openapi
from semon.api.problems import install_problem_handlers
from semon.api.text_guard import TextGuardMiddleware
from semon.config import Settings
from semon.logs import setup_logging
from semon.notify.canary import Canary
from semon.notify.dispatcher import Dispatcher
from semon.rules.hazards.watch import HazardWatch
from semon.store import open_telemetry
from semon.store.db import Database
from semon.store.telemetry import TelemetryStore

log = logging.getLogger(__name__)

DESCRIPTION = """\
HTTP API of **semon**, monitoring of special equipment (elevators, pressure vessels) — 特种设备
（电梯、压力容器）在线监测平台的接口。It reads and writes: the registry and telemetry, alarms and
their handling (acknowledge, clear, comment, assign), trapped-passenger rescues, maintenance
plans and records, alert delivery (webhooks), API keys and rejected messages.

Authentication: an API key, `Authorization: Bearer smk_…` or `X-API-Key: smk_…` (**Authorize**
above); what a key sees depends on its role (regulator, firm, owner). `/health` and `/metrics`
need no key.

Times: device times are epoch **milliseconds** (UTC), usually paired with an ISO-8601 string;
query times accept either form; calendar days are China Standard Time (Asia/Shanghai) days.
Errors are RFC 9457 `application/problem+json` documents.
"""

TAGS = [
    {"name": "devices", "description": "Equipment registry, each device's newest status and its history. 设备与遥测。"},
    {"name": "alarms", "description": "Hazard alarms raised by the rules engine, every transition, and their "
     "handling: acknowledge, clear, comment, assign; live stream (SSE). 告警及处置。"},
    {"name": "rescues", "description": "Trapped-passenger rescues: dispatch, arrival, release and KPIs "
     "(TSG T5002: on site within 30 min). 困人救援。"},
    {"name": "maintenance", "description": "On-demand maintenance (GB/T 24476-2017 / TSG T5002): plans, "
     "decisions, maintenance records and the facts they rest on. 按需维保。"},
    {"name": "webhooks", "description": "Alert delivery to firms, owners and the regulator: subscriptions, "
     "deliveries, redelivery (docs/alerts.md). 告警推送。"},
    {"name": "channels", "description": "Alert channels: WeCom, DingTalk, e-mail, SMS (docs/alerts.md). 告警通道。"},
    {"name": "hazards", "description": "Hidden hazards tracked to closure, risk grades, the risk-weighted inspection "
     "draw, the plan's indicators, accidents (docs/hazards.md). 隐患与双重预防。"},
    {"name": "keys", "description": "API keys and their roles (regulator only); a token is shown once. 接口密钥。"},
    {"name": "dead letters", "description": "Inbound MQTT messages the collector rejected, and why. 拒收消息。"},
    {"name": "operations", "description": "Health probe (503 when an alarm could go unreported) and Prometheus "
     "metrics. 运行状态。"},
]  # fmt: skip


def operation_id(route: APIRoute) -> str:
    """Operation ids are the route functions' names (``list_keys``), not FastAPI's generated
    ``list__keys_get``: what client generators and Swagger show. Unique (tests/api/test_api_docs.py)."""
    return route.name


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    telemetry: TelemetryStore | None = None,
) -> FastAPI:
    """The API application, on the given store handles or on ones opened from ``settings``.

    Handles passed in belong to the caller; handles the app opens itself (at startup) are
    closed at shutdown.
    """
    cfg = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        closers: list[Callable[[], None]] = []
        try:
            if app.state.db is None:
                # Construction runs migrations: keep that blocking work off the event loop.
                app.state.db = await run_in_threadpool(Database, cfg.db_url)
                closers.append(app.state.db.dispose)
            if app.state.telemetry is None:
                app.state.telemetry = await run_in_threadpool(open_telemetry, cfg)
                closers.append(app.state.telemetry.close)
            if cfg.dispatcher_enabled:
                # Alert delivery (webhooks, escalation, rescue records) runs beside the API;
                # stopped before the stores close (closers run in reverse).
                dispatcher = Dispatcher(cfg, app.state.db, name="api-dispatcher")
                dispatcher.start()
                closers.append(dispatcher.stop)
                hazard_watch = HazardWatch(
                    app.state.db, cfg.hazard_scan_s, cfg.timezone, app.state.telemetry, cfg.hazard_board_s
                )
                hazard_watch.start()
                closers.append(hazard_watch.stop)
            if cfg.canary_enabled:
                # The pipeline canary: a collector that stops answering raises "monitoring degraded".
                canary = Canary(cfg, app.state.db, name="api")
                canary.start()
                app.state.canary = canary
                closers.append(canary.stop)
            yield
        finally:
            for close in reversed(closers):
                try:
                    close()
                except Exception:
                    log.exception("closing a store at shutdown failed")
            # Forget what we closed so a restarted lifespan (tests) reopens instead of reusing.
            if db is None:
                app.state.db = None
            if telemetry is None:
                app.state.telemetry = None
            app.state.canary = None

    app = FastAPI(
        title="semon API",
        version=semon.__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        docs_url=None,  # served by semon.api.docs from the package's own assets, not a CDN
        redoc_url=None,
    )
    app.state.settings = cfg
    app.state.rate_limiter = RateLimiter(cfg.api_rate_per_s, cfg.api_rate_burst)
    app.state.auth_failures = RateLimiter(FAILED_AUTH_RATE, FAILED_AUTH_BURST)
    app.state.db = db
    app.state.telemetry = telemetry
    app.state.canary = None
    app.add_middleware(TextGuardMiddleware)  # inside the body limit: it reads bounded bodies only
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.api_max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    install_problem_handlers(app)
    install_openapi(app)
    install_docs(app)
    # /alarms/stream before /alarms/{alarm_id}, which would otherwise take "stream" for an id.
    app.include_router(routes_stream.router)
    for module in (routes_health, routes_devices, routes_alarms, routes_dead_letters, routes_keys):
        app.include_router(module.router)
    app.include_router(routes_webhooks.router)
    app.include_router(routes_channels.router)
    app.include_router(routes_rescues.router)
    app.include_router(routes_maintenance.router)
    app.include_router(routes_hazards.router)
    app.include_router(routes_session.router)  # /session: console sign-in (not in the OpenAPI schema)
    app.include_router(board_routes.router)  # /board: the built-in live board (not in the OpenAPI schema)
    return app


def serve(settings: Settings) -> None:
    """Run the API with uvicorn on ``api_host:api_port``, logging JSON lines (blocks)."""
    setup_logging(settings.log_level)
    # Opened here, before uvicorn: an unreachable database is then one clear line at start
    # (semon.cli) instead of a traceback inside uvicorn's lifespan log record.
    db = Database(settings.db_url)
    log.info(
        "starting semon API",
        extra={"host": settings.api_host, "port": settings.api_port, "version": semon.__version__},
    )
    try:
        _run(create_app(settings, db=db), settings)
    finally:
        db.dispose()


def _run(app: FastAPI, settings: Settings) -> None:
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # keep the JSON handlers setup_logging installed
        access_log=False,  # MetricsMiddleware writes a structured access line instead
        server_header=False,
        timeout_graceful_shutdown=2,  # open SSE streams (live board) must not hold up a restart
    )
