"""The contract's topics: names, settings and partner topics (``hub.topicsetup`` creates them)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from hub.registry.model import REGIONS

TELEMETRY: Final = "testbed.telemetry.v1"
DLQ: Final = "testbed.telemetry.dlq.v1"
SITE_AGGREGATES: Final = "testbed.site-aggregates.v1"
KPI_RESULTS: Final = "testbed.kpi-results.v1"
KPI_ALERTS: Final = "testbed.kpi-alerts.v1"
# Internal: one tick per owned partition, from the workers' timer, drives the idle rule.
TICKS: Final = "hub.internal.ticks"
# Internal: incidents as intake accepted them, for the notifier (no window to wait for).
INCIDENTS: Final = "hub.internal.incidents"


# The broker limits a *batch* of records by the topic's max.message.bytes, and producers batch at
# their defaults: librdkafka up to 1,000,000 bytes (batch.size), Java's and aiokafka's requests
# up to 1 MiB (max.request.size). The telemetry topic takes what any of them sends at its
# defaults: Kafka's own default limit (1 MiB and 12 bytes of framing). A record over 64 KiB is
# still refused, at intake, as too_large with its bytes; one over this limit by the broker at
# publish time (the device sees the error). The DLQ takes the base64 copy of the largest (a third
# larger) with its JSON around it, and the hub's producer sends requests that large.
TELEMETRY_MAX_MESSAGE_BYTES: Final = 1024 * 1024 + 12
MAX_TELEMETRY_RECORD: Final = TELEMETRY_MAX_MESSAGE_BYTES
DLQ_MAX_MESSAGE_BYTES: Final = 2 * 1024 * 1024
PRODUCER_MAX_REQUEST_BYTES: Final = DLQ_MAX_MESSAGE_BYTES + 64 * 1024
# Rejected records are kept this long unless HUB_RETENTION_DLQ_DAYS says otherwise.
DLQ_RETENTION_DAYS: Final = 30.0


def topic_configs(dlq_retention_days: float = DLQ_RETENTION_DAYS) -> dict[str, dict[str, str]]:
    """What the hub sets on the topics it owns. Log-append time makes a record's timestamp the
    broker's arrival time, which no device can set: event time is bounded by it, and a record's
    key is the one valid then."""
    return {
        TELEMETRY: {
            "message.timestamp.type": "LogAppendTime",
            "max.message.bytes": str(TELEMETRY_MAX_MESSAGE_BYTES),
        },
        DLQ: {
            "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES),
            "retention.ms": str(int(dlq_retention_days * 86_400_000)),
        },
    }


def replicated_configs(replication_factor: int) -> dict[str, str]:
    """With three copies, a write counts once two hold it (producers ask acks=all): one broker
    may fail without a write lost or refused."""
    return {"min.insync.replicas": "2"} if replication_factor >= 3 else {}


REGION_CODE: Final = re.compile(r"^[a-z][a-z0-9]{1,31}$")


def partner_topic(region: str, dataset: str) -> str:
    """``partner.<region>.<dataset>.v1``: one region's records only."""
    if not REGION_CODE.match(region):
        raise ValueError(f"not a region code: {region!r}")
    return f"partner.{region}.{dataset}.v1"


def partner_topics(regions: Iterable[str]) -> list[str]:
    return [partner_topic(r, d) for r in regions for d in ("kpi-results", "kpi-alerts")]


def contract_topics(regions: Iterable[str] = REGIONS) -> list[str]:
    """The contract's topics, with the partner topics of ``regions`` (the founding two unless
    told: regions are data, ``hub.regions``)."""
    return [TELEMETRY, DLQ, SITE_AGGREGATES, KPI_RESULTS, KPI_ALERTS, *partner_topics(regions)]


def hub_topics(regions: Iterable[str] = REGIONS) -> list[str]:
    """Every topic a worker writes or reads: the contract's and the internal ones."""
    return [*contract_topics(regions), TICKS, INCIDENTS]
