"""WeCom (企业微信) group robot: ``POST …/cgi-bin/webhook/send?key=KEY`` with a JSON message.

Format per the WeCom developer docs, 群机器人配置说明
(https://developer.work.weixin.qq.com/document/path/91770): body
``{"msgtype": "text", "text": {"content": …, "mentioned_mobile_list": […]}}`` (content ≤ 2048
bytes, UTF-8); the reply is ``{"errcode": 0, "errmsg": "ok"}`` — any other ``errcode`` (e.g.
45009 rate limit, 20 messages a minute per robot) is a failure to retry.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from semon.notify.channels.base import Channel, SendContext, json_reply
from semon.notify.targets import post_pinned, resolve

URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
MAX_BYTES = 2048


class WeComSettings(BaseModel):
    """Who is @-mentioned in the group."""

    model_config = ConfigDict(extra="forbid")
    mentioned_mobiles: list[str] = Field(default_factory=list, max_length=50, description="@ these phone numbers")


class WeComCredentials(BaseModel):
    """The robot's key (the ``key=`` of its webhook address)."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=8, max_length=200)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes on a character boundary."""
    raw = text.encode()
    return text if len(raw) <= limit else raw[: limit - 3].decode(errors="ignore") + "…"


def send(ctx: SendContext, url: str, creds: dict[str, Any], settings: dict[str, Any], text: dict[str, Any]) -> int:
    """Post one message; the status code when WeCom took it."""
    body: dict[str, Any] = {"msgtype": "text", "text": {"content": clip(text["text"], MAX_BYTES)}}
    if settings.get("mentioned_mobiles"):
        body["text"]["mentioned_mobile_list"] = settings["mentioned_mobiles"]
    p = resolve(url, ctx.policy)
    resp = post_pinned(ctx.http, p, content=orjson.dumps(body), headers={"Content-Type": "application/json"},
                       params={"key": creds["key"]})  # fmt: skip
    return json_reply(resp, lambda b: b.get("errcode") == 0)


CHANNEL = Channel("wecom", "企业微信群机器人 WeCom group robot", WeComSettings, WeComCredentials, URL, send)
