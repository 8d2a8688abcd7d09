"""The collector's "has the registry changed?" probe (store/registry.py) on real PostgreSQL:
every insert, update and delete changes it; nothing else does — so a collector reloads 100 k
devices only when there is something new to load."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, update

from semon.store.db import Database
from semon.store.models import Device
from semon.store.registry import registry_fingerprint
from tests.helpers import small_registry


def test_fingerprint_moves_with_every_change_and_only_then(pg_url: str, tmp_path: Path):
    db = Database(pg_url)
    try:
        small_registry(db, tmp_path / "reg.csv")
        first = registry_fingerprint(db)
        assert first is not None and first[0] == 3
        assert registry_fingerprint(db) == first  # reading changes nothing
        with db.session() as s:
            s.execute(update(Device).where(Device.id == "V1").values(set_pressure=1.5))
        updated = registry_fingerprint(db)
        assert updated is not None and updated != first and updated[0] == 3
        with db.session() as s:
            s.execute(delete(Device).where(Device.id == "E2"))
        deleted = registry_fingerprint(db)
        assert deleted is not None and deleted[0] == 2 and deleted != updated
    finally:
        db.dispose()


def test_no_probe_on_sqlite_means_always_reload(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path}/semon.db")
    try:
        assert registry_fingerprint(db) is None
    finally:
        db.dispose()
