"""``semon dashboards push`` against a local HTTP server that behaves like Grafana's API.

The server keeps folders, datasources and dashboards in memory and records every request, so
the tests check what was sent (paths, auth, bodies) and that pushing twice changes nothing.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from semon.cli import app
from semon.dashboards.push import (
    DATASOURCE_UID,
    FOLDER_UID,
    PushError,
    connect,
    datasource_model,
    default_dashboards_dir,
    load_dashboards,
    push,
)
from semon.simulators.fleet import build_fleet
from semon.store.db import Database
from semon.store.influx import InfluxStore
from semon.store.registry import import_devices_csv
from tests.services import REPO

BOARDS_DIR = REPO / "dashboards" / "json"


def test_the_default_boards_are_the_installed_packages_wherever_semon_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import semon.dashboards

    monkeypatch.chdir(tmp_path)  # no checkout here: the boards come from the package, not ./dashboards
    found = default_dashboards_dir()
    assert Path(str(found)).parent == Path(semon.dashboards.__file__).parent
    assert [b["uid"] for b in load_dashboards(found)] == [b["uid"] for b in load_dashboards(BOARDS_DIR)]


class FakeGrafana:
    """The slice of Grafana's HTTP API that grafana-client's folder/datasource/dashboard calls use."""

    def __init__(self, token: str | None = "glsa_test", basic: tuple[str, str] | None = None) -> None:
        self.token = token
        self.basic = basic
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, json body)
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.ids = iter(range(1, 10_000))
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:  # keep pytest output clean
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                fake.requests.append((self.command, self.path, body))
                # Like Grafana, the login page's settings (grafana-client's health check) need no credentials.
                open_paths = ("/api/frontend/settings", "/api/health")
                if self.path not in open_paths and not fake.authorised(self.headers.get("Authorization", "")):
                    return self._reply(401, {"message": "Unauthorized"})
                status, out = fake.route(self.command, self.path, body)
                self._reply(status, out)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def authorised(self, header: str) -> bool:
        """Bearer token or basic auth, whichever this server was given."""
        if self.token and header == f"Bearer {self.token}":
            return True
        if self.basic:
            return header == "Basic " + base64.b64encode(":".join(self.basic).encode()).decode()
        return False

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """Answer like Grafana 11 does for the endpoints the push uses."""
        parts = path.split("?")[0].strip("/").split("/")
        match method, parts:
            case "GET", ["api", "frontend", "settings"]:
                return 200, {"buildInfo": {"version": "11.2.0", "edition": "Open Source"}}
            case "GET", ["api", "health"]:
                return 200, {"database": "ok", "version": "11.2.0", "commit": "abc"}
            case "GET", ["api", "folders", uid]:
                return (200, self.folders[uid]) if uid in self.folders else (404, {"message": "folder not found"})
            case "POST", ["api", "folders"]:
                folder = {"id": next(self.ids), "uid": body["uid"], "title": body["title"], "version": 1}
                self.folders[body["uid"]] = folder
                return 200, folder
            case "PUT", ["api", "folders", uid]:
                self.folders[uid]["title"] = body["title"]
                return 200, self.folders[uid]
            case "GET", ["api", "datasources", "uid", uid]:
                if uid not in self.datasources:
                    return 404, {"message": "Data source not found"}
                public = {k: v for k, v in self.datasources[uid].items() if k != "secureJsonData"}
                return 200, public
            case "POST", ["api", "datasources"]:
                if any(d["name"] == body["name"] for d in self.datasources.values()):
                    return 409, {"message": "data source with the same name already exists"}
                ds = {**body, "id": next(self.ids), "readOnly": False}
                self.datasources[body["uid"]] = ds
                return 200, {"datasource": ds, "id": ds["id"], "message": "Datasource added"}
            case "PUT", ["api", "datasources", "uid", uid]:
                if self.datasources[uid].get("readOnly"):
                    return 403, {"message": "Cannot update read-only data source"}
                self.datasources[uid] = {**body, "id": self.datasources[uid]["id"], "readOnly": False}
                return 200, {"message": "Datasource updated"}
            case "GET", ["api", "dashboards", "uid", uid]:
                if uid not in self.dashboards:
                    return 404, {"message": "Dashboard not found"}
                return 200, copy.deepcopy(self.dashboards[uid])
            case "POST", ["api", "dashboards", "db"]:
                board = body["dashboard"]
                cur = self.dashboards.get(board["uid"])
                if cur and cur["meta"].get("provisioned"):
                    return 400, {"message": "Cannot save provisioned dashboard"}
                version = cur["dashboard"]["version"] + 1 if cur else 1
                stored = {**board, "id": cur["dashboard"]["id"] if cur else next(self.ids), "version": version}
                self.dashboards[board["uid"]] = {
                    "dashboard": stored, "meta": {"folderUid": body.get("folderUid", ""), "provisioned": False},
                }  # fmt: skip
                return 200, {"id": stored["id"], "uid": board["uid"], "status": "success", "version": version}
        return 404, {"message": f"no route {method} {path}"}

    def calls(self, method: str, prefix: str) -> list[tuple[str, str, Any]]:
        """Recorded requests with this method whose path starts with ``prefix``."""
        return [r for r in self.requests if r[0] == method and r[1].startswith(prefix)]


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    g = FakeGrafana()
    g.thread.start()
    yield g
    g.server.shutdown()
    g.server.server_close()


def test_push_creates_everything_then_is_idempotent(grafana: FakeGrafana):
    boards = load_dashboards(BOARDS_DIR)
    ds = datasource_model("http://influxdb:8086", "semon", "influx-token")
    api = connect(grafana.url, grafana.token)

    first = push(api, boards, ds)
    assert first.folder == "created" and first.datasource == "created"
    assert set(first.dashboards.values()) == {"created"} and len(first.dashboards) == len(boards) >= 3
    # What reached Grafana.
    (_, _, folder_body), = grafana.calls("POST", "/api/folders")
    assert folder_body == {"title": "semon", "uid": FOLDER_UID}
    (_, _, ds_body), = grafana.calls("POST", "/api/datasources")
    assert ds_body["uid"] == DATASOURCE_UID and ds_body["type"] == "influxdb" and ds_body["access"] == "proxy"
    assert ds_body["url"] == "http://influxdb:8086"
    assert ds_body["jsonData"]["version"] == "InfluxQL" and ds_body["jsonData"]["dbName"] == "semon"
    assert ds_body["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds_body["secureJsonData"] == {"httpHeaderValue1": "Token influx-token"}
    posted = grafana.calls("POST", "/api/dashboards/db")
    assert {b["dashboard"]["uid"] for _, _, b in posted} == {b["uid"] for b in boards}
    for _, _, b in posted:
        assert b["folderUid"] == FOLDER_UID and b["overwrite"] is True and b["dashboard"]["id"] is None
    stored = {uid: d["dashboard"] for uid, d in grafana.dashboards.items()}
    assert {uid: d["title"] for uid, d in stored.items()} == {b["uid"]: b["title"] for b in boards}

    # Second push: nothing new is created, no dashboard is saved again.
    n = len(grafana.requests)
    second = push(connect(grafana.url, grafana.token), boards, ds)
    assert (second.folder, second.datasource) == ("unchanged", "updated")
    assert set(second.dashboards.values()) == {"unchanged"}
    later = grafana.requests[n:]
    assert not [r for r in later if r[0] == "POST"], later
    assert [r[1] for r in later if r[0] == "PUT"] == [f"/api/datasources/uid/{DATASOURCE_UID}"]
    assert len(grafana.datasources) == 1 and len(grafana.folders) == 1

    # A changed board is the only one saved again.
    edited = copy.deepcopy(boards)
    edited[0]["title"] += " (edited)"
    third = push(api, edited, ds)
    assert [uid for uid, what in third.dashboards.items() if what == "updated"] == [edited[0]["uid"]]
    assert grafana.dashboards[edited[0]["uid"]]["dashboard"]["version"] == 2


def test_push_leaves_provisioned_objects_alone_and_reports_conflicts(grafana: FakeGrafana):
    boards = load_dashboards(BOARDS_DIR)
    ds = datasource_model("http://influxdb:8086", "semon", None)
    assert "secureJsonData" not in ds and "httpHeaderName1" not in ds["jsonData"]
    grafana.datasources[DATASOURCE_UID] = {**ds, "id": 7, "readOnly": True}
    grafana.dashboards[boards[0]["uid"]] = {"dashboard": {**boards[0], "id": 3, "version": 4},
                                           "meta": {"folderUid": "semon", "provisioned": True}}  # fmt: skip
    report = push(connect(grafana.url, grafana.token), boards, ds)
    assert report.datasource == "provisioned (left as is)"
    assert report.dashboards[boards[0]["uid"]] == "provisioned (left as is)"
    assert not grafana.calls("PUT", "/api/datasources")
    assert boards[0]["uid"] not in {b["dashboard"]["uid"] for _, _, b in grafana.calls("POST", "/api/dashboards/db")}

    # Same name, other uid: a clear error instead of a second datasource.
    grafana.datasources.clear()
    grafana.datasources["other"] = {**ds, "uid": "other", "id": 9}
    with pytest.raises(PushError, match="already has a datasource named"):
        push(connect(grafana.url, grafana.token), boards, ds)


def test_push_refuses_bad_credentials_and_boards_without_uid(grafana: FakeGrafana, tmp_path: Path):
    from grafana_client.client import GrafanaUnauthorizedError

    with pytest.raises(GrafanaUnauthorizedError):
        push(connect(grafana.url, "wrong"), load_dashboards(BOARDS_DIR), None)
    assert not grafana.folders and not grafana.dashboards
    with pytest.raises(PushError, match="not reachable"):
        connect("http://127.0.0.1:9")  # nothing listens on the discard port
    (tmp_path / "x.json").write_text(json.dumps({"title": "no uid"}))
    with pytest.raises(PushError, match="needs a uid"):
        load_dashboards(tmp_path)
    with pytest.raises(PushError, match="no dashboards"):
        load_dashboards(tmp_path / "empty")


def test_cli_push_with_basic_auth_and_device_info(tmp_path: Path, influx, monkeypatch: pytest.MonkeyPatch):
    g = FakeGrafana(token=None, basic=("admin", "s3cret"))
    g.thread.start()
    db_url = f"sqlite:///{tmp_path}/semon.db"
    db = Database(db_url)
    try:
        fleet = build_fleet(4, 2, 3)
        import_devices_csv(db, fleet.write_registry_csv(tmp_path / "registry.csv"))
        InfluxStore(influx.url, "semon").ensure_database()
        for k, v in {"SEMON_DB_URL": db_url, "SEMON_INFLUX_URL": influx.url, "SEMON_INFLUX_DB": "semon",
                     "SEMON_INFLUX_TOKEN": "tok"}.items():  # fmt: skip
            monkeypatch.setenv(k, v)
        url = g.url.replace("http://", "http://admin:s3cret@")
        res = CliRunner().invoke(app, ["dashboards", "push", "--url", url, "--influx-url", "http://influxdb:8086"])
        assert res.exit_code == 0, res.output
        assert "datasource semon-influx: created" in res.output
        assert "device_info: 6 devices written" in res.output
        (_, _, ds_body), = g.calls("POST", "/api/datasources")
        assert ds_body["secureJsonData"] == {"httpHeaderValue1": "Token tok"}
        rows = InfluxStore(influx.url, "semon").rows('SELECT * FROM "device_info" GROUP BY "device_id"')
        assert {r["device_id"] for r in rows} == {d.device_id for d in fleet}
        vessels = {r["device_id"]: r for r in rows if r["kind"] == "vessel"}
        for d in fleet:
            if d.vessel:
                assert vessels[d.device_id]["set_pressure"] == d.vessel.set_pressure
        res = CliRunner().invoke(app, ["dashboards", "push", "--url", g.url, "--no-device-info"])  # no credentials
        assert res.exit_code == 1 and "Unauthorized" in res.output, res.output
    finally:
        db.dispose()
        g.server.shutdown()
        g.server.server_close()
