"""Creating the contract's topics idempotently at start-up, with the hub's settings, and
reading how many partitions existing ones have (Kafka's Admin API, through aiokafka)."""

from __future__ import annotations

from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from hub.errors import HubError
from hub.topics import DLQ_RETENTION_DAYS, contract_topics, replicated_configs, topic_configs

DYNAMIC_TOPIC_CONFIG: Final = 1  # DescribeConfigs' config_source of a per-topic setting
TOPIC_ALREADY_EXISTS: Final = 36


class TopicCreationFailed(HubError):
    """The broker refused to create a contract topic."""


async def ensure_topics(
    bootstrap_servers: str,
    partitions: int,
    names: list[str] | None = None,
    *,
    replication_factor: int = 1,
    dlq_retention_days: float = DLQ_RETENTION_DAYS,
    **security: object,
) -> list[str]:
    """Create the topics that do not exist yet, with the hub's settings (``topic_configs``);
    set those on the ones that exist without them. Return the topics created now.

    Safe when several processes start at once: "already exists" counts as success.
    """
    configs = topic_configs(dlq_retention_days)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **security)
    await admin.start()
    try:
        wanted = names if names is not None else contract_topics()
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        await _align_configs(admin, [n for n in wanted if n in existing and n in configs], configs)
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    partitions,
                    replication_factor,
                    topic_configs={
                        **configs.get(name, {}),
                        **replicated_configs(replication_factor),
                    },
                )
                for name in missing
            ]
        )
        failed = [
            f"{error[0]} (error {error[1]}{': ' + error[2] if len(error) > 2 and error[2] else ''})"
            for error in response.topic_errors
            if error[1] not in (0, TOPIC_ALREADY_EXISTS)
        ]
        if failed:
            raise TopicCreationFailed(f"could not create topic(s): {', '.join(failed)}")
        return missing
    finally:
        await admin.close()


async def _align_configs(
    admin: AIOKafkaAdminClient, names: list[str], configs: dict[str, dict[str, str]]
) -> None:
    """Give existing topics the hub's settings, keeping any other per-topic setting (an
    operator's retention, say): AlterConfigs replaces the whole per-topic set."""
    if not names:
        return
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    described = await admin.describe_configs(resources)
    changes = []
    for response in described:
        for resource in response.to_object()["resources"]:
            name = resource["resource_name"]
            current = {
                e.get("config_name", e.get("config_names")): e["config_value"]
                for e in resource["config_entries"]
                if e.get("config_source") == DYNAMIC_TOPIC_CONFIG
            }
            wanted = {**current, **configs[name]}
            if wanted != current:
                changes.append(ConfigResource(ConfigResourceType.TOPIC, name, configs=wanted))
    if not changes:
        return
    for response in await admin.alter_configs(changes):
        for resource in response.to_object()["resources"]:
            if resource["error_code"]:
                raise TopicCreationFailed(
                    f"could not configure topic {resource['resource_name']}: "
                    f"error {resource['error_code']} {resource['error_message'] or ''}".strip()
                )


async def partition_counts(
    bootstrap_servers: str, names: list[str], **security: object
) -> dict[str, int]:
    """How many partitions each of the existing topics among ``names`` has."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **security)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}
