"""``hub access``: who may publish and who may subscribe, as SCRAM users and ACLs on the broker.

Devices and partners connect to the SASL_SSL listener (``HUB_KAFKA_SASL_BOOTSTRAP``,
SCRAM-SHA-512 over TLS); the broker's StandardAuthorizer allows them only what their ACLs say.
Logins and ACLs are written through Kafka's Admin API (``hub.kafkaadmin``), a device's produce
quota by Kafka's own ``ConfigCommand`` (from the jars the local stack runs), all as hub-admin on
the hub's own listener (``hub.principals``).
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from hub import audit, devicekeys, kafkatools, principals, topics
from hub.db import connect
from hub.errors import HubError
from hub.kafkaadmin import KafkaAdmin
from hub.principals import Grant
from hub.settings import Settings
from hub.topics import REGION_CODE

MECHANISM = "SCRAM-SHA-512"
PARTNER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,39}")


class AccessError(HubError):
    """A request `hub access` refuses, or the broker refused; says which and why."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str
    signing_key: bytes | None = None  # a device's: it signs every record with it


def device_grants() -> list[Grant]:
    """Devices publish telemetry and read nothing."""
    return [Grant("topic", topics.TELEMETRY, ("Write", "Describe"))]


def partner_grants(region: str, name: str) -> list[Grant]:
    """Partners read their region's partner topics, in consumer groups named ``<name>.*``."""
    return [
        Grant("topic", f"partner.{region}.", ("Read", "Describe"), prefixed=True),
        Grant("group", f"{name}.", ("Read", "Describe"), prefixed=True),
    ]


def grants_for(username: str) -> list[Grant]:
    """What a user created by `hub access` was granted, from the form of its name."""
    kind, _, rest = username.partition(".")
    if kind == "device" and rest:
        return device_grants()
    region, _, name = rest.partition(".")
    if kind == "partner" and REGION_CODE.match(region) and name:
        return partner_grants(region, name)
    raise AccessError(
        f"{username!r}: not a user `hub access` creates (device.<DEVICE_ID> or "
        "partner.<region>.<name>)"
    )


class KafkaTools:
    """Kafka's own admin tools (``hub.kafkatools``), as hub-admin."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, main: str, *args: str) -> str:
        try:
            return kafkatools.run_tool(self.settings, main, *args)
        except kafkatools.KafkaToolError as error:
            raise AccessError(str(error)) from None

    def user_config(self, username: str, *args: str) -> str:
        """``ConfigCommand`` on one user's entity (its SCRAM credential, its quota)."""
        return self.run(
            "kafka.admin.ConfigCommand", "--entity-type", "users", "--entity-name", username, *args
        )


async def _regions(settings: Settings) -> list[str]:
    conn = await connect(settings)
    try:
        return [r["code"] for r in await conn.fetch("SELECT code FROM regions ORDER BY code")]
    finally:
        await conn.close()


async def _issue_key(settings: Settings, device_id: str, actor: str, action: str) -> bytes:
    conn = await connect(settings)
    try:
        if not await conn.fetchval("SELECT 1 FROM devices WHERE device_id = $1", device_id):
            raise AccessError(f"device {device_id!r} is not in the registry (hub registry load)")
        async with conn.transaction():
            key = await devicekeys.issue(conn, device_id)
            await audit.record(conn, actor, action, device_id, None, {"signing_key": "new"})
        return key
    finally:
        await conn.close()


async def _revoke_key(settings: Settings, device_id: str, actor: str) -> None:
    conn = await connect(settings)
    try:
        async with conn.transaction():
            if await devicekeys.revoke(conn, device_id):
                await audit.record(conn, actor, "key.revoke", device_id, {"key": "valid"}, None)
    finally:
        await conn.close()


async def _audited(settings: Settings, actor: str, action: str, subject: str) -> None:
    """A change on the broker alone (a partner's login, a revocation) in the audit trail."""
    conn = await connect(settings)
    try:
        await audit.record(conn, actor, action, subject, None, None)
    finally:
        await conn.close()


def rotate_key(settings: Settings, device_id: str, actor: str) -> bytes:
    """A new signing key for a registered device, valid for what the broker appends from now on;
    the old key still signs the records appended before (a backlog not processed yet)."""
    return asyncio.run(_issue_key(settings, device_id, actor, "key.rotate"))


def add_device(settings: Settings, device_id: str, actor: str) -> Credentials:
    """A broker login that may only produce telemetry, at most ``HUB_DEVICE_BYTE_RATE`` bytes a
    second, and a new signing key: records count only when signed with it and naming this
    device. For a device that holds a key this is a rotation: the old key still signs what the
    broker appended before."""
    username = f"device.{device_id}"
    key = asyncio.run(_issue_key(settings, device_id, actor, "access.add_device"))
    password = secrets.token_urlsafe(24)
    admin = _admin(settings)
    admin.upsert_scram({username: password})
    admin.grant(f"User:{username}", device_grants())
    return Credentials(username, password, key)


def add_devices(settings: Settings, demonstration_id: str, out: Path, actor: str) -> int:
    """Every device of a demonstration at once: a login and a new signing key each, through
    the Admin API in one request per kind (no JVM per device), written to ``out`` (created
    readable by its owner only; an existing file is refused, never overwritten). Returns how
    many devices."""
    if out.exists():
        raise AccessError(f"--out {out}: exists already (it would hold new passwords; move it)")
    devices, keys = asyncio.run(_issue_keys(settings, demonstration_id, actor))
    logins = {f"device.{d}": secrets.token_urlsafe(24) for d in devices}
    admin = _admin(settings)
    admin.upsert_scram(logins)
    admin.grant_many({f"User:{username}": device_grants() for username in logins})
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("device_id", "username", "password", "signing_key"))
        for device in devices:
            username = f"device.{device}"
            writer.writerow((device, username, logins[username], keys[device].hex()))
    return len(devices)


async def _issue_keys(
    settings: Settings, demonstration_id: str, actor: str
) -> tuple[list[str], dict[str, bytes]]:
    conn = await connect(settings)
    try:
        devices = [
            r["device_id"]
            for r in await conn.fetch(
                "SELECT device_id FROM devices WHERE demonstration_id = $1 ORDER BY device_id",
                demonstration_id,
            )
        ]
        if not devices:
            known = await conn.fetchval(
                "SELECT 1 FROM demonstrations WHERE demonstration_id = $1", demonstration_id
            )
            raise AccessError(
                f"demonstration {demonstration_id!r} has no devices registered (approved yet?)"
                if known
                else f"no demonstration {demonstration_id!r}"
            )
        async with conn.transaction():
            keys = await devicekeys.issue_many(conn, devices)
            await audit.record(
                conn,
                actor,
                "access.add_devices",
                demonstration_id,
                None,
                {"devices": len(devices), "logins": "new passwords and signing keys"},
            )
    finally:
        await conn.close()
    return devices, keys


def add_partner(settings: Settings, region: str, name: str, actor: str) -> Credentials:
    known = asyncio.run(_regions(settings))
    if region not in known:
        raise AccessError(f"region {region!r}: one of {', '.join(known)} (hub regions add)")
    if not PARTNER_NAME.fullmatch(name):
        raise AccessError(
            f"name {name!r}: 2-40 characters, lower-case letters, digits and '-' "
            "(it prefixes the partner's consumer groups)"
        )
    if f"{settings.app_id}.".startswith(f"{name}."):
        # Its groups, <name>.*, would include the hub's own (<app id>.notifier, say).
        raise AccessError(
            f"name {name!r}: the hub's consumer groups start with {settings.app_id!r} "
            "(HUB_APP_ID); a partner's groups are named <name>.*, so choose another name"
        )
    created = _create(settings, f"partner.{region}.{name}", partner_grants(region, name))
    asyncio.run(_audited(settings, actor, "access.add_partner", created.username))
    return created


def _create(settings: Settings, username: str, grants: list[Grant]) -> Credentials:
    password = secrets.token_urlsafe(24)
    admin = _admin(settings)
    admin.upsert_scram({username: password})  # a new password when the user exists
    admin.grant(f"User:{username}", grants)
    return Credentials(username, password)


def _admin(settings: Settings) -> KafkaAdmin:
    if principals.login(settings, "admin") is None and not settings.kafka_username:
        raise AccessError("the hub's admin login is not set up: run `hub stack up` first")
    return KafkaAdmin(principals.librdkafka(settings, "admin"))


def revoke(settings: Settings, username: str, actor: str) -> None:
    """The user can no longer connect; a device's signing key stops working too, so records it
    published (or a copy of its key publishes) are rejected as ``unauthenticated``."""
    grants = grants_for(username)
    admin = _admin(settings)
    if not admin.has_scram(username):
        raise AccessError(f"no such user {username!r}")
    admin.delete_scram(username)
    admin.ungrant(f"User:{username}", grants)
    kind, _, device_id = username.partition(".")
    asyncio.run(_audited(settings, actor, "access.revoke", username))
    if kind == "device":
        asyncio.run(_revoke_key(settings, device_id, actor))
