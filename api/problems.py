"""RFC 9457 problem details: the one error shape every 4xx/5xx of the API uses."""

from __future__ import annotations

import functools
import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from semon.store.access import NotVisible
from semon.store.influx import InfluxError
from semon.store.telemetry import TelemetryUnavailable

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Problem types are URNs: stable identifiers clients can switch on without us promising a
# resolvable documentation URL. Plain HTTP errors keep the RFC default "about:blank".
TYPE_PREFIX = "urn:semon:problem:"


class ProblemResponse(JSONResponse):
    """JSON response served as ``application/problem+json``."""

    media_type = PROBLEM_MEDIA_TYPE


class ProblemException(StarletteHTTPException):
    """An HTTP error carrying a problem type slug and optional extension members."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.slug = slug
        self.title = title
        self.extra = extra or {}


def not_found(what: str, key: object) -> ProblemException:
    """404 for an unknown resource, e.g. ``not_found("device", "EL-1")``."""
    return ProblemException(
        404, f"{what} {key!r} does not exist", slug=f"{what.replace(' ', '-')}-not-found",
        title=f"Unknown {what}",
    )


def invalid_parameter(name: str, detail: str) -> ProblemException:
    """422 for a query parameter that parsed but makes no sense (bad time range, sort key…)."""
    return ProblemException(
        422, detail, slug="invalid-parameter", title="Invalid request parameter",
        extra={"errors": [{"loc": ["query", name], "msg": detail}]},
    )


@functools.cache
def _zh_titles() -> dict[str, str]:
    from semon.i18n import ui_messages  # the catalogs (api/static/i18n)

    return {k.removeprefix("problem."): v for k, v in ui_messages("zh-CN").items() if k.startswith("problem.")}


def wants_english(request: Request) -> bool:
    """English when the caller's first language is English; Chinese (zh-CN) otherwise — the
    default, machines sending no Accept-Language included (they read ``type``, not ``title``)."""
    first = request.headers.get("accept-language", "").split(",")[0].strip().lower()
    return first.startswith("en")


def _title(request: Request, status: int, slug: str | None, title: str | None, phrase: str) -> str:
    """The title in the reader's language: zh-CN from the catalog (api/static/i18n), else English."""
    if wants_english(request):
        return title or phrase
    zh = _zh_titles()
    if slug in zh:
        return zh[slug]
    if slug and slug.endswith("-not-found"):
        return zh["not-found"]
    return zh.get(f"status.{status}", zh["status.other"])


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> ProblemResponse:
    """Render one problem document; ``instance`` is the request path (what failed)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, Any] = {
        "type": f"{TYPE_PREFIX}{slug}" if slug else "about:blank",
        # With about:blank the RFC wants the status phrase as title (in the reader's language).
        "title": _title(request, status, slug, title, phrase),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    body.update(extra or {})
    return ProblemResponse(jsonable_encoder(body), status_code=status, headers=headers)


async def send_problem(
    scope: Scope,
    send: Send,
    status: int,
    detail: str,
    *,
    slug: str,
    title: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Answer with a problem document straight from ASGI middleware (before routing, where
    there is no Request and the exception handlers do not run)."""
    doc = {"type": f"{TYPE_PREFIX}{slug}", "title": title, "status": status, "detail": detail}
    body = json.dumps({**doc, "instance": scope.get("path", ""), **(extra or {})}).encode()
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _http_exception(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if isinstance(exc, ProblemException):
        return problem_response(
            request, exc.status_code, detail, slug=exc.slug, title=exc.title, extra=exc.extra,
            headers=dict(exc.headers) if exc.headers else None,
        )
    # Routing 404/405 and any plain HTTPException raised by FastAPI itself.
    return problem_response(request, exc.status_code, detail, headers=dict(exc.headers) if exc.headers else None)


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return problem_response(
        request, 422, summary or "request validation failed", slug="validation-error",
        title="Request validation failed", extra={"errors": errors},
    )


async def _telemetry_unavailable(request: Request, exc: Exception) -> ProblemResponse:
    log.warning("telemetry store unavailable: %s", exc)
    return problem_response(
        request, 503, str(exc), slug="telemetry-unavailable", title="Telemetry store unavailable",
        headers={"Retry-After": "5"},
    )


async def _db_unavailable(request: Request, exc: Exception) -> ProblemResponse:
    log.warning("database unavailable: %s", exc)
    # The driver message may carry connection details; keep it in the log, not the response.
    return problem_response(
        request, 503, "the relational database did not answer", slug="database-unavailable",
        title="Database unavailable", headers={"Retry-After": "5"},
    )


async def _bad_gateway(request: Request, exc: Exception) -> ProblemResponse:
    log.error("telemetry query rejected: %s", exc)
    return problem_response(
        request, 502, f"telemetry store rejected the query: {exc}", slug="telemetry-error",
        title="Telemetry store error",
    )


async def _unhandled(request: Request, exc: Exception) -> ProblemResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, 500, "unexpected server error; see the API log")


async def _not_visible(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, NotVisible)
    # Another tenant's resource and a missing one look the same: 404, never 403 or data.
    return problem_response(
        request, 404, str(exc), slug=f"{exc.what.replace(' ', '-')}-not-found", title=f"Unknown {exc.what}"
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error the app can raise to a problem+json response."""
    app.add_exception_handler(NotVisible, _not_visible)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(TelemetryUnavailable, _telemetry_unavailable)
    app.add_exception_handler(OperationalError, _db_unavailable)
    app.add_exception_handler(InfluxError, _bad_gateway)
    app.add_exception_handler(Exception, _unhandled)
