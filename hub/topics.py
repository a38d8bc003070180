"""The contract's topics, and creating them idempotently at start-up."""

from __future__ import annotations

from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hub.errors import HubError
from hub.registry.model import REGIONS

TELEMETRY: Final = "testbed.telemetry.v1"
DLQ: Final = "testbed.telemetry.dlq.v1"
SITE_AGGREGATES: Final = "testbed.site-aggregates.v1"
KPI_RESULTS: Final = "testbed.kpi-results.v1"
KPI_ALERTS: Final = "testbed.kpi-alerts.v1"


def partner_topic(region: str, dataset: str) -> str:
    """``partner.<region>.<dataset>.v1``: one region's records only."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}")
    return f"partner.{region}.{dataset}.v1"


def contract_topics() -> list[str]:
    partner = [partner_topic(r, d) for r in REGIONS for d in ("kpi-results", "kpi-alerts")]
    return [TELEMETRY, DLQ, SITE_AGGREGATES, KPI_RESULTS, KPI_ALERTS, *partner]


TOPIC_ALREADY_EXISTS: Final = 36


class TopicCreationFailed(HubError):
    """The broker refused to create a contract topic."""


async def ensure_topics(
    bootstrap_servers: str,
    partitions: int,
    names: list[str] | None = None,
    *,
    replication_factor: int = 1,
    **security: object,
) -> list[str]:
    """Create the topics that do not exist yet; return the ones created now.

    Safe when several processes start at once: "already exists" counts as success.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **security)
    await admin.start()
    try:
        wanted = names if names is not None else contract_topics()
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(name, partitions, replication_factor) for name in missing]
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
