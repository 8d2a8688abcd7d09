"""``/health`` and ``/metrics``: what probes and Prometheus scrape."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text

import semon
from semon.api.deps import DbDep, TelemetryDep
from semon.api.schemas import HealthOut

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Health of the API and its stores",
    responses={503: {"model": HealthOut, "description": "database unavailable, or the pipeline canary is silent"}},
)
def health(db: DbDep, telemetry: TelemetryDep, request: Request, response: Response) -> HealthOut:
    """200 while the database answers and the pipeline canary hears every collector (telemetry
    down only degrades), 503 otherwise, with the reason.

    The 503 body is this same document, not a problem: probes and humans read the same fields.
    """
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db_ok = True
    except Exception as e:  # any failure means "not ready", whatever the driver raised
        log.warning("health: database check failed: %s", e)
        db_ok = False
    try:
        tel_ok = bool(telemetry.ping())
    except Exception as e:
        log.warning("health: telemetry ping failed: %s", e)
        tel_ok = False
    canary = request.app.state.canary
    pipeline = canary.health() if canary is not None else None
    canary_ok = pipeline is None or pipeline["ok"]
    if not db_ok or not canary_ok:
        response.status_code = 503
    return HealthOut(
        status="ok" if db_ok and tel_ok and canary_ok else "degraded",
        version=semon.__version__,
        db=db_ok,
        telemetry=tel_ok,
        pipeline=pipeline,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "text exposition format"}},
)
def metrics() -> Response:
    """Process and request metrics in the Prometheus text format (default registry)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
