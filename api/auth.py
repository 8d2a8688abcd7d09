"""Who is calling: API keys and console sessions, the caller's data access, rate limits.

Machines send ``Authorization: Bearer smk_…`` (or ``X-API-Key``); never a key in a URL, which
ends up in logs and browser history. People sign in on the console (``/session``) and their
browser then carries an HttpOnly session cookie; a write made with that cookie must repeat the
session's CSRF token in ``X-CSRF-Token`` (a cross-site form cannot read or send it). With
``SEMON_API_AUTH=open`` (the laptop demo) a request without credentials is an anonymous
regulator; everywhere else credentials are required. Failed authentications are limited per
client address (:data:`FAILED_AUTH_RATE`), so neither keys nor passwords can be guessed fast.
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
from semon.store.users import csrf_matches, session_principal

ANONYMOUS = Principal("regulator", name="anonymous")
SESSION_COOKIE = "semon_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Failed sign-ins / authentications per client address: a burst of 10, then one every 6 s.
FAILED_AUTH_RATE, FAILED_AUTH_BURST = 1 / 6, 10


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

    def wait(self, key: object) -> float:
        """The seconds until ``key`` has a token again (0: it has one), without taking it."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate


def client_address(request: Request) -> str:
    """The peer address the failed-authentication limit counts against."""
    return request.client.host if request.client else "unknown"


def refuse_if_guessing(request: Request) -> None:
    """429 while this client address has used up its failed authentications."""
    wait = request.app.state.auth_failures.wait(client_address(request))
    if wait:
        raise ProblemException(
            429, "too many failed sign-ins or authentications from this address", slug="rate-limited",
            title="Too many requests", headers={"Retry-After": str(max(1, round(wait)))},
        )  # fmt: skip


def count_failure(request: Request) -> None:
    """Record one failed authentication of this client address."""
    request.app.state.auth_failures.take(client_address(request))


def _token(request: Request) -> str | None:
    h = request.headers.get("authorization", "")
    if h.lower().startswith("bearer "):
        return h[7:].strip()
    return request.headers.get("x-api-key")


def _unauthorized(why: str) -> ProblemException:
    return ProblemException(401, why, slug="unauthorized", title="Unauthorized",
                            headers={"WWW-Authenticate": 'Bearer realm="semon"'})  # fmt: skip


def _from_session(request: Request, db: DbDep, cookie: str) -> Principal | None:
    """The session's principal; a write must carry the session's CSRF token."""
    found = session_principal(db, cookie)
    if found is None:
        return None
    principal, csrf = found
    if request.method not in SAFE_METHODS and not csrf_matches(csrf, request.headers.get(CSRF_HEADER)):
        raise ProblemException(403, f"a write with the session cookie needs the session's {CSRF_HEADER} header",
                               slug="csrf", title="Forbidden")  # fmt: skip
    return principal


def get_principal(request: Request, db: DbDep) -> Principal:
    """Authenticate the request (key header, else session cookie) and apply its rate limit."""
    settings = request.app.state.settings
    token = _token(request)
    cookie = request.cookies.get(SESSION_COOKIE) if token is None else None
    principal: Principal | None
    if token is None and cookie is None and settings.api_auth == "open":
        principal = ANONYMOUS
    else:
        if token is not None:
            # Only keys can be guessed: a session token is 256 random bits, and a stale cookie
            # (logged out elsewhere, user disabled) must not lock an office's shared address out.
            refuse_if_guessing(request)
        principal = authenticate(db, token) if token else _from_session(request, db, cookie) if cookie else None
        if principal is None and cookie is not None and settings.api_auth == "open":
            principal = ANONYMOUS  # the demo board with a stale cookie stays usable
        elif principal is None:
            if token is not None:
                count_failure(request)
            raise _unauthorized(
                "an API key (Authorization: Bearer smk_…) or a console session is required" if token is None
                and cookie is None else "unknown or revoked key" if token else "session ended or expired; sign in again"
            )  # fmt: skip
    limiter: RateLimiter = request.app.state.rate_limiter
    bucket: object = (principal.key_id if principal.key_id is not None else ("user", principal.user_id)
                      if principal.user_id is not None else client_address(request))  # fmt: skip
    wait = limiter.take(bucket)
    if wait:
        raise ProblemException(
            429, f"rate limit of {limiter.rate:g} requests/s exceeded", slug="rate-limited", title="Too many requests",
            headers={"Retry-After": str(max(1, round(wait)))},
        )  # fmt: skip
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
# EventSource sends the session cookie (same origin) like any request: no key in the URL.
get_stream_principal = get_principal


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
