"""Alembic environment: runs against the engine handed over by ``semon.store.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from semon.store.tables import metadata

config = context.config
target_metadata = metadata


def run() -> None:
    """Online migrations only: semon always has a live engine."""
    engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        conn.commit()


run()
