"""Alembic environment: runs against the engine handed over by ``semon.store.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from semon.store.tables import metadata

config = context.config
target_metadata = metadata


def run() -> None:
    """Online migrations only: semon always has a live engine."""
    engine = config.attributes.get("engine")
    if engine is None:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("alembic: no engine given and sqlalchemy.url not set")
        engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        conn.commit()


run()
