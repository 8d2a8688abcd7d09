"""The device registry a collector decodes with, reloaded when the database says it changed.

The alarm sink polls it every ``registry_refresh_s``; the pipeline asks for a reload at once
(at most once a second) when a message names a device it does not know, since the device may
have been registered a moment ago. A database that is away keeps the registry it has: one
WARNING on entering that state, one on leaving, retries with backoff — never an exception into
a stage.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.exc import SQLAlchemyError

from semon.domain import DeviceInfo
from semon.ingest.supervision import Backoff, Supervisor
from semon.store.db import Database
from semon.store.registry import load_registry, registry_fingerprint

REGISTRY_DOWN = "registry"


class RegistryWatch:
    """``registry`` and its ``version`` (bumped on every reload that changed it)."""

    def __init__(self, db: Database, sup: Supervisor, refresh_s: float) -> None:
        self.db = db
        self.sup = sup
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._backoff = Backoff(1.0, 30.0)
        self.fingerprint = registry_fingerprint(db)
        self.registry: dict[str, DeviceInfo] = load_registry(db)
        self.version = 0
        self.loaded_at = time.monotonic()

    def refresh(self, now: float, min_age: float | None = None) -> bool:
        """Reload if at least ``min_age`` (default ``refresh_s``) passed and it changed; True if
        a new registry is in place. Never raises for a database outage."""
        if now - self.loaded_at < (self.refresh_s if min_age is None else min_age) or not self._backoff.ready(now):
            return False
        if not self._lock.acquire(blocking=False):
            return False  # the other stage is reloading it right now
        try:
            self.loaded_at = now
            try:
                fp = registry_fingerprint(self.db)
                if fp is not None and fp == self.fingerprint:
                    return False  # unchanged: the loaded registry (and what is cached by it) stays valid
                registry = load_registry(self.db)
            except SQLAlchemyError as e:
                self._backoff.failed(now)
                self.sup.degraded(REGISTRY_DOWN, f"registry reload failed, keeping the loaded one: {e}"[:300])
                return False
            self._backoff.reset()
            self.sup.recovered(REGISTRY_DOWN)
            self.registry, self.fingerprint = registry, fp
            self.version += 1
            return True
        finally:
            self._lock.release()
