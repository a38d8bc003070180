"""``hub access``: who may publish and who may subscribe, as SCRAM users and ACLs on the broker.

Devices and partners connect to the SASL_SSL listener (``HUB_KAFKA_SASL_BOOTSTRAP``,
SCRAM-SHA-512 over TLS); the broker's StandardAuthorizer allows them only what their ACLs say.
Logins and ACLs are written through Kafka's Admin API (``hub.kafkaadmin``), a device's produce
quota by Kafka's own ``ConfigCommand`` (from the jars the local stack runs), all as hub-admin on
the hub's own listener (``hub.principals``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass

from hub import devicekeys, principals, topics
from hub.db import connect
from hub.errors import HubError
from hub.kafkaadmin import KafkaAdmin
from hub.principals import Grant
from hub.registry.model import REGIONS
from hub.settings import Settings
from hub.stack.kafka import Kafka

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
    if kind == "partner" and region in REGIONS and name:
        return partner_grants(region, name)
    raise AccessError(
        f"{username!r}: not a user `hub access` creates (device.<DEVICE_ID> or "
        "partner.<region>.<name>)"
    )


class KafkaTools:
    """Kafka's own admin tools, run from the local stack's jars against the hub's listener."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kafka = Kafka(settings)

    def run(self, main: str, *args: str) -> str:
        if not (self.kafka.libs / ".complete").exists():
            raise AccessError("Kafka's jars are not installed: run `hub stack up` first")
        if not self.kafka.admin_properties.exists():
            raise AccessError("the hub's admin login is not set up: run `hub stack up` first")
        java = shutil.which("java") or "java"
        argv = self.kafka._command(
            java,
            main,
            "--bootstrap-server",
            self.settings.kafka_bootstrap,
            "--command-config",
            str(self.kafka.admin_properties),
        )
        result = subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            lines = [
                line
                for line in (result.stderr or result.stdout).strip().splitlines()
                if not line.startswith("SLF4J:")  # the logging library's own chatter
            ]
            errors = [line for line in lines if "Error" in line or "Exception" in line]
            raise AccessError(f"{main.rsplit('.', 1)[-1]} failed: {(errors or lines or ['?'])[0]}")
        return result.stdout

    def user_config(self, username: str, *args: str) -> str:
        """``ConfigCommand`` on one user's entity (its SCRAM credential)."""
        return self.run(
            "kafka.admin.ConfigCommand", "--entity-type", "users", "--entity-name", username, *args
        )

    def set_quotas(self, username: str, *quotas: str) -> None:
        """Client quotas (``producer_byte_rate=N``): Kafka alters them apart from credentials."""
        self.user_config(username, "--alter", "--add-config", ",".join(quotas))

    def delete_quotas(self, username: str) -> None:
        with contextlib.suppress(AccessError):  # none set
            self.user_config(username, "--alter", "--delete-config", "producer_byte_rate")


async def _issue_key(settings: Settings, device_id: str) -> bytes:
    conn = await connect(settings)
    try:
        if not await conn.fetchval("SELECT 1 FROM devices WHERE device_id = $1", device_id):
            raise AccessError(f"device {device_id!r} is not in the registry (hub registry load)")
        return await devicekeys.issue(conn, device_id)
    finally:
        await conn.close()


async def _revoke_key(settings: Settings, device_id: str) -> None:
    conn = await connect(settings)
    try:
        await devicekeys.revoke(conn, device_id)
    finally:
        await conn.close()


def rotate_key(settings: Settings, device_id: str) -> bytes:
    """A new signing key for a registered device, valid for what the broker appends from now on;
    the old key still signs the records appended before (a backlog not processed yet)."""
    return asyncio.run(_issue_key(settings, device_id))


def add_device(settings: Settings, device_id: str) -> Credentials:
    """A broker login that may only produce telemetry, at most ``HUB_DEVICE_BYTE_RATE`` bytes a
    second, and a new signing key: records count only when signed with it and naming this
    device. For a device that holds a key this is a rotation: the old key still signs what the
    broker appended before."""
    username = f"device.{device_id}"
    key = asyncio.run(_issue_key(settings, device_id))
    password = secrets.token_urlsafe(24)
    admin = _admin(settings)
    admin.upsert_scram({username: password})
    KafkaTools(settings).set_quotas(username, f"producer_byte_rate={settings.device_byte_rate}")
    admin.grant(f"User:{username}", device_grants())
    return Credentials(username, password, key)


def add_partner(settings: Settings, region: str, name: str) -> Credentials:
    if region not in REGIONS:
        raise AccessError(f"region {region!r}: one of {', '.join(REGIONS)}")
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
    return _create(settings, f"partner.{region}.{name}", partner_grants(region, name))


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


def revoke(settings: Settings, username: str) -> None:
    """The user can no longer connect; a device's signing key stops working too, so records it
    published (or a copy of its key publishes) are rejected as ``unauthenticated``."""
    grants = grants_for(username)
    admin = _admin(settings)
    if not admin.has_scram(username):
        raise AccessError(f"no such user {username!r}")
    admin.delete_scram(username)
    admin.ungrant(f"User:{username}", grants)
    kind, _, device_id = username.partition(".")
    if kind == "device":
        KafkaTools(settings).delete_quotas(username)
        asyncio.run(_revoke_key(settings, device_id))
