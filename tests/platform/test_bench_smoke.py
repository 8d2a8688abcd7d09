"""Smoke test of the fleet benchmark harness (``bench/run.py --short``): it runs end to end on
real Mosquitto, InfluxDB and PostgreSQL and its checks hold — no speed is asserted.

Short mode: 2,000 devices, one 15 s level with injected faults, a 5,000-message burst, a
SIGKILL + restart with a backlog, and the raw limits at small sizes; under 2 minutes. The
Node-RED peers need npm and several minutes, so short mode skips them and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import REPO, unavailable

pytestmark = pytest.mark.services


def test_bench_short_mode_runs_and_its_checks_hold(tmp_path: Path):
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        unavailable("mosquitto binary not found (apt-get install mosquitto)")
    if shutil.which("influxd") is None:
        unavailable("influxd binary not found (apt-get install influxdb)")
    pg = os.environ.get("SEMON_TEST_PG_URL")
    if not pg:
        unavailable("SEMON_TEST_PG_URL not set (e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    out = tmp_path / "bench"
    # Its own process group: on a timeout the harness and every service it started go together.
    p = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "run.py"), "--short", "--out", str(out), "--pg", str(pg)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = p.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        stdout, stderr = p.communicate()
        pytest.fail(f"bench/run.py --short did not finish in 300 s:\n{stdout[-3000:]}")
    assert p.returncode == 0, stdout[-3000:] + stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert "semon sustained" in (out / "report.md").read_text()
    assert [f["devices"] for f in res["fleets"]] == [2000]
    fleet = res["fleets"][0]
    cases = {c["kind"]: c for c in fleet["cases"]}
    assert set(cases) == {"level", "burst", "restart"}, list(cases)
    for c in fleet["cases"]:
        assert c["loss"]["lost"] == 0 and c["loss"]["devices_wrong"] == 0, (c["case"], c["loss"])
        assert c["loss"]["published"] > 0 and c["loss"]["stored"] == c["loss"]["published"]
        assert c["alarms"]["duplicates"] == 0 and c["alarms"]["alarms_without_fault"] == 0, (c["case"], c["alarms"])
    level = cases["level"]
    assert level["alarms"]["faults"] >= 1 and level["alarms"]["missed"] == 0, level["alarms"]
    assert level["alarms"]["latency_ms"]["p99"] is not None
    assert level["cpu_pct"].get("collector0") is not None and level["peak_rss_mb"].get("collector0")
    assert cases["burst"]["loss"]["published"] == 5000 and cases["restart"]["loss"]["published"] == 5000
    assert fleet["limits"]["influx"]["conn1"]["points_per_s"] > 0
    sub = res["limits"]["mosquitto_sub"]
    assert sub.get("rate", 0) > 0 or "mosquitto-clients" in sub.get("skipped", "")
    assert any("Node-RED" in s for s in res["skipped"]), res["skipped"]
    assert "Node-RED peers" in stdout  # said in the output, not only in the file
