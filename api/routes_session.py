"""``/session``: console sign-in, who is signed in, and logout.

``POST /session`` exchanges a person's user name and password (or an API key, for a desk
without personal accounts) for a session cookie: HttpOnly (no script can read it), SameSite=
Strict (a browser never sends it on a request another site starts — the console is a
single-origin app reached by typing or bookmarking its address, so Lax buys nothing), Secure
when served over HTTPS. Its answer holds the CSRF token the page sends back on every write.
Failed sign-ins count against the client address (:func:`semon.api.auth.refuse_if_guessing`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from semon.api.auth import (
    SESSION_COOKIE,
    PrincipalDep,
    count_failure,
    refuse_if_guessing,
)
from semon.api.deps import DbDep
from semon.api.problems import ProblemException
from semon.store.access import Principal
from semon.store.db import Database
from semon.store.keys import authenticate
from semon.store.models import Firm, UseUnit
from semon.store.users import SESSION_TTL, check_password, end_session, open_session, session_principal
from semon.timeutil import now_ms

router = APIRouter(prefix="/session", include_in_schema=False)


class SignIn(BaseModel):
    """A user name and password, or an API key."""

    model_config = ConfigDict(extra="forbid")
    username: str | None = Field(None, min_length=1, max_length=64)
    password: str | None = Field(None, min_length=1, max_length=200)
    api_key: str | None = Field(None, min_length=1, max_length=200)


def _who(request: Request, db: Database, p: Principal, csrf: str | None) -> dict[str, Any]:
    """What the page needs about the caller (firm and use-unit names, not ids) and about the
    server: its clock (the page shows ages against it, not against the browser's), the city's
    time zone and the rescue arrival limit the desk's clock counts down."""
    cfg = request.app.state.settings
    with db.session() as s:
        firm = s.scalar(select(Firm.name).where(Firm.id == p.firm_id)) if p.firm_id else None
        unit = s.scalar(select(UseUnit.name).where(UseUnit.id == p.use_unit_id)) if p.use_unit_id else None
    return {"name": p.name, "role": p.role, "firm_id": p.firm_id, "firm_name": firm, "use_unit_id": p.use_unit_id,
            "use_unit_name": unit, "csrf_token": csrf, "signed_in": csrf is not None, "now_ms": now_ms(),
            "timezone": cfg.timezone, "rescue_arrival_limit_s": cfg.rescue_arrival_limit_s,
            "map_tile_url": cfg.map_tile_url}  # fmt: skip


@router.post("")
def sign_in(request: Request, response: Response, db: DbDep, body: SignIn) -> dict[str, Any]:
    """Open a session; sets the cookie and returns the caller with its CSRF token."""
    refuse_if_guessing(request)
    kwargs: dict[str, int | None]
    if body.api_key is not None:
        key = authenticate(db, body.api_key)
        kwargs = {"key_id": key.key_id} if key else {}
    elif body.username is not None and body.password is not None:
        user = check_password(db, body.username, body.password)
        kwargs = {"user_id": user.id} if user else {}
    else:
        raise ProblemException(422, "send username and password, or api_key", slug="invalid-parameter",
                               title="Invalid request parameter")  # fmt: skip
    if not kwargs:
        count_failure(request)
        raise ProblemException(401, "wrong user name or password, or unknown key", slug="unauthorized",
                               title="Unauthorized")  # fmt: skip
    token, csrf = open_session(db, user_id=kwargs.get("user_id"), key_id=kwargs.get("key_id"))
    found = session_principal(db, token)
    assert found is not None  # just opened
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(SESSION_TTL.total_seconds()), path="/", httponly=True,
        samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip
    return _who(request, db, found[0], csrf)


@router.get("")
def whoami(request: Request, db: DbDep, principal: PrincipalDep) -> dict[str, Any]:
    """The signed-in caller (and its CSRF token); 401 when nobody is (the page shows sign-in)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    found = session_principal(db, cookie) if cookie else None
    return _who(request, db, principal, found[1] if found else None)


@router.delete("", status_code=204)
def sign_out(request: Request, db: DbDep, _: PrincipalDep) -> Response:
    """Log out: the session row ends (the cookie is worthless from now on) and the cookie goes."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        end_session(db, cookie)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
