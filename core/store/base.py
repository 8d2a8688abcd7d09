"""The declarative base of every semon table (one metadata; ``tables`` registers them all)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of every semon table."""
