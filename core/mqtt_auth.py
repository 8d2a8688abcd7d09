"""Mosquitto credentials and ACLs from the registry (``semon mqtt-auth``).

Each device may publish only under its own ``semon/v1/{kind}/{device_id}/`` topics (and read
nothing); each maintenance firm may subscribe only to its own ``semon/v1/alarms/{firm_id}/#``;
each collector reads every device topic and writes alarms; a service (``semon api`` /
``semon deliver``: canary pings, platform alarms) and a gateway (a simulator publishing for a
whole fleet — development only) have their own accounts. Passwords are random, kept in a
``credentials.csv`` (mode 0600) for provisioning, and stored in the password file only as
Mosquitto ``$7$`` PBKDF2-SHA512 hashes.

Identity is bound to the session by the broker, not by the ACL: the compose broker loads
Mosquitto's dynamic-security plugin with the ``dynamic-security.json`` written here
(config/mosquitto/mosquitto.conf), which binds every device, firm and collector account to one
client id, its user name. A CONNECT with that user and any other client id is refused
(CONNACK "not authorised"), so a device holding its own valid password can neither take over a
collector's persistent session nor another device's, and the session it would have taken is
never touched. Every process that keeps a session therefore needs its own user: one per
collector *session* (the partition's client id, e.g. ``semon-collector-p0of2``; a standby of
that partition shares it, the lease lets only one of them connect, docs/scaling.md). Service
and gateway accounts (canary checkers, the maintenance CLI, a simulator) are platform-internal
and pick a fresh client id per process, so they are not bound (:data:`BOUND_ROLES`). The ACL
grants exact topics per user (:func:`grants`, rendered both as an ``acl_file`` and as the
plugin's roles) and no ``pattern`` lines: a pattern applies to every account (firms and
collectors too), so it could only widen what an account may do.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from semon.contract.topics import KINDS, PREFIX

# Mosquitto 2's mosquitto_passwd default for $7$ (PBKDF2-SHA512).
PBKDF2_ITERATIONS = 101
COLLECTOR_USER = "semon-collector"
# Accounts the broker binds to one client id (their user name): everything that logs in from
# outside the platform, and the collectors whose persistent sessions must not be taken over.
BOUND_ROLES = frozenset({"device", "firm", "collector"})
DYNSEC_FILE = "dynamic-security.json"


def _pbkdf2(password: str, salt: bytes | None, iterations: int) -> tuple[str, str]:
    """``(salt, key)`` in base64: PBKDF2-SHA512, 64 bytes, as both Mosquitto stores read it."""
    salt = salt or os.urandom(12)
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return base64.b64encode(salt).decode(), base64.b64encode(dk).decode()


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """A Mosquitto ``$7$`` password hash."""
    salt_b64, dk_b64 = _pbkdf2(password, salt, iterations)
    return f"$7${iterations}${salt_b64}${dk_b64}"


@dataclass(frozen=True, slots=True)
class Account:
    """One MQTT login and what it may do."""

    username: str
    role: str  # device | firm | collector | service | gateway
    subject: str  # device id, firm id, or "*"
    kind: str = ""


def accounts(
    devices: list[tuple[str, str]], firms: list[str], collector_user: str | Sequence[str] = COLLECTOR_USER,
    *, services: Sequence[str] = (), gateways: Sequence[str] = (),
) -> list[Account]:  # fmt: skip
    """Accounts for ``(device_id, kind)`` pairs and firm ids, plus the collectors (one user per
    collector session), services and gateways. A user name used twice is refused: with the
    user as client id, two holders of one name would take each other's session."""
    collectors = [collector_user] if isinstance(collector_user, str) else list(collector_user)
    out = [Account(c, "collector", "*") for c in collectors]
    out += [Account(u, "service", "*") for u in services]
    out += [Account(u, "gateway", "*") for u in gateways]
    out += [Account(d, "device", d, k) for d, k in sorted(devices)]
    out += [Account(f"firm-{f}", "firm", f) for f in sorted(firms)]
    seen: dict[str, Account] = {}
    for a in out:
        if a.username in seen:
            raise ValueError(
                f"MQTT user {a.username!r} would be both {seen[a.username].role} {seen[a.username].subject!r} and "
                f"{a.role} {a.subject!r}: rename one (the user name is the broker session)"
            )
        seen[a.username] = a
    return out


def grants(a: Account) -> list[tuple[str, str]]:
    """``(access, topic filter)`` an account may use, access being read, write or readwrite
    (the ``acl_file`` words): the one statement of what each role may do."""
    if a.role == "collector":
        # Devices' topics and canary pings in, alarms and canary echoes out.
        return [("read", f"{PREFIX}/+/+/+"), ("write", f"{PREFIX}/alarms/#"), ("readwrite", f"{PREFIX}/canary/#")]
    if a.role == "service":
        # Canary pings out, echoes in; platform alarms and maintenance notices out; the compose
        # broker's health check reads $SYS/broker/version.
        return [("readwrite", f"{PREFIX}/canary/#"), ("write", f"{PREFIX}/alarms/#"), ("read", "$SYS/broker/version")]
    if a.role == "gateway":
        return [("write", f"{PREFIX}/{kind}/+/#") for kind in KINDS]
    if a.role == "device":
        return [("write", f"{PREFIX}/{a.kind}/{a.subject}/#")]
    return [("read", f"{PREFIX}/alarms/{a.subject}/#")]


def acl_text(accts: list[Account]) -> str:
    """A Mosquitto ``acl_file``: exact topics per user, nothing by pattern (no user can reach past itself)."""
    lines = ["# Generated by `semon mqtt-auth`; regenerate rather than edit.", ""]
    for a in accts:
        lines += [f"user {a.username}", *(f"topic {access} {topic}" for access, topic in grants(a)), ""]
    return "\n".join(lines)


# acl_file access word -> the dynamic-security plugin's ACL types it stands for.
_DYNSEC_TYPES = {
    "read": ("subscribePattern", "publishClientReceive"),
    "write": ("publishClientSend",),
    "readwrite": ("subscribePattern", "publishClientReceive", "publishClientSend"),
}


def dynsec_config(rows: list[tuple[Account, str]], *, iterations: int = PBKDF2_ITERATIONS) -> dict:
    """The dynamic-security plugin's configuration for ``(account, password)`` rows: one client
    per account (bound to its user name as client id when its role is in :data:`BOUND_ROLES`),
    one role per account holding its :func:`grants`, and everything else denied by default."""
    clients, roles = [], []
    for a, pw in rows:
        salt_b64, dk_b64 = _pbkdf2(pw, None, iterations)
        client = {"username": a.username, "password": dk_b64, "salt": salt_b64, "iterations": iterations,
                  "roles": [{"rolename": a.username}]}  # fmt: skip
        if a.role in BOUND_ROLES:
            client["clientid"] = a.username
        clients.append(client)
        acls = [
            {"acltype": t, "topic": topic, "allow": True} for access, topic in grants(a) for t in _DYNSEC_TYPES[access]
        ]
        roles.append({"rolename": a.username, "acls": acls})
    # Unlike the plugin's defaults, receiving is denied too: an account gets only what it was granted.
    default = {"publishClientSend": False, "publishClientReceive": False, "subscribe": False, "unsubscribe": True}
    return {"clients": clients, "roles": roles, "groups": [], "defaultACLAccess": default}


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as f:
        f.write(text)


def write_auth(
    out_dir: Path, devices: list[tuple[str, str]], firms: list[str], *, rotate: bool = False,
    collector_user: str | Sequence[str] = COLLECTOR_USER, services: Sequence[str] = (),
    gateways: Sequence[str] = (),
) -> dict[str, int]:  # fmt: skip
    """Write ``passwd`` and ``acl`` (a broker's ``password_file`` / ``acl_file``), the same accounts
    as the dynamic-security plugin's ``dynamic-security.json`` (the compose broker: client ids
    bound too), and ``credentials.csv``; existing passwords are kept unless ``rotate``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    creds_path = out_dir / "credentials.csv"
    known: dict[str, str] = {}
    if creds_path.exists() and not rotate:
        with creds_path.open(newline="") as f:
            known = {r["username"]: r["password"] for r in csv.DictReader(f)}
    accts = accounts(devices, firms, collector_user, services=services, gateways=gateways)
    rows = [(a, known.get(a.username) or secrets.token_urlsafe(18)) for a in accts]
    fd = os.open(creds_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")  # plain lines: read by shell tools too (compose health check)
        w.writerow(["username", "role", "subject", "password"])
        for a, pw in rows:
            w.writerow([a.username, a.role, a.subject, pw])
    _write_private(out_dir / "passwd", "".join(f"{a.username}:{hash_password(pw)}\n" for a, pw in rows))
    (out_dir / "acl").write_text(acl_text(accts))
    _write_private(out_dir / DYNSEC_FILE, json.dumps(dynsec_config(rows), indent=1) + "\n")
    return {"devices": len(devices), "firms": len(firms), "accounts": len(accts)}


def password_for(credentials: Path, username: str) -> str:
    """The password of ``username`` in a ``credentials.csv`` written by :func:`write_auth`."""
    if not credentials.is_file():
        raise ValueError(f"SEMON_MQTT_CREDENTIALS_FILE: {credentials} does not exist (run `semon mqtt-auth`)")
    with credentials.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["username"] == username:
                return r["password"]
    raise ValueError(f"SEMON_MQTT_CREDENTIALS_FILE: no account {username!r} in {credentials} (run `semon mqtt-auth`)")
