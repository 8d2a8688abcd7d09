"""Secrets at rest: webhook signing secrets and channel credentials sealed with Fernet.

A stored secret is ``fernet:`` + a Fernet token (AES-128-CBC + HMAC-SHA256, see the
``cryptography`` documentation, "Fernet (symmetric encryption)") under ``SEMON_SECRET_KEY``.
A database dump alone then yields no usable HMAC key, robot token or SMTP password.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

PREFIX = "fernet:"


class SecretKeyError(RuntimeError):
    """The secret key is missing or does not open the stored secrets (a configuration error)."""


class Sealer:
    """Seals and opens secrets with one key; ``key=None`` can do neither (says so clearly)."""

    def __init__(self, key: str | None) -> None:
        self._fernet: Fernet | None = None
        if key:
            try:
                self._fernet = Fernet(key.encode())
            except (ValueError, TypeError) as e:
                raise SecretKeyError(
                    "SEMON_SECRET_KEY is not a Fernet key (32 bytes, urlsafe base64: "
                    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
                ) from e

    def _need(self) -> Fernet:
        if self._fernet is None:
            raise SecretKeyError("SEMON_SECRET_KEY is not set: it is needed to seal and open webhook/channel secrets")
        return self._fernet

    def seal(self, plain: str) -> str:
        """The stored form of ``plain``."""
        return PREFIX + self._need().encrypt(plain.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret a stored value seals; :class:`SecretKeyError` when the key does not fit."""
        if not stored.startswith(PREFIX):
            raise SecretKeyError("a stored secret is not sealed: run the database migrations with SEMON_SECRET_KEY set")
        try:
            return self._need().decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken as e:
            raise SecretKeyError("SEMON_SECRET_KEY does not open the stored secrets (wrong key?)") from e


def is_sealed(stored: str) -> bool:
    """Whether a stored value is already sealed (the migration skips those)."""
    return stored.startswith(PREFIX)
