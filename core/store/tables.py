"""Every semon table, registered on one metadata: Alembic's target and the schema test's.

Each domain's tables live in their own module and import only :mod:`semon.store.base`; this
module imports them all, so nothing else has to import a module for its side effect.
"""

from __future__ import annotations

from semon.store import hazards, maintenance, models, notify_models, rescue, seq_state, users
from semon.store.base import Base

metadata = Base.metadata

__all__ = ["hazards", "maintenance", "metadata", "models", "notify_models", "rescue", "seq_state", "users"]
