"""The hub's own principals on the local stack's broker (``hub.principals`` says who they are).

``hub stack up`` makes their passwords once (``$HUB_HOME/kafka/principals.json``, readable by the
owner only); the broker's own login (PLAIN, ``hub-broker``) goes into its configuration, and once
the broker answers, the stack logs in as it to create the services' SCRAM logins and grant each
what ``hub.principals.service_grants`` says. Everything here is idempotent: run again, it
changes nothing. ``grant_hub`` grants the same to another hub sharing the broker (another
HUB_APP_ID: a demo's, a test's, the benchmark's).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from hub import principals
from hub.principals import BROKER, ROLES, Grant
from hub.settings import Settings
from hub.stack.errors import StackError

SCRAM_ITERATIONS = 8192
TIMEOUT_S = 30.0


def password_variable(name: str) -> str:
    """Where a deployment gives a principal's password (compose): HUB_KAFKA_<ROLE>_PASSWORD."""
    return f"HUB_KAFKA_{name.removeprefix('hub-').upper()}_PASSWORD"


def logins(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every principal's password: given by the environment (HUB_KAFKA_<ROLE>_PASSWORD), or
    made once and kept in the local stack's file."""
    env = os.environ if env is None else env
    wanted = [BROKER, *(principals.principal(role) for role in ROLES)]
    given = {
        name: env[password_variable(name)] for name in wanted if env.get(password_variable(name))
    }
    if len(given) == len(wanted):
        return given
    path = principals.credentials_file(settings)
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if all(name in known for name in wanted):
        return {**known, **given}
    for name in wanted:
        known.setdefault(name, secrets.token_urlsafe(24))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(known, out, indent=2)
    return {**known, **given}


def _admin(settings: Settings, as_broker: bool) -> AdminClient:
    config = principals.librdkafka(settings, "admin")
    if as_broker:
        config |= {
            "security.protocol": principals.HUB_PROTOCOL,
            "sasl.mechanism": "PLAIN",
            "sasl.username": BROKER,
            "sasl.password": logins(settings)[BROKER],
        }
    return AdminClient({**config, "socket.timeout.ms": 10_000})


def answers(settings: Settings, brokers: int) -> bool:
    """The cluster answers a metadata request naming ``brokers`` brokers (as the broker's own
    principal: the others may not exist yet)."""
    try:
        metadata = _admin(settings, as_broker=True).list_topics(timeout=3)
    except KafkaException:
        return False
    return len(metadata.brokers) >= brokers


def create_services(settings: Settings) -> None:
    """The services' SCRAM logins and their grants for this hub (HUB_APP_ID)."""
    admin = _admin(settings, as_broker=True)
    known = logins(settings)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            principals.principal(role),
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
            known[principals.principal(role)].encode(),
        )
        for role in ROLES
    ]
    _wait(admin.alter_user_scram_credentials(upserts).values(), "creating the hub's logins")
    grant_hub(settings, settings.app_id, admin)


def grant_hub(settings: Settings, app_id: str, admin: AdminClient | None = None) -> None:
    """What the worker and the notifier of the hub ``app_id`` may do (adding an ACL that
    exists changes nothing)."""
    admin = admin or _admin(settings, as_broker=False)
    bindings = [
        binding
        for role in ROLES
        for grant in principals.service_grants(role, app_id)
        for binding in _bindings(principals.principal(role), grant)
    ]
    if bindings:
        _wait(admin.create_acls(bindings).values(), "granting the hub's services their rights")


def revoke_hub(settings: Settings, app_id: str) -> None:
    """What ``grant_hub`` granted for ``app_id`` alone (the contract's topics stay granted)."""
    admin = _admin(settings, as_broker=False)
    mine = [
        binding
        for role in ROLES
        for grant in principals.service_grants(role, app_id)
        if grant.name.startswith(app_id)
        for binding in _bindings(principals.principal(role), grant)
    ]
    if mine:
        filters = [
            AclBindingFilter(
                b.restype,
                b.name,
                b.resource_pattern_type,
                b.principal,
                b.host,
                b.operation,
                b.permission_type,
            )
            for b in mine
        ]
        _wait(admin.delete_acls(filters).values(), "removing a hub's grants")


def _bindings(user: str, grant: Grant) -> list[AclBinding]:
    resource = {
        "topic": ResourceType.TOPIC,
        "group": ResourceType.GROUP,
        "cluster": ResourceType.BROKER,
    }[grant.resource]
    pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
    return [
        AclBinding(
            resource,
            grant.name,
            pattern,
            f"User:{user}",
            "*",
            _operation(operation),
            AclPermissionType.ALLOW,
        )
        for operation in grant.operations
    ]


def _operation(name: str) -> AclOperation:
    words = {"All": "ALL", "DescribeConfigs": "DESCRIBE_CONFIGS", "AlterConfigs": "ALTER_CONFIGS"}
    return AclOperation[words.get(name, name.upper())]


def _wait(futures: Iterable[object], what: str) -> None:
    for future in futures:
        try:
            future.result(timeout=TIMEOUT_S)  # type: ignore[attr-defined]
        except KafkaException as error:
            raise StackError(f"kafka: {what} failed: {error.args[0]}") from None
