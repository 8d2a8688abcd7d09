"""People who sign in to the console: users (argon2 password hashes) and their sessions.

A user belongs to the regulator, a maintenance firm or a use unit, with the same roles as API
keys. Signing in (with a password, or with an API key) opens a server-side session row: the
browser holds only a random token in an HttpOnly cookie, the database holds its SHA-256, so a
session is revoked by deleting or ending its row (logout, user disabled) — no signed token can
outlive that.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from semon.store.base import Base
from semon.store.models import ApiKey
from semon.timeutil import as_utc, utc_now

if TYPE_CHECKING:
    from semon.store.access import Principal
    from semon.store.db import Database


class UserError(ValueError):
    """A user cannot be created as asked (unknown firm, short password…)."""

_HASHER = PasswordHasher()
# An argon2 hash of a throw-away password: an unknown user name costs the same time as a wrong
# password, so the answer's timing does not tell which user names exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
SESSION_TTL = timedelta(hours=12)
MIN_PASSWORD = 10


class User(Base):
    """A person who signs in to the console."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    firm_id: Mapped[str | None] = mapped_column(ForeignKey("firms.id"))
    use_unit_id: Mapped[str | None] = mapped_column(ForeignKey("use_units.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A signed-in browser: the cookie's token (hashed), its CSRF token and whom it stands for."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended: Mapped[bool] = mapped_column(Boolean, default=False)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(
    db: Database, username: str, password: str, role: str, *, firm_id: str | None = None,
    use_unit_id: str | None = None, display_name: str | None = None,
) -> User:  # fmt: skip
    """Create a user; the password is stored only as an argon2 hash."""
    # Imported here: models.py imports this module to register its tables (keys → access → models).
    from semon.store.keys import KeyError_, check_scope

    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password needs at least {MIN_PASSWORD} characters")
    with db.session() as s:
        if s.scalar(select(User.id).where(User.username == username)) is not None:
            raise UserError(f"user {username!r} already exists")
        try:
            check_scope(s, role, firm_id, use_unit_id, "user")
        except KeyError_ as e:
            raise UserError(str(e)) from e
        u = User(
            username=username, display_name=display_name, password_hash=_HASHER.hash(password), role=role,
            firm_id=firm_id if role == "firm" else None, use_unit_id=use_unit_id if role == "owner" else None,
            created_at=utc_now(),
        )  # fmt: skip
        s.add(u)
        s.flush()
        return u


def list_users(db: Database, *, include_disabled: bool = False) -> list[User]:
    """Users by name."""
    with db.session() as s:
        q = select(User).order_by(User.username)
        if not include_disabled:
            q = q.where(User.disabled_at.is_(None))
        return list(s.scalars(q))


def disable_user(db: Database, username: str) -> User | None:
    """Disable a user and end every session of theirs at once; None if there is no such user."""
    with db.session() as s:
        u = s.scalar(select(User).where(User.username == username))
        if u is None:
            return None
        if u.disabled_at is None:
            u.disabled_at = utc_now()
        s.execute(update(WebSession).where(WebSession.user_id == u.id).values(ended=True))
        return u


def check_password(db: Database, username: str, password: str) -> User | None:
    """The enabled user with that name and password, or None (same cost either way)."""
    with db.session() as s:
        u = s.scalar(select(User).where(User.username == username, User.disabled_at.is_(None)))
        try:
            _HASHER.verify(u.password_hash if u is not None else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return u


def open_session(db: Database, *, user_id: int | None = None, key_id: int | None = None,
                 now: datetime | None = None) -> tuple[str, str]:  # fmt: skip
    """A new session for a user or an API key; returns (cookie token, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    at = now or utc_now()
    with db.session() as s:
        s.add(WebSession(token_sha256=_digest(token), csrf_token=csrf, user_id=user_id, key_id=key_id,
                         created_at=at, expires_at=at + SESSION_TTL))  # fmt: skip
    return token, csrf


def end_session(db: Database, token: str) -> None:
    """Log out: the session's row is ended (idempotent)."""
    with db.session() as s:
        s.execute(update(WebSession).where(WebSession.token_sha256 == _digest(token)).values(ended=True))


def session_principal(db: Database, token: str) -> tuple[Principal, str] | None:
    """The principal and CSRF token of a live session, or None (unknown, ended, expired, or
    its user disabled / key revoked since)."""
    from semon.store.access import Principal

    with db.session() as s:
        ws = s.scalar(select(WebSession).where(WebSession.token_sha256 == _digest(token)))
        if ws is None or ws.ended or as_utc(ws.expires_at) <= utc_now():
            return None
        if ws.user_id is not None:
            u = s.get(User, ws.user_id)
            if u is None or u.disabled_at is not None:
                return None
            p = Principal(u.role, u.firm_id, u.use_unit_id, name=u.username, user_id=u.id)  # type: ignore[arg-type]
        else:
            k = s.get(ApiKey, ws.key_id)
            if k is None or k.revoked_at is not None:
                return None
            p = Principal(k.role, k.firm_id, k.use_unit_id, name=k.name, key_id=k.id)  # type: ignore[arg-type]
        return p, ws.csrf_token


def csrf_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of the session's CSRF token with the request's header."""
    return given is not None and hmac.compare_digest(expected, given)
