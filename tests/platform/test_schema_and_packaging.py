"""The database schema the migrations build equals the models; packaging and compose are sound."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from semon.store.db import Database
from semon.store.tables import metadata
from tests.services import REPO, unavailable


def _diff(url: str) -> list[object]:
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        db.dispose()


def test_migrations_match_models_sqlite(tmp_path: Path):
    assert _diff(f"sqlite:///{tmp_path}/m.db") == []


def test_migrations_match_models_postgres(pg_url: str):
    assert _diff(pg_url) == []


def test_only_the_semon_namespace_is_importable_from_the_install():
    # No generic top-level names (api, rules, ingest…) may leak into site-packages.
    names = "('api', 'rules', 'ingest', 'simulators', 'core', 'dashboards')"
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


# Files the installed package reads at run time, named so the check below can never pass on an
# empty wheel: rule catalog and code tables, policy, migrations, schemas, board, Grafana boards.
RUNTIME_FILES = (
    "semon/rules/data/catalog.toml",
    "semon/rules/data/codes.toml",
    "semon/rules/maintenance/default_policy.toml",
    "semon/migrations/env.py",
    "semon/migrations/script.py.mako",
    "semon/migrations/versions/0001_initial_schema.py",
    "semon/contract/schemas/alarm.json",
    "semon/api/static/board/index.html",
    "semon/api/static/board/board.js",
    "semon/api/static/docs/swagger-ui-bundle.js",
    "semon/api/static/docs/redoc.standalone.js",
    "semon/dashboards/push.py",
    "semon/dashboards/json/regulator-fleet.json",
    "semon/dashboards/provisioning/dashboards/semon.yml",
)
# setuptools / distutils warnings in `pip wheel -v` output ("Package would be ignored"…); pip's
# own "WARNING:" lines are about the machine's index configuration, not the package.
BUILD_WARNING = re.compile(r"[A-Za-z]+Warning\b|would be ignored|^\s*warning:", re.M)


def test_the_wheel_carries_every_file_of_the_package_folders_and_builds_without_warnings(tmp_path: Path):
    # Build from a copy of what the build reads, so nothing (build/, egg-info) lands in the checkout.
    package_dir: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in set(package_dir.values()):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # its notice is no warning
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert not BUILD_WARNING.findall(log), "\n".join(line for line in log.splitlines() if BUILD_WARNING.search(line))
    (wheel,) = (tmp_path / "dist").glob("semon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    # Every file in a package folder ships, at its package path (semon.rules = rules/ → semon/rules/…).
    expected = {}
    for pkg, folder in package_dir.items():
        for f in (REPO / folder).rglob("*"):
            rel = f.relative_to(REPO).as_posix()
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                expected[rel] = pkg.replace(".", "/") + "/" + f.relative_to(REPO / folder).as_posix()
    missing = sorted(f"{rel} (as {path})" for rel, path in expected.items() if path not in names)
    assert not missing, f"not in the wheel: {missing}"
    assert set(RUNTIME_FILES) <= set(expected.values()) <= names
    assert {n.split("/")[0] for n in names} == {"semon", wheel.name.split("-py3")[0] + ".dist-info"}
