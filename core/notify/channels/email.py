"""E-mail over SMTP with STARTTLS (stdlib ``smtplib``), to the firm's own relay.

Submission as in RFC 6409 / RFC 3207: connect (port 587 by default), ``EHLO``, ``STARTTLS``
with the certificate checked against the relay's name, ``EHLO`` again, ``AUTH`` when a user is
set, then the message (UTF-8, subject and body in Chinese with English). A relay that does not
offer STARTTLS is refused: the password and the alarm never travel in clear.

The relay's host goes through the same target check as webhooks (:mod:`semon.notify.targets`)
and the connection is pinned to the checked address.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from semon.notify.channels.base import Channel, DeliveryFailed, SendContext
from semon.notify.targets import Pinned, resolve

# An address without display name or spaces (enough to catch typos; the relay has the last word).
Address = Annotated[str, Field(pattern=r"^[^@\s<>,]+@[^@\s<>,]+\.[^@\s<>,]+$", max_length=254)]


class EmailSettings(BaseModel):
    """The relay, the sender and the recipients."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field(
        min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._:-]+$", description="SMTP relay (submission) host name"
    )
    port: int = Field(587, ge=1, le=65535)
    username: str | None = Field(None, max_length=200)
    sender: Address
    recipients: list[Address] = Field(min_length=1, max_length=100)


class EmailCredentials(BaseModel):
    """The relay password (when ``username`` is set)."""

    model_config = ConfigDict(extra="forbid")
    password: str | None = Field(None, max_length=200)


class _PinnedSMTP(smtplib.SMTP):
    """An SMTP client dialling the checked address while speaking to (and checking the
    certificate of) the name: ``starttls()`` uses ``_host`` as the TLS server name."""

    def __init__(self, p: Pinned, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.connect(str(p.ip), p.port)
        self._host = p.host


def smtp_url(settings: dict[str, Any]) -> str:
    """The target the row stores and the check sees: ``smtp://host:port``."""
    host = settings["host"]
    return f"smtp://{'[' + host + ']' if ':' in host else host}:{settings.get('port') or 587}"


def send(ctx: SendContext, url: str, creds: dict[str, Any], settings: dict[str, Any], text: dict[str, Any]) -> None:
    """Send one message to every recipient; :class:`DeliveryFailed` if the relay refuses."""
    p = resolve(url, ctx.policy, schemes=("smtp",))
    msg = EmailMessage()
    msg["Subject"] = text["title"]
    msg["From"] = settings["sender"]
    msg["To"] = ", ".join(settings["recipients"])
    msg["Date"] = formatdate(ctx.clock(), localtime=False)
    msg["Message-ID"] = make_msgid(f"semon-evt{text.get('event_id')}")
    msg.set_content(text["text"])
    try:
        with _PinnedSMTP(p, ctx.timeout_s) as smtp:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise DeliveryFailed(f"{p.host} does not offer STARTTLS; semon does not send mail in clear")
            smtp.starttls(context=ctx.tls())
            smtp.ehlo()
            if settings.get("username"):
                smtp.login(settings["username"], creds.get("password") or "")
            refused = smtp.send_message(msg)
    except smtplib.SMTPResponseException as e:
        raise DeliveryFailed(f"SMTP {e.smtp_code}: {e.smtp_error!r}", e.smtp_code) from e
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryFailed(f"{type(e).__name__}: {e}") from e
    if refused:
        raise DeliveryFailed(f"recipients refused: {refused}")


CHANNEL = Channel("email", "电子邮件 E-mail (SMTP STARTTLS)", EmailSettings, EmailCredentials, None, send)
