"""Who is calling: API-key authentication, the caller's data access, per-key rate limits.

``Authorization: Bearer smk_…`` (or ``X-API-Key``). With ``SEMON_API_AUTH=open`` (the laptop
demo) a request without a key is an anonymous regulator; everywhere else a key is required.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request

from semon.api.deps import DbDep
from semon.api.problems import ProblemException
from semon.store.access import Access, Principal
from semon.store.keys import authenticate

ANONYMOUS = Principal("regulator", name="anonymous")


class RateLimiter:
    """Token bucket per key: ``rate`` requests a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[object, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: object) -> float:
        """0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def _token(request: Request, *, query: bool = False) -> str | None:
    h = request.headers.get("authorization", "")
    if h.lower().startswith("bearer "):
        return h[7:].strip()
    if query and "key" in request.query_params:
        # Only for streams: a browser's EventSource cannot send headers.
        return request.query_params["key"]
    return request.headers.get("x-api-key")


def get_principal(request: Request, db: DbDep) -> Principal:
    """Authenticate the request and apply its rate limit."""
    return _principal(request, db, _token(request))


def get_stream_principal(request: Request, db: DbDep) -> Principal:
    """As :func:`get_principal`, also taking the key from ``?key=`` (EventSource streams)."""
    return _principal(request, db, _token(request, query=True))


def _principal(request: Request, db: DbDep, token: str | None) -> Principal:
    settings = request.app.state.settings
    if token is None and settings.api_auth == "open":
        principal = ANONYMOUS
    else:
        principal = authenticate(db, token) if token else None
        if principal is None:
            why = "an API key is required (Authorization: Bearer smk_…)" if token is None else "unknown or revoked key"
            raise ProblemException(
                401,
                why,
                slug="unauthorized",
                title="Unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="semon"'},
            )
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.take(principal.key_id if principal.key_id is not None else request.client and request.client.host)
    if wait:
        raise ProblemException(
            429, f"rate limit of {limiter.rate:g} requests/s exceeded", slug="rate-limited", title="Too many requests",
            headers={"Retry-After": str(max(1, round(wait)))},
        )  # fmt: skip
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_access(db: DbDep, principal: PrincipalDep) -> Iterator[Access]:
    """The caller's scoped data access, in one session committed at the end of the request."""
    with db.session() as s:
        yield Access(s, principal)


AccessDep = Annotated[Access, Depends(get_access)]


def require_regulator(principal: PrincipalDep) -> Principal:
    """Endpoints that manage the city (keys, registry, policy) are the regulator's."""
    if not principal.is_regulator:
        raise ProblemException(403, "only the regulator may do this", slug="forbidden", title="Forbidden")
    return principal


RegulatorDep = Annotated[Principal, Depends(require_regulator)]
StreamPrincipalDep = Annotated[Principal, Depends(get_stream_principal)]


def require_stream_regulator(principal: StreamPrincipalDep) -> Principal:
    """The built-in live board shows the whole fleet: the regulator's (firms use /alarms/stream)."""
    return require_regulator(principal)


BoardDep = Annotated[Principal, Depends(require_stream_regulator)]


def require_operator(principal: PrincipalDep) -> Principal:
    """Changing alarms, rescues and records is for firms and the regulator (owners read)."""
    if not principal.can_operate:
        raise ProblemException(403, "owners have read access only", slug="forbidden", title="Forbidden")
    return principal


OperatorDep = Annotated[Principal, Depends(require_operator)]
