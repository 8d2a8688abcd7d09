"""API keys: creation, listing, revocation and authentication.

A key reads ``smk_<prefix>_<secret>``. The prefix is stored in clear for lookup and display;
of the secret only its SHA-256 is stored — keys are 256 random bits, so a fast hash is safe
(no password to brute-force) and verification stays cheap on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from semon.store.access import Principal, Role
from semon.store.db import Database
from semon.store.models import ApiKey, Firm, UseUnit
from semon.timeutil import utc_now

ROLES: tuple[Role, ...] = ("regulator", "firm", "owner")


class KeyError_(ValueError):
    """A key cannot be created as asked (unknown firm, missing scope…)."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scope(s: Session, role: str, firm_id: str | None, use_unit_id: str | None, what: str) -> None:
    """A role and the firm or use unit it needs, existing (keys and console users alike)."""
    if role not in ROLES:
        raise KeyError_(f"role must be one of {', '.join(ROLES)}")
    if role == "firm" and not firm_id:
        raise KeyError_(f"a firm {what} needs firm_id")
    if role == "owner" and not use_unit_id:
        raise KeyError_(f"an owner {what} needs use_unit_id")
    if firm_id and s.get(Firm, firm_id) is None:
        raise KeyError_(f"unknown firm {firm_id!r}")
    if use_unit_id and s.get(UseUnit, use_unit_id) is None:
        raise KeyError_(f"unknown use unit {use_unit_id!r}")


def create_key(
    db: Database, name: str, role: str, *, firm_id: str | None = None, use_unit_id: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the token (shown once, never stored)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with db.session() as s:
        check_scope(s, role, firm_id, use_unit_id, "key")
        k = ApiKey(
            prefix=prefix,
            secret_sha256=_digest(secret),
            name=name,
            role=role,
            firm_id=firm_id if role == "firm" else None,
            use_unit_id=use_unit_id if role == "owner" else None,
            created_at=utc_now(),
        )
        s.add(k)
        s.flush()
    return k, f"smk_{prefix}_{secret}"


def list_keys(db: Database, *, include_revoked: bool = False) -> list[ApiKey]:
    """Keys, newest first."""
    with db.session() as s:
        q = select(ApiKey).order_by(ApiKey.id.desc())
        if not include_revoked:
            q = q.where(ApiKey.revoked_at.is_(None))
        return list(s.scalars(q))


def revoke_key(db: Database, key_id: int) -> ApiKey | None:
    """Revoke (idempotent); None if there is no such key."""
    with db.session() as s:
        k = s.get(ApiKey, key_id)
        if k is not None and k.revoked_at is None:
            k.revoked_at = utc_now()
        return k


def authenticate(db: Database, token: str) -> Principal | None:
    """The principal a token stands for, or None (malformed, unknown, revoked)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "smk":
        return None
    _, prefix, secret = parts
    with db.session() as s:
        k = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if k is None or k.revoked_at is not None or not hmac.compare_digest(k.secret_sha256, _digest(secret)):
            return None
        return Principal(k.role, k.firm_id, k.use_unit_id, name=k.name, key_id=k.id)  # type: ignore[arg-type]
