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
from collections.abc import Mapping

from hub import principals
from hub.kafkaadmin import AdminFailed, KafkaAdmin
from hub.principals import BROKER, ROLES
from hub.settings import Settings
from tooling.stack.errors import StackError


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


def admin(settings: Settings, as_broker: bool = False) -> KafkaAdmin:
    """An admin client as hub-admin, or as the broker's own login (before the others exist)."""
    config = principals.librdkafka(settings, "admin")
    if as_broker:
        config |= {
            "security.protocol": principals.HUB_PROTOCOL,
            "sasl.mechanism": "PLAIN",
            "sasl.username": BROKER,
            "sasl.password": logins(settings)[BROKER],
        }
    return KafkaAdmin(config)


def answers(settings: Settings, brokers: int) -> bool:
    """The cluster answers a metadata request naming ``brokers`` brokers (as the broker's own
    principal: the others may not exist yet)."""
    return admin(settings, as_broker=True).answers(brokers)


def create_services(settings: Settings) -> None:
    """The services' SCRAM logins and their grants for this hub (HUB_APP_ID)."""
    client = admin(settings, as_broker=True)
    known = logins(settings)
    try:
        client.upsert_scram(
            {principals.principal(r): known[principals.principal(r)] for r in ROLES}
        )
    except AdminFailed as error:
        raise StackError(f"creating the hub's logins: {error}") from None
    grant_hub(settings, settings.app_id, client)


def grant_hub(settings: Settings, app_id: str, client: KafkaAdmin | None = None) -> None:
    """What the worker and the notifier of the hub ``app_id`` may do (adding an ACL that
    exists changes nothing)."""
    client = client or admin(settings)
    for role in ROLES:
        client.grant(f"User:{principals.principal(role)}", principals.service_grants(role, app_id))


def revoke_hub(settings: Settings, app_id: str) -> None:
    """What ``grant_hub`` granted for ``app_id`` alone (the contract's topics stay granted)."""
    client = admin(settings)
    for role in ROLES:
        mine = [g for g in principals.service_grants(role, app_id) if g.name.startswith(app_id)]
        client.ungrant(f"User:{principals.principal(role)}", mine)
