"""OpenAPI touches: error responses documented as RFC 9457 problems, per media type."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from semon.api.problems import PROBLEM_MEDIA_TYPE
from semon.api.schemas import Problem

_ALWAYS = {
    422: "Invalid query or path parameter",
    503: "A store behind the API (database, telemetry) is unavailable; retry later",
}
# Shown in /docs next to the schema (whose own example is a 404).
_EXAMPLES: dict[int, dict[str, Any]] = {
    422: {
        "type": "urn:semon:problem:validation-error",
        "title": "Request validation failed",
        "status": 422,
        "detail": "query.limit: Input should be less than or equal to 1000",
        "instance": "/devices",
        "errors": [
            {"loc": ["query", "limit"], "msg": "Input should be less than or equal to 1000",
             "type": "less_than_equal"}
        ],
    },
    503: {
        "type": "urn:semon:problem:telemetry-unavailable",
        "title": "Telemetry store unavailable",
        "status": 503,
        "detail": "InfluxDB query failed: ConnectError: [Errno 111] Connection refused",
        "instance": "/devices/EL-0001/latest",
    },
}


def problem_responses(described: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented as a :class:`Problem`.

    422 and 503 are always listed (every route takes parameters and reads a store);
    ``described`` adds or rewords statuses for this route, e.g. ``{404: "unknown device"}``.
    """
    texts = {**_ALWAYS, **(described or {})}
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted(texts):
        out[code] = {"model": Problem, "description": texts[code]}
        if code in _EXAMPLES:
            out[code]["content"] = {"application/json": {"example": _EXAMPLES[code]}}
    return out


def install_openapi(app: FastAPI) -> None:
    """Serve a schema whose 4xx/5xx bodies are ``application/problem+json``, as sent."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
            schema["security"] = [{name: []} for name in _KEY_SCHEMES]
            for path, path_item in schema.get("paths", {}).items():
                for op in path_item.values():
                    _declare_security(path, op)
                    _add_standard_responses(path, op)
                    for code, resp in op.get("responses", {}).items():
                        content = resp.get("content", {})
                        # FastAPI files every extra response under the route's own media type.
                        if code[:1] in "45" and "application/json" in content:
                            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_OPEN_PATHS = {"/health", "/metrics"}

# How api/auth.py reads a key: either header (any one suffices), or ?key= on the SSE stream,
# which browsers' EventSource cannot send headers with. Listed so Swagger UI offers Authorize.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearerKey": {"type": "http", "scheme": "bearer", "bearerFormat": "smk_…",
                  "description": "API key (`semon keys create`): `Authorization: Bearer smk_…`"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                     "description": "The same API key in an `X-API-Key` header"},
    "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "key",
                    "description": "The API key as `?key=` — only on the alarm stream (EventSource)"},
}  # fmt: skip
_KEY_SCHEMES = ("bearerKey", "apiKeyHeader")
_QUERY_KEY_PATHS = {"/alarms/stream"}


def _declare_security(path: str, op: dict[str, Any]) -> None:
    """Open operations need no key; the stream also takes one in the query."""
    if path in _OPEN_PATHS:
        op["security"] = []
    elif path in _QUERY_KEY_PATHS:
        op["security"] = [{name: []} for name in (*_KEY_SCHEMES, "apiKeyQuery")]


def _add_standard_responses(path: str, op: dict[str, Any]) -> None:
    """Statuses any operation can answer, documented once here rather than on every route."""
    extra: dict[str, str] = {}
    if path not in _OPEN_PATHS:
        extra["401"] = "No API key, or an unknown or revoked one"
        extra["429"] = "Rate limit of this key exceeded; see Retry-After"
    if "requestBody" in op:
        extra["400"] = "Malformed request body (not JSON)"
        extra["413"] = "Request body larger than SEMON_API_MAX_BODY_BYTES"
    responses = op.setdefault("responses", {})
    for code, text in extra.items():
        responses.setdefault(code, {"description": text, "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}})
