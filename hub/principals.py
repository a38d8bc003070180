"""Who the hub's own processes are to Kafka, and how each of its clients connects as one.

No principal is anonymous and none but the operators' tools is a super user. On the hub's
listener (``HUB_KAFKA_BOOTSTRAP``: SASL SCRAM-SHA-512 without TLS, for loopback or the
deployment's private network) each service authenticates as a principal of its own, allowed only
what it does (:func:`service_grants`):

    hub-worker   reads telemetry, writes the contract's outputs, the DLQ and its own state
    hub-notify   reads KPI alerts and incidents in its own consumer group
    hub-api      asks the broker for metadata only (``/healthz``)
    hub-admin    the operators' tools (``hub stack``, ``hub access``, ``hub dlq``, simulators,
                 benchmarks): a super user
    hub-broker   the brokers and controllers among themselves (PLAIN, set in their own
                 configuration; the local stack uses it once to create the others)

Devices and partners use the SASL_SSL listener (``HUB_KAFKA_SASL_BOOTSTRAP``) with credentials
`hub access` issues (``hub.access``). A process takes its principal's login from
``HUB_KAFKA_USERNAME`` / ``HUB_KAFKA_PASSWORD`` when set (compose, production), else from the
local stack's ``$HUB_HOME/kafka/principals.json`` for its role (``Settings.kafka_role``). Pure but
for reading that file: the stack creates the principals, ``tooling.stack.principals``.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from hub import topics
from hub.settings import KafkaRole, Settings

Role = KafkaRole
ROLES: Final[tuple[Role, ...]] = ("admin", "worker", "notify", "api")
BROKER: Final = "hub-broker"
MECHANISM: Final = "SCRAM-SHA-512"
# The hub's listener: authenticated, not encrypted (loopback or a private network). Devices and
# partners come through the SASL_SSL listener only.
HUB_PROTOCOL: Final = "SASL_PLAINTEXT"


def principal(role: Role) -> str:
    return f"hub-{role}"


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    password: str


def credentials_file(settings: Settings) -> Path:
    """The local stack's logins of the hub's principals (made by `hub stack up`, mode 600)."""
    return settings.home / "kafka" / "principals.json"


def login(settings: Settings, role: Role | None = None) -> Login | None:
    """The login of this process's principal: the environment's, or the local stack's for its
    role; None when neither is known (the broker will refuse, naming what to set)."""
    if settings.kafka_username:
        return Login(settings.kafka_username, settings.kafka_password)
    path = credentials_file(settings)
    if not path.exists():
        return None
    logins: dict[str, str] = json.loads(path.read_text())
    name = principal(role or settings.kafka_role)
    return Login(name, logins[name]) if name in logins else None


def security(settings: Settings, role: Role | None = None) -> dict[str, Any]:
    """aiokafka's keyword arguments for the hub's listener, as this process's principal."""
    found = login(settings, role)
    if found is None:
        return {}
    return {
        "security_protocol": HUB_PROTOCOL,
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": found.username,
        "sasl_plain_password": found.password,
    }


def client(settings: Settings, role: Role | None = None) -> dict[str, Any]:
    """aiokafka's keyword arguments: the hub's listener and this process's login."""
    return {"bootstrap_servers": settings.kafka_bootstrap, **security(settings, role)}


def librdkafka(settings: Settings, role: Role | None = None) -> dict[str, str]:
    """librdkafka's (confluent-kafka's) configuration for the hub's listener."""
    found = login(settings, role)
    config = {"bootstrap.servers": settings.kafka_bootstrap}
    if found is not None:
        config |= {
            "security.protocol": HUB_PROTOCOL,
            "sasl.mechanism": MECHANISM,
            "sasl.username": found.username,
            "sasl.password": found.password,
        }
    return config


def java_properties(settings: Settings, role: Role | None = None) -> str:
    """A Java client's properties (``--command-config``) for the hub's listener."""
    found = login(settings, role)
    if found is None:
        return ""
    return (
        f"security.protocol={HUB_PROTOCOL}\n"
        f"sasl.mechanism={MECHANISM}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{found.username}" password="{found.password}";\n'
    )


def device_tls(settings: Settings) -> ssl.SSLContext:
    """What a client of the SASL_SSL listener trusts: the CA the local stack made
    (``HUB_KAFKA_CA``), or the system's when that file does not exist."""
    if settings.kafka_ca.exists():
        return ssl.create_default_context(cafile=str(settings.kafka_ca))
    return ssl.create_default_context()


# -- what each service principal may do ----------------------------------------------------------

Resource = Literal["topic", "group", "cluster"]


@dataclass(frozen=True, slots=True)
class Grant:
    """One ACL rule: operations on a resource (a literal name, or every name with a prefix)."""

    resource: Resource
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False


def service_grants(role: Role, app_id: str) -> list[Grant]:
    """The least a service needs, for the hub named ``app_id`` (HUB_APP_ID). The contract's
    topics and the internal ones are written by hub-worker alone; nobody else may write them
    but the operators' super user."""
    create = ("Create", "Describe", "DescribeConfigs", "AlterConfigs")
    if role == "worker":
        outputs = [topics.SITE_AGGREGATES, topics.KPI_RESULTS, topics.KPI_ALERTS, topics.INCIDENTS]
        return [
            Grant("topic", topics.TELEMETRY, ("Read", *create)),
            # The DLQ is read back by a partition's new owner (what its predecessor rejected).
            Grant("topic", topics.DLQ, ("Read", "Write", *create)),
            *(Grant("topic", name, ("Write", *create)) for name in outputs),
            Grant("topic", topics.TICKS, ("Read", "Write", *create)),
            Grant("topic", "partner.", ("Write", *create), prefixed=True),
            # Faust's own topics (the state's changelog, its assignor's) and its group.
            Grant("topic", app_id, ("All",), prefixed=True),
            Grant("group", app_id, ("Read", "Describe", "Delete")),
        ]
    if role == "notify":
        return [
            Grant("topic", topics.KPI_ALERTS, ("Read", *create)),
            Grant("topic", topics.INCIDENTS, ("Read", *create)),
            Grant("group", f"{app_id}.notifier", ("Read", "Describe")),
        ]
    return []  # hub-api asks for metadata only; hub-admin is a super user
