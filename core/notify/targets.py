"""Where semon may send: every webhook and channel target is resolved once, checked, and pinned.

A firm chooses its webhook URL (and a channel's base URL or SMTP host), so the server must not
become its probe into the internal network. :func:`resolve` looks the host up once, refuses it
unless **every** address is global, and returns a :class:`Pinned` target; the request then goes
to that checked address (:func:`post_pinned`: the connection to the IP, the ``Host`` header and
TLS SNI/certificate check of the name), so a DNS answer that changes between the check and the
send (rebinding) changes nothing.

Refused unless the operator's allow-list ``SEMON_WEBHOOK_ALLOW_NETS`` names the network:
loopback, private, link-local, shared (100.64/10), special-purpose (192.0.0.0/24, the
documentation and benchmarking ranges), multicast, reserved, unspecified — and every IPv6 form
that embeds an IPv4 address (IPv4-mapped ``::ffff:0:0/96``, IPv4-compatible ``::/96``, NAT64
``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4 ``2002::/16``, Teredo ``2001::/32``), since the
IPv4 address inside may be any of the above. Ranges follow the IANA special-purpose address
registries (RFC 6890 and updates); Python's ``is_global`` alone misses several of them on 3.11.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from semon.config import IPNetwork, parse_nets

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NON_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "100::/64", "2001:db8::/32", "2001:10::/28", "2001:20::/28", "3fff::/20",
        "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
_EMBEDS_IPV4 = tuple(
    ipaddress.ip_network(n)
    for n in ("::ffff:0:0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
)


class TargetRefused(ValueError):
    """A webhook or channel target semon will not call."""


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Which addresses targets may have: global ones, plus the operator's allowed networks."""

    allow_nets: tuple[IPNetwork, ...] = ()
    # Legacy switch SEMON_WEBHOOK_ALLOW_PRIVATE: allow every address (still resolved and pinned).
    allow_all: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> TargetPolicy:
        """The policy of ``webhook_allow_nets`` / ``webhook_allow_private``."""
        return cls(parse_nets(settings.webhook_allow_nets), bool(settings.webhook_allow_private))

    def refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` is refused, or None when it may be called."""
        if self.allow_all or any(ip.version == n.version and ip in n for n in self.allow_nets):
            return None
        if ip.version == 6 and any(ip in n for n in _EMBEDS_IPV4):
            return "an IPv6 form embedding an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo)"
        if any(ip.version == n.version and ip in n for n in _NON_GLOBAL) or not ip.is_global:
            return "a non-public address (loopback, private, link-local, special-purpose, multicast or reserved)"
        return None


@dataclass(frozen=True, slots=True)
class Pinned:
    """A target resolved and checked once: connect to ``ip``, speak to ``host``."""

    scheme: str
    host: str
    port: int
    ip: IPAddress
    target: str  # path + query

    def url(self) -> str:
        """The URL with the checked address in place of the name."""
        literal = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{self.scheme}://{literal}:{self.port}{self.target}"

    def host_header(self) -> str:
        """``Host`` as the name would have produced it."""
        default = {"http": 80, "https": 443}.get(self.scheme)
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise TargetRefused(f"cannot resolve {host}: {e}") from e
    # A scoped IPv6 address ("fe80::1%eth0") is link-local anyway: drop the zone to parse it.
    return list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))


def resolve(url: str, policy: TargetPolicy, schemes: tuple[str, ...] = ("http", "https")) -> Pinned:
    """Check ``url`` and pin it to its first address; :class:`TargetRefused` says why not.

    Every address the name has must pass, not only the one used: otherwise the client's own
    resolver (or a retry) could pick the internal one.
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port out of range or not a number
        host = parts.hostname
    except ValueError as e:  # "http://[::1" and the like
        raise TargetRefused(f"not a valid URL: {e}") from e
    if parts.scheme not in schemes or not host:
        raise TargetRefused(f"the URL must be {' or '.join(s + '://' for s in schemes)} with a host")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed")
    port = port or {"http": 80, "https": 443, "smtp": 587}[parts.scheme]
    addrs = _addresses(host, port)
    if not addrs:
        raise TargetRefused(f"{host} has no address")
    for ip in addrs:
        why = policy.refusal(ip)
        if why:
            shown = str(ip) if _is_literal(host) else f"{host} resolves to {ip}, which"
            raise TargetRefused(f"{shown} is {why}; an operator may allow it in SEMON_WEBHOOK_ALLOW_NETS")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Pinned(parts.scheme, host, port, addrs[0], target)


def check_target(url: str, policy: TargetPolicy, schemes: tuple[str, ...] = ("http", "https")) -> None:
    """Refuse a URL that :func:`resolve` refuses (checked when a target is saved)."""
    resolve(url, policy, schemes)


def post_pinned(
    http: httpx.Client, p: Pinned, *, content: bytes, headers: dict[str, str], params: dict[str, str] | None = None
) -> httpx.Response:
    """POST to the pinned address with the name's ``Host`` header and, over TLS, its SNI — so
    the certificate is still checked against the name (httpcore's ``sni_hostname``)."""
    ext = {"sni_hostname": p.host} if p.scheme == "https" else {}
    return http.post(
        p.url(), content=content, params=params, headers={**headers, "Host": p.host_header()}, extensions=ext
    )


def get_pinned(http: httpx.Client, p: Pinned, *, params: dict[str, str]) -> httpx.Response:
    """GET to the pinned address (see :func:`post_pinned`)."""
    ext = {"sni_hostname": p.host} if p.scheme == "https" else {}
    return http.get(p.url(), params=params, headers={"Host": p.host_header()}, extensions=ext)
