"""Every text a person reads exists in both languages (zh-CN first, English).

The catalogs are api/static/i18n/{zh-CN,en}.json. Checked here: the same keys in both, nothing
empty, a name for every alarm type semon can raise (hazard catalog, terminal code tables, the
offline timer, the platform canary, maintenance compliance), every severity, service mode,
rescue cause and tier, and every key the page's HTML and scripts use.
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib import resources
from typing import get_args

from semon.api.routes_rescues import RescueStatus, Tier
from semon.i18n import catalog_names, messages, ui_messages
from semon.notify.canary import MONITORING_DEGRADED
from semon.rules.base import Severity
from semon.rules.catalog import CATALOG_FILE
from semon.rules.hazards import service as hs
from semon.rules.hazards.catalog import CLASSES
from semon.rules.maintenance.compliance import inspection_spec, maintenance_overdue_spec, reversion_spec
from semon.rules.maintenance.policy import load_policy
from semon.rules.rescue.service import rescue_causes
from tests.services import REPO

STATIC = resources.files("semon.api") / "static"
LANGS = ("zh-CN", "en")
CJK = re.compile(r"[\u4e00-\u9fff]")


def _catalog(lang: str) -> dict[str, str]:
    return messages(lang)  # what the page gets: the JSON catalog and the hazard catalog's names


def _alarm_types() -> set[str]:
    catalog = tomllib.loads(CATALOG_FILE.read_text("utf-8"))
    types = {r["alarm_type"] for r in catalog["rule"]}
    codes = tomllib.loads((CATALOG_FILE.parent / "codes.toml").read_text("utf-8"))
    types |= {c["alarm_type"] for s in codes["schemes"].values() for c in s["codes"].values()}
    engine = (REPO / "rules" / "engine.py").read_text("utf-8")
    types |= set(re.findall(r'RuleSpec\(OFFLINE_SPEC_ID, "\*", "([a-z_]+)"', engine))
    policy = load_policy()
    types |= {MONITORING_DEGRADED.alarm_type, reversion_spec(policy).alarm_type}
    types |= {
        maintenance_overdue_spec(c, policy).alarm_type for c in ("half_month", "quarterly", "half_year", "yearly")
    }
    types |= {inspection_spec("elevator", s, policy).alarm_type for s in ("overdue", "due_soon")}
    return types


def test_every_catalog_rule_names_its_alarm_type_in_both_languages_and_each_name_has_one_home():
    rules = tomllib.loads(CATALOG_FILE.read_text("utf-8"))["rule"]
    names: dict[str, tuple[str, str]] = {}
    for r in rules:
        assert r.get("name_zh") and r.get("name_en"), f"rule {r['id']} lacks name_zh / name_en"
        assert CJK.search(r["name_zh"]) and not CJK.search(r["name_en"]), r["id"]
        # Rules sharing an alarm type (per kind) give it the same name.
        assert names.setdefault(r["alarm_type"], (r["name_zh"], r["name_en"])) == (r["name_zh"], r["name_en"]), r["id"]
    for lang in LANGS:
        shipped = ui_messages(lang)
        assert not sorted(k for k in catalog_names(lang) if k in shipped), "named twice: catalog.toml and JSON"
    assert set(ui_messages("zh-CN")) == set(ui_messages("en"))


def test_both_catalogs_have_the_same_keys_and_no_empty_text():
    zh, en = (_catalog(lang) for lang in LANGS)
    assert set(zh) == set(en), {"only zh-CN": sorted(set(zh) - set(en)), "only en": sorted(set(en) - set(zh))}
    assert not [k for k, v in {**zh, **en}.items() if not v.strip()]
    # Chinese first means Chinese: every name of an alarm type, severity and mode is written in it.
    for k, v in zh.items():
        if k.split(".")[0] in ("alarm_type", "severity", "mode", "cause", "tier", "district"):
            assert CJK.search(v), f"zh-CN {k} = {v!r} is not Chinese"
    # Placeholders match, so no language loses a number.
    for k in zh:
        assert set(re.findall(r"\{\w+\}", zh[k])) == set(re.findall(r"\{\w+\}", en[k])), k


def test_every_alarm_type_severity_mode_cause_and_tier_has_both_languages():
    zh, en = (_catalog(lang) for lang in LANGS)
    schema = json.loads((REPO / "core" / "contract" / "schemas" / "elevator-status.json").read_text("utf-8"))
    wanted = (
        {f"alarm_type.{t}" for t in _alarm_types()}
        | {f"severity.{s.value}" for s in Severity}
        | {f"mode.{m}" for m in schema["$defs"]["ServiceMode"]["enum"]}
        | {f"cause.{c}" for c in rescue_causes()}
        | {f"tier.{t}" for t in get_args(Tier)}
    )
    assert "alarm_type.trapped_passenger" in wanted and len(wanted) > 40
    for cat in (zh, en):
        assert not sorted(wanted - set(cat)), sorted(wanted - set(cat))
    assert zh["alarm_type.trapped_passenger"] == "困人" and en["alarm_type.trapped_passenger"] == "Trapped passenger"
    assert zh["alarm_type.door_open_while_moving"] == "开门走梯" and zh["alarm_type.overpressure"] == "超压"


def test_every_key_the_page_uses_is_in_the_catalogs():
    zh = _catalog("zh-CN")
    board = STATIC / "board"
    html = (board / "index.html").read_text("utf-8")
    used = set(re.findall(r'data-i18n(?:-ph)?="([^"]+)"', html))
    for js in ("board.js", "desk.js", "map.js", "i18n.js", "hazards.js"):
        src = (board / js).read_text("utf-8")
        used |= set(re.findall(r'\bt\("([a-z_.0-9]+)"', src))
    used |= {f"ui.desk.rescue_status.{s.value}" for s in RescueStatus}  # built from the rescue's status
    # Built from a hazard's status, class and steps (rules/hazards/service.py).
    used |= {f"hazard.status.{s}" for s in ("candidate", *hs.OPEN_STATES[1:], "closed", "rejected")}
    used |= {f"hazard.class.{c}" for c in CLASSES}
    used |= {f"hazard.step.{s}" for s in (*hs.STEPS, "found", "proposed", "linked", "evidence", "escalated")}
    assert len(used) > 50
    assert not sorted(used - set(zh)), sorted(used - set(zh))


def test_problem_titles_are_chinese_first_and_english_by_accept_language(tmp_path):
    from fastapi.testclient import TestClient

    from semon.api.app import create_app
    from semon.config import Settings

    zh, en = (_catalog(lang) for lang in LANGS)
    api = "".join(p.read_text("utf-8") for p in (REPO / "api").glob("*.py"))
    slugs = set(re.findall(r'slug="([a-z-]+)"', api))
    assert {"unauthorized", "csrf", "rate-limited", "validation-error"} <= slugs
    for cat in (zh, en):
        assert not sorted(f"problem.{s}" for s in slugs if f"problem.{s}" not in cat)
    settings = Settings(db_url=f"sqlite:///{tmp_path}/semon.db", telemetry_sqlite_path=tmp_path / "t.db",
                        dispatcher_enabled=False, canary_enabled=False)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        r = c.get("/alarms")
        assert r.status_code == 401 and r.json()["title"] == "未登录或凭据无效"
        assert r.json()["type"] == "urn:semon:problem:unauthorized"  # machines switch on this, unchanged
        assert c.get("/alarms", headers={"Accept-Language": "en-GB,en;q=0.9"}).json()["title"] == "Unauthorized"
        assert (
            c.get("/alarms", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).json()["title"]
            == "未登录或凭据无效"
        )
        assert c.get("/nowhere").json()["title"] == "未找到"
