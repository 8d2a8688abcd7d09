"""The console as its people use it, in Chromium (Playwright): Guangzhou's regulator and two
maintenance firms' dispatchers, on the real API process (uvicorn on a loopback port) and a fresh
PostgreSQL database.

- the regulator signs in with a password; the board in zh-CN shows the trapped passenger as 困人
  with the clock time in Asia/Shanghai (the browser runs in New York: the page must not use its
  zone) and the age; the switch shows "Trapped passenger" and is remembered; the map shows the
  fleet and a red marker for the open critical alarm, clustered city-wide and one by one in the
  district drill-down;
- firm A's dispatcher sees only its alarms, most urgent first, with address, use unit and contact,
  the arrival clock ok / amber / red; acks, assigns, comments, dispatches, arrives and releases
  through the page — and the API shows the same events with that user as the actor;
- firm B's dispatcher sees none of them; a write without the CSRF token is refused (403);
- no request carries a key in its URL; the session cookie is HttpOnly and SameSite=Strict.

Screenshots: test-artifacts/console/01-signin.png … 09-desk-other-firm.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select, update

from semon.config import Settings
from semon.rules.rescue.service import open_rescue
from semon.store.db import Database
from semon.store.keys import create_key
from semon.store.models import Alarm, AlarmEvent, Device
from semon.store.registry import import_devices_csv
from semon.store.rescue import Rescue
from semon.store.telemetry_sqlite import SqliteTelemetryStore
from semon.store.users import create_user
from tests.api.test_board import ARTIFACTS, browser  # noqa: F401  (the Chromium fixture)
from tests.helpers import REGISTRY_HEADER, ApiServer

SHOTS = ARTIFACTS / "console"
PASSWORD = "correct horse battery"
FIRM_A = "F001,广州穗安电梯维保有限公司,4,A,92"
FIRM_B = "F002,广州安达电梯工程有限公司,3,B,80"
REGISTRY = [
    f"E1,,elevator,Tianhe,天河路 385 号,23.132,113.327,{FIRM_A},U01,太古汇物业管理有限公司,3,2018-01-01,2.5,30,-2,,,,",
    f"E2,,elevator,Tianhe,体育东路 118 号,23.135,113.323,{FIRM_A},U02,天河城物业,3,2018-01-01,1.75,20,1,,,,",
    f"E3,,elevator,Yuexiu,中山五路 219 号,23.127,113.270,{FIRM_A},U03,越秀物业,3,2015-01-01,1.0,8,1,,,,",
    f"E4,,elevator,Haizhu,新港中路 397 号,23.098,113.330,{FIRM_B},U04,海珠物业,3,2016-01-01,1.0,12,1,,,,",
    f"V1,,vessel,Panyu,市桥街 8 号,22.938,113.384,{FIRM_A},U05,番禺燃气站,3,2019-05-01,,,,1.76,1.6,80,LPG",
]


@dataclass
class City:
    """The console tests' Guangzhou: the registry above, the regulator and both firms' dispatchers
    as users, a regulator API key; :meth:`serve` runs the API on it. Browser contexts made by
    :meth:`context` record every request URL and page error."""

    db_url: str
    tmp_path: Path
    browser: Any
    db: Database
    telemetry: SqliteTelemetryStore
    key: str
    urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @contextmanager
    def serve(self, **settings: Any) -> Iterator[tuple[ApiServer, httpx.Client]]:
        """The API on the city (dispatcher and canary off, ``settings`` on top) and a client with the key."""
        s = Settings(db_url=self.db_url, telemetry_sqlite_path=self.tmp_path / "t.db", dispatcher_enabled=False,
                     canary_enabled=False, **settings)  # fmt: skip  (api_auth "keys": nothing without credentials)
        with (
            ApiServer(s, self.db, self.telemetry) as api,
            httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=10) as http,
        ):
            yield api, http

    def context(self, height: int = 800) -> Any:
        """A zh-CN browser context in New York's zone (the page must not use the browser's zone)."""
        ctx = self.browser.new_context(
            locale="zh-CN", timezone_id="America/New_York", viewport={"width": 1200, "height": height}
        )
        ctx.on("request", lambda r: self.urls.append(r.url))
        ctx.on("page", lambda p: p.on("pageerror", lambda e: self.errors.append(str(e))))
        return ctx

    def signed_in(self, api: ApiServer, user: str, height: int = 800) -> tuple[Any, Any]:
        """A new :meth:`context` and its page on the console, signed in as ``user``."""
        ctx = self.context(height)
        page = ctx.new_page()
        page.goto(f"{api.url}/board")
        _sign_in(page, user)
        return ctx, page


@contextmanager
def console_city(db_url: str, tmp_path: Path, browser: Any) -> Iterator[City]:  # noqa: F811
    """A fresh :class:`City` on ``db_url``; its stores are closed afterwards."""
    db = Database(db_url)
    (tmp_path / "registry.csv").write_text(REGISTRY_HEADER + "\n" + "\n".join(REGISTRY) + "\n", "utf-8")
    import_devices_csv(db, tmp_path / "registry.csv")
    create_user(db, "gz.regulator", PASSWORD, "regulator", display_name="广州市市场监管局")
    create_user(db, "li.desk", PASSWORD, "firm", firm_id="F001")
    create_user(db, "zhao.desk", PASSWORD, "firm", firm_id="F002")
    _, key = create_key(db, "test-reader", "regulator")
    SHOTS.mkdir(parents=True, exist_ok=True)
    telemetry = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        yield City(db_url, tmp_path, browser, db, telemetry, key)
    finally:
        telemetry.close()
        db.dispose()


def _raise(db: Database, device: str, firm: str, type_: str, severity: str, at: datetime) -> tuple[int, int | None]:
    """An alarm raised at ``at`` (and its rescue when it is a trapped passenger): (alarm id, rescue id)."""
    ts = int(at.timestamp() * 1000)
    with db.session() as s:
        a = Alarm(device_id=device, kind="elevator", firm_id=firm, type=type_, rule_id=f"elevator.{type_}",
                  severity=severity, active=True, onset_ts=ts - 20_000, start_ts=ts, created_at=at, updated_at=at,
                  message=None)  # fmt: skip
        s.add(a)
        s.flush()
        ev = AlarmEvent(alarm_id=a.id, event="raised", ts=ts, at=at, severity=severity)
        s.add(ev)
        s.flush()
        open_rescue(s, ev, a, ["trapped_passenger"])
        alarm_id = a.id
    with db.session() as s:
        rid = s.scalar(select(Rescue.id).where(Rescue.alarm_id == alarm_id))
    return alarm_id, rid


# A same-origin write with the session cookie but without the X-CSRF-Token header.
NO_CSRF_POST = """(url) => fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify({text: "x"})}).then(r => r.status)"""


def _sign_in(page: Any, user: str) -> None:
    page.wait_for_selector("#signin-view:not([hidden])", timeout=10_000)
    page.fill("#si-user", user)
    page.fill("#si-pass", PASSWORD)
    page.click("#si-submit")
    page.wait_for_selector("#signin-view", state="hidden", timeout=10_000)


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_regulator_board_map_and_dispatcher_desk_in_the_browser(pg_url, browser, tmp_path: Path):  # noqa: F811
    with console_city(pg_url, tmp_path, browser) as city:
        with city.db.session() as s:
            s.execute(
                update(Device)
                .where(Device.id == "E1")
                .values(attributes={"contact": "陈经理", "contact_phone": "020-3868 8000"})
            )
        now = datetime.now(UTC).replace(microsecond=0)
        # The trapped passenger the story follows, and two older ones whose arrival clocks run late.
        alarm, rescue = _raise(city.db, "E1", "F001", "trapped_passenger", "critical", now - timedelta(seconds=65))
        red, _ = _raise(city.db, "E2", "F001", "trapped_passenger", "critical", now - timedelta(minutes=26))
        amber, _ = _raise(city.db, "E3", "F001", "trapped_passenger", "critical", now - timedelta(minutes=21))
        other, _ = _raise(city.db, "E4", "F002", "door_fault", "minor", now - timedelta(minutes=3))
        start = int((now - timedelta(seconds=65)).timestamp() * 1000)
        local = datetime.fromtimestamp(start / 1000, ZoneInfo("Asia/Shanghai")).strftime("%H:%M:%S")
        urls, errors = city.urls, city.errors
        with city.serve() as (api, http):
            # ---------------------------------------------------------------- the regulator
            reg = city.context()
            page = reg.new_page()
            page.goto(f"{api.url}/board")
            page.wait_for_selector("#signin-view:not([hidden])", timeout=10_000)
            assert page.inner_text("#signin-view h1") == "登录"
            _shot(page, "01-signin.png")
            _sign_in(page, "gz.regulator")
            card = page.locator(f'#alarms li.alarm[data-alarm-id="{alarm}"]')
            card.wait_for(timeout=10_000)
            assert page.evaluate("document.documentElement.lang") == "zh-CN"
            text = card.inner_text()
            assert "困人" in text and "紧急" in text and "广州穗安电梯维保有限公司" in text and "天河区" in text
            since = card.locator(".since").inner_text()
            assert since.startswith(f"{local} · ") and ("秒前" in since or "分钟前" in since), since
            assert page.inner_text('[data-counter="Open critical"] span') == "未解除·紧急"
            cookie = next(c for c in reg.cookies() if c["name"] == "semon_session")
            assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
            assert page.evaluate("document.cookie").find("semon_session") == -1  # no script can read it
            page.wait_for_selector("#conn.live", timeout=10_000)
            _shot(page, "02-board-zh.png")

            page.click("#lang")
            page.wait_for_function(
                '(id) => document.querySelector(`#alarms li[data-alarm-id="${id}"]`).innerText'
                ".includes('Trapped passenger')",
                arg=alarm,
            )
            assert card.locator(".since").inner_text().startswith(f"{local} · ")
            _shot(page, "03-board-en.png")
            page.reload()  # the choice is remembered
            page.locator(f'#alarms li.alarm[data-alarm-id="{alarm}"]:has-text("Trapped passenger")').wait_for(
                timeout=10_000
            )
            page.click("#lang")
            page.locator(f'#alarms li.alarm[data-alarm-id="{alarm}"]:has-text("困人")').wait_for(timeout=5_000)

            # The map: every device of the fleet, the critical one red (city clusters, then one by one).
            page.click("#nav-map")
            page.wait_for_selector("#map g.cluster", timeout=10_000)
            clusters = page.eval_on_selector_all(
                "#map g.cluster", "gs => gs.map(g => [+g.dataset.count, g.dataset.severity, g.dataset.devices])"
            )
            assert sum(n for n, _, _ in clusters) == len(REGISTRY)
            assert [sev for _, sev, ids in clusters if "E1" in ids.split()] == ["critical"]
            assert [sev for _, sev, ids in clusters if "V1" in ids.split()] == ["calm"]
            _shot(page, "04-map-city.png")
            page.click('#map-districts button[data-district="Tianhe"]')
            marker = page.locator('#map circle.marker[data-device="E1"]')
            marker.wait_for(timeout=5_000)
            assert marker.get_attribute("data-severity") == "critical"
            assert "critical" in marker.get_attribute("class")
            assert page.locator("#map circle.marker").count() == 2  # Tianhe's two elevators
            fill = page.evaluate(
                "getComputedStyle(document.querySelector('#map circle.marker[data-device=\"E1\"]')).fill"
            )
            assert fill == "rgb(240, 80, 79)"  # --critical: red
            _shot(page, "05-map-tianhe.png")
            page.click("#signout")
            page.wait_for_selector("#signin-view:not([hidden])", timeout=5_000)
            assert page.evaluate("fetch('/alarms').then(r => r.status)") == 401
            reg.close()

            # ---------------------------------------------------------------- firm A's dispatcher
            ctx, page = city.signed_in(api, "li.desk")
            page.wait_for_selector(f'#desk li[data-alarm-id="{alarm}"] .rescue:not([hidden])', timeout=10_000)
            ids = page.eval_on_selector_all("#desk > li", "ls => ls.map(l => +l.dataset.alarmId)")
            assert ids == [red, amber, alarm]  # its own only; all critical, the longest waiting first
            mine = page.locator(f'#desk li[data-alarm-id="{alarm}"]')
            where = mine.locator(".where").inner_text()
            assert "天河路 385 号" in where and "太古汇物业管理有限公司" in where and "陈经理" in where
            assert page.inner_text("#desk-firm") == "广州穗安电梯维保有限公司"
            # No city board or map for a firm: its navigation is its desk and its hazards.
            assert page.is_hidden("#nav-fleet") and page.is_hidden("#nav-map") and page.is_hidden("#fleet-view")
            assert page.is_visible("#nav-desk") and page.is_visible("#nav-hazards")
            page.wait_for_function(
                f"document.querySelector('#desk li[data-alarm-id=\"{red}\"] .arrival-clock').dataset.level === 'red'"
            )
            levels = {i: page.get_attribute(f'#desk li[data-alarm-id="{i}"] .arrival-clock', "data-level")
                      for i in (alarm, amber, red)}  # fmt: skip
            assert levels == {alarm: "ok", amber: "amber", red: "red"}
            assert re.fullmatch(r"到场倒计时 \d+:\d\d（时限 30 分钟）", mine.locator(".arrival-clock").inner_text())
            page.wait_for_selector("#conn.live", timeout=5_000)  # the desk says it is up to date
            _shot(page, "06-desk.png")

            mine.locator("button.ack").click()
            page.wait_for_function(f"document.querySelector('#desk li[data-alarm-id=\"{alarm}\"] button.ack').disabled")
            mine.locator("input.assignee").fill("王师傅")
            mine.locator("button.assign").click()
            mine.locator('.state:has-text("指派给：王师傅")').wait_for(timeout=5_000)
            mine.locator("input.comment").fill("已电话安抚乘客")
            mine.locator("button.comment-btn").click()
            mine.locator('.events li[data-event="comment"]').wait_for(timeout=5_000)
            mine.locator("input.responder").fill("王师傅")
            mine.locator("button.dispatch").click()
            mine.locator('.rescue[data-status="dispatched"]').wait_for(timeout=5_000)
            _shot(page, "07-desk-dispatched.png")
            mine.locator("button.arrive").click()
            mine.locator('.rescue[data-status="arrived"]').wait_for(timeout=5_000)
            assert mine.locator(".arrival-clock").inner_text() == ""  # on site: the clock stops
            mine.locator("select.cause").select_option("equipment")
            mine.locator("button.release").click()
            mine.locator('.rescue[data-status="released"]').wait_for(timeout=5_000)
            assert "设备故障" in mine.locator(".rescue-status").inner_text()
            _shot(page, "08-desk-released.png")

            # A write without the session's CSRF token is refused, even from the page itself.
            status = page.evaluate(NO_CSRF_POST, f"/alarms/{amber}/comments")
            assert status == 403
            ctx.close()

            # The API holds the same story, with the person as the actor of every step.
            events = http.get(f"/alarms/{alarm}").json()["events"]
            by_event = {e["event"]: e for e in events}
            for ev in ("acknowledged", "assigned", "comment", "dispatched", "arrived", "released"):
                assert by_event[ev]["actor"] == "li.desk", (ev, by_event.get(ev))
            assert by_event["assigned"]["details"]["assignee"] == "王师傅"
            r = http.get(f"/rescues/{rescue}").json()
            assert (r["status"], r["cause"], r["responder"]) == ("released", "equipment", "王师傅")
            assert r["dispatched_by"] == r["arrived_by"] == r["released_by"] == "li.desk"
            assert [e["event"] for e in http.get(f"/alarms/{amber}").json()["events"]] == ["raised"]

            # ---------------------------------------------------------------- firm B's dispatcher
            ctx, page = city.signed_in(api, "zhao.desk")
            page.wait_for_selector(f'#desk li[data-alarm-id="{other}"]', timeout=10_000)
            assert page.eval_on_selector_all("#desk > li", "ls => ls.map(l => +l.dataset.alarmId)") == [other]
            assert "门故障" in page.inner_text(f'#desk li[data-alarm-id="{other}"]')
            assert page.evaluate(f"fetch('/alarms/{alarm}').then(r => r.status)") == 404
            assert page.evaluate(f"fetch('/rescues/{rescue}').then(r => r.status)") == 404
            assert (
                page.evaluate("fetch('/board/state').then(r => r.status)") == 403
            )  # the city board is the regulator's
            _shot(page, "09-desk-other-firm.png")
            ctx.close()
        assert urls and not [u for u in urls if "key=" in u or "smk_" in u], [u for u in urls if "key" in u]
        assert not errors, errors


# The smallest valid PNG (1×1, grey): what the loopback tile server answers.
TILE_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
    "0000000a49444154789c636860000000820081dd4387c90000000049454e44ae426082"
)


def test_map_uses_the_configured_tile_server_and_none_without_it(browser, tmp_path: Path):  # noqa: F811
    """SEMON_MAP_TILE_URL: tiles come from that server ({z}/{x}/{y}); unset, no tile request at all."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked: list[str] = []

    class Tiles(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            ok = re.fullmatch(r"/gz/(\d+)/(\d+)/(\d+)\.png", self.path)
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(TILE_PNG if ok else b"")

        def log_message(self, *_: Any) -> None:
            pass

    tiles = ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    threading.Thread(target=tiles.serve_forever, daemon=True).start()
    template = f"http://127.0.0.1:{tiles.server_address[1]}/gz/{{z}}/{{x}}/{{y}}.png"
    try:
        with console_city(f"sqlite:///{tmp_path}/semon.db", tmp_path, browser) as city:
            for url in (template, None):
                asked.clear()
                with city.serve(map_tile_url=url) as (api, _):
                    page = browser.new_page(viewport={"width": 1000, "height": 800})
                    page.goto(f"{api.url}/board#/map")
                    _sign_in(page, "gz.regulator")
                    page.click("#nav-map")
                    page.wait_for_selector("#map g.cluster", timeout=10_000)
                    images = page.eval_on_selector_all("#map image.tile", "is => is.map(i => i.getAttribute('href'))")
                    if url:
                        assert images and all(re.search(r"/gz/\d+/\d+/\d+\.png$", i) for i in images)
                        deadline = time.monotonic() + 10
                        while len(asked) < len(images) and time.monotonic() < deadline:
                            time.sleep(0.05)
                        assert sorted(asked) == sorted(urlparse(i).path for i in images)
                        # Guangzhou's centre (113.26 E, 23.13 N) lies in the tiles drawn, at their zoom.
                        z = int(images[0].split("/")[-3])
                        cx = int((113.26 + 180) / 360 * 2**z)
                        assert cx in {int(i.split("/")[-2]) for i in images}
                        page.screenshot(path=str(SHOTS / "10-map-tiles.png"))
                    else:
                        assert images == [] and asked == []
                        assert page.locator("#map rect.outline").count() == 1
                    page.close()
    finally:
        tiles.shutdown()
