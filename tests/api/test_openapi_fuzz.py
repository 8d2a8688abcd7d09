"""Property-based run of the whole OpenAPI spec (schemathesis): no 500s, no schema violations."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from semon.api.app import create_app
from semon.config import Settings
from semon.store.db import Database
from semon.store.keys import create_key
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from tests.helpers import small_registry
from tests.services import free_port, wait_port

# Built at import: schemathesis parametrizes tests from the schema at collection time.
_TMP = Path(tempfile.mkdtemp(prefix="semon-fuzz-"))
atexit.register(shutil.rmtree, _TMP, True)
_DB = Database(f"sqlite:///{_TMP}/fuzz.db")
small_registry(_DB, _TMP / "reg.csv")
_TOKEN = create_key(_DB, "fuzzer", "regulator")[1]
_APP = create_app(
    Settings(db_url=_DB.url, api_auth="keys", api_rate_per_s=1e6, api_rate_burst=10**6),
    db=_DB,
    telemetry=SqliteTelemetryStore(_TMP / "tel.db"),
)
# A real HTTP server (not an in-process transport): what is fuzzed is what clients get.
_PORT = free_port()
_SERVER = uvicorn.Server(uvicorn.Config(_APP, host="127.0.0.1", port=_PORT, log_config=None, access_log=False))
threading.Thread(target=_SERVER.run, daemon=True).start()
wait_port(_PORT)
atexit.register(setattr, _SERVER, "should_exit", True)
schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{_PORT}/openapi.json")


# What the issue asks: no server errors, and responses (status, type, headers, body) as documented.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_own_spec(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {_TOKEN}"}, checks=CHECKS)
