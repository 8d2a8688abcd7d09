"""Prometheus request metrics (per route template) and one structured access-log line each."""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Histogram
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("semon.api.access")

# Module-level: prometheus_client refuses to register the same name twice in a process, and
# several apps (tests) may be built in one.
REQUESTS = Counter(
    "semon_api_requests_total", "HTTP requests handled by the API", ["method", "route", "status"]
)
LATENCY = Histogram(
    "semon_api_request_duration_seconds",
    "Time to handle an HTTP request, by route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# Unmatched paths share one label: raw paths would let any client grow the series without bound.
UNMATCHED = "<unmatched>"
# Same reasoning for methods: servers accept any token as a method name.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """Path template that served the request (``/devices/{device_id}``), or :data:`UNMATCHED`."""
    # FastAPI records its own routes in the (shared) scope dict as it dispatches.
    route = scope.get("route")
    if isinstance(route, Route):
        return route.path
    # Plain Starlette routes (/docs, /openapi.json) are not recorded: find them by pattern.
    app = scope.get("app")
    for candidate in getattr(app, "routes", ()):
        if isinstance(candidate, Route) and candidate.path_regex.match(scope["path"]):
            return candidate.path
    return UNMATCHED


class MetricsMiddleware:
    """Pure ASGI middleware (no body buffering) timing each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call; only HTTP requests are measured."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before responding
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(elapsed)
            log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )
