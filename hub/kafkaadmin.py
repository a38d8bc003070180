"""Kafka's Admin API for logins and grants, through librdkafka (confluent-kafka): SCRAM
credentials and ACLs in one request each, where Kafka's own tools start a JVM per call.

Used by ``hub access`` (devices, partners) and the local stack (the hub's own principals). Client
quotas are not in librdkafka's admin API: ``hub.access`` sets them with Kafka's ``ConfigCommand``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

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
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from hub.errors import HubError
from hub.principals import Grant

log = logging.getLogger(__name__)
SCRAM_ITERATIONS = 8192
SCRAM_BATCH = 100
TIMEOUT_S = 30.0
_RESOURCES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "cluster": ResourceType.BROKER,
}
_OPERATIONS = {"All": "ALL", "DescribeConfigs": "DESCRIBE_CONFIGS", "AlterConfigs": "ALTER_CONFIGS"}


class AdminFailed(HubError):
    """The broker refused an admin request, or did not answer; says which and why."""


class KafkaAdmin:
    """One admin client on the hub's listener, as the login ``config`` holds."""

    def __init__(self, config: Mapping[str, str]) -> None:
        # librdkafka's own messages go to Python's logging (not to the terminal of a command).
        settings: dict[str, Any] = {**config, "socket.timeout.ms": 10_000, "logger": log}
        self.client = AdminClient(settings)

    def upsert_scram(self, passwords: Mapping[str, str]) -> None:
        """Create the SCRAM-SHA-512 logins, or give existing ones these passwords."""
        changes: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(
                user,
                ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
                password.encode(),
            )
            for user, password in passwords.items()
        ]
        # Salting a password costs its 8,192 iterations: a request of SCRAM_BATCH takes about
        # a second here, a thousand at once would outlast a request's timeout.
        for start in range(0, len(changes), SCRAM_BATCH):
            batch = changes[start : start + SCRAM_BATCH]
            done = self.client.alter_user_scram_credentials(batch, request_timeout=TIMEOUT_S)
            _wait(done.values(), "setting passwords")

    def delete_scram(self, user: str) -> None:
        changes: list[UserScramCredentialAlteration] = [
            UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)
        ]
        _wait(self.client.alter_user_scram_credentials(changes).values(), "deleting a login")

    def has_scram(self, user: str) -> bool:
        try:
            found = self.client.describe_user_scram_credentials([user])
            _wait(found.values() if isinstance(found, dict) else [found], "reading a login")
        except AdminFailed as error:
            if "RESOURCE_NOT_FOUND" in str(error) or "not found" in str(error).lower():
                return False
            raise
        return True

    def grant(self, principal: str, grants: Iterable[Grant]) -> None:
        """Allow ``principal`` (``User:<name>``) what ``grants`` say; an ACL that exists already
        changes nothing."""
        self.grant_many({principal: grants})

    def grant_many(self, grants: Mapping[str, Iterable[Grant]]) -> None:
        """``grant`` for many principals, in one request."""
        bindings = [
            b
            for principal, rules in grants.items()
            for rule in rules
            for b in _bindings(principal, rule)
        ]
        if bindings:
            _wait(self.client.create_acls(bindings).values(), "granting rights")

    def ungrant(self, principal: str, grants: Iterable[Grant]) -> None:
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
            for grant in grants
            for b in _bindings(principal, grant)
        ]
        if filters:
            _wait(self.client.delete_acls(filters).values(), "removing rights")

    def answers(self, brokers: int) -> bool:
        """The cluster answers a metadata request naming at least ``brokers`` brokers."""
        try:
            return len(self.client.list_topics(timeout=3).brokers) >= brokers
        except KafkaException:
            return False


def _bindings(principal: str, grant: Grant) -> list[AclBinding]:
    pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
    return [
        AclBinding(
            _RESOURCES[grant.resource],
            grant.name,
            pattern,
            principal,
            "*",
            AclOperation[_OPERATIONS.get(operation, operation.upper())],
            AclPermissionType.ALLOW,
        )
        for operation in grant.operations
    ]


def _wait(futures: Iterable[object], what: str) -> None:
    for future in futures:
        try:
            future.result(timeout=TIMEOUT_S)  # type: ignore[attr-defined]
        except KafkaException as error:
            raise AdminFailed(f"kafka: {what} failed: {error.args[0]}") from None
        except TimeoutError:
            raise AdminFailed(f"kafka: {what} failed: no answer in {TIMEOUT_S:.0f} s") from None
