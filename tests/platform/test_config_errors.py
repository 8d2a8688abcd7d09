"""Bad configuration and services missing at start: one line on stderr naming the ``SEMON_*``
variable (or the service) and what to do, exit code 2, no traceback — each case run as a real
``python -m semon`` process, as an operator would meet it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from semon.ports import free_port

SEMON = [sys.executable, "-m", "semon"]


def run(args: list[str], env: dict[str, str], tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``semon ARGS`` with a clean SEMON_* environment plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEMON_")}
    base.update({"SEMON_DATA_DIR": str(tmp_path / "data"), "SEMON_DB_URL": f"sqlite:///{tmp_path}/semon.db",
                 "SEMON_CANARY_ENABLED": "false", "SEMON_DISPATCHER_ENABLED": "false"})  # fmt: skip
    base.update(env)
    return subprocess.run([*SEMON, *args], env=base, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


def _unreachable_pg() -> str:
    return f"postgresql://semon@127.0.0.1:{free_port()}/semon"  # nothing listens there


CASES = [
    # (id, command, environment, text the one line must contain)
    ("batch-max-lines", ["collect"], {"SEMON_BATCH_MAX_LINES": "abc", "SEMON_MQTT_URL": "mqtt://127.0.0.1:1"},
     "SEMON_BATCH_MAX_LINES: 'abc' is not valid"),
    ("log-level", ["api"], {"SEMON_LOG_LEVEL": "LOUD"}, "SEMON_LOG_LEVEL: 'LOUD' is not a log level"),
    ("api-auth", ["api"], {"SEMON_API_AUTH": "none"}, "SEMON_API_AUTH: 'none' is not valid: Input should be 'keys'"),
    ("mysql", ["api"], {"SEMON_DB_URL": "mysql://root:pw@127.0.0.1/semon"}, "SEMON_DB_URL: MySQL / MariaDB is not"),
    ("db-scheme", ["collect"], {"SEMON_DB_URL": "oracle://x@y/z"}, "SEMON_DB_URL: unsupported database URL"),
    ("pg-down-api", ["api"], {"SEMON_DB_URL": "PG_DOWN"}, "database unreachable (SEMON_DB_URL)"),
    ("pg-down-collect", ["collect"], {"SEMON_DB_URL": "PG_DOWN", "SEMON_MQTT_URL": "mqtt://127.0.0.1:1"},
     "database unreachable (SEMON_DB_URL)"),
    ("collect-embedded", ["collect"], {"SEMON_MQTT_URL": "embedded"}, "SEMON_MQTT_URL: semon collect needs a broker"),
    ("mqtt-scheme", ["collect"], {"SEMON_MQTT_URL": "ws://127.0.0.1:9001"}, "SEMON_MQTT_URL: unsupported scheme 'ws'"),
    ("mqtts-no-ca", ["collect"],
     {"SEMON_MQTT_URL": "mqtts://127.0.0.1:8883", "SEMON_MQTT_CA_FILE": "/nonexistent/ca.crt"},
     "SEMON_MQTT_CA_FILE: file /nonexistent/ca.crt not found"),
    ("broker-down-simulate", ["simulate", "--duration", "1"], {"SEMON_MQTT_URL": "BROKER_DOWN"},
     "MQTT broker unreachable (SEMON_MQTT_URL / --mqtt-url)"),
    ("two-bad-values", ["api"], {"SEMON_API_PORT": "http", "SEMON_API_RATE_PER_S": "-1"},
     "SEMON_API_PORT: 'http' is not valid"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "env", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_line_naming_the_setting_exit_2(tmp_path: Path, command: list[str], env: dict[str, str], expected: str):
    env = {k: _unreachable_pg() if v == "PG_DOWN" else f"mqtt://127.0.0.1:{free_port()}" if v == "BROKER_DOWN" else v
           for k, v in env.items()}  # fmt: skip
    r = run(command, env, tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("semon: ") and expected in lines[0], lines[0]
    assert r.stdout == ""


def test_debug_shows_the_traceback_too(tmp_path: Path):
    r = run(["api"], {"SEMON_LOG_LEVEL": "DEBUG", "SEMON_DB_URL": _unreachable_pg()}, tmp_path)
    assert r.returncode == 2
    assert "Traceback" in r.stderr
    assert r.stderr.splitlines()[-1].startswith("semon: database unreachable (SEMON_DB_URL)")


def test_postgres_scheme_is_accepted(tmp_path: Path, pg_url: str):
    # postgres:// (what many hosts hand out) means PostgreSQL through psycopg, not an error.
    url = "postgres://" + pg_url.split("://", 1)[1]
    r = run(["db", "upgrade"], {"SEMON_DB_URL": url}, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "schema up to date" in r.stderr

