"""The texts people read, per language: zh-CN (the default) and English.

One JSON catalog per language (``api/static/i18n/<lang>.json``: UI strings, names of
severities, modes, causes, districts, problem titles, and of the alarm types no catalog rule
raises — terminal codes, the offline timer, the canary, maintenance compliance) plus the names
the rule catalog gives its rules (``name_zh`` / ``name_en`` in rules/data/catalog.toml). The
console, problem details and the channels' message texts (semon.notify.texts) all read here.
tests/platform/test_i18n.py checks that both languages are complete and each name has one home.
"""

from __future__ import annotations

import functools
import json
import tomllib
from importlib import resources

LANGUAGES = ("zh-CN", "en")
_FIELD = {"zh-CN": "name_zh", "en": "name_en"}
_FILES = resources.files("semon.api") / "static" / "i18n"  # the browser fetches the same files
# The rule catalog's own names (read as data: this module sits below the rules layer).
_CATALOG = resources.files("semon.rules") / "data" / "catalog.toml"


def ui_messages(lang: str) -> dict[str, str]:
    """The JSON catalog of one language, as shipped."""
    return json.loads((_FILES / f"{lang}.json").read_text("utf-8"))


def catalog_names(lang: str) -> dict[str, str]:
    """``alarm_type.<type>`` → name, from the hazard catalog's rules."""
    rules = tomllib.loads(_CATALOG.read_text("utf-8"))["rule"]
    return {f"alarm_type.{r['alarm_type']}": r[_FIELD[lang]] for r in rules if r.get(_FIELD[lang])}


@functools.cache
def messages(lang: str) -> dict[str, str]:
    """Every text of one language (``lang`` in :data:`LANGUAGES`)."""
    return {**ui_messages(lang), **catalog_names(lang)}
