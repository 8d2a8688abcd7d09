"""The database schema the migrations build equals the models; packaging and compose are sound."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from semon.store.db import Database
from semon.store.models import Base
from tests.services import REPO, unavailable


def _diff(url: str) -> list[object]:
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        db.dispose()


def test_migrations_match_models_sqlite(tmp_path: Path):
    assert _diff(f"sqlite:///{tmp_path}/m.db") == []


def test_migrations_match_models_postgres(pg_url: str):
    assert _diff(pg_url) == []


def test_only_the_semon_namespace_is_importable_from_the_install():
    # No generic top-level names (api, rules, ingest…) may leak into site-packages.
    names = "('api', 'rules', 'ingest', 'simulators', 'core')"
    code = f"import importlib.util as u; print([n for n in {names} if u.find_spec(n)])"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_docker_compose_config_is_valid_and_provisioning_paths_exist():
    exe = shutil.which("docker-compose")
    if exe is None:
        unavailable("docker-compose not installed (apt-get install docker-compose)")
    out = subprocess.run([exe, "config"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    compose = (REPO / "docker-compose.yml").read_text()
    for rel in ("config/mosquitto/mosquitto.conf", "dashboards/provisioning", "config/influxdb/init"):
        assert f"./{rel}" in compose, f"{rel} not mounted in docker-compose.yml"
        assert (REPO / rel).exists(), rel
