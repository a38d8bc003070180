"""Devices publish with whatever client their maker chose, at its defaults: a burst of small
valid records from librdkafka (confluent-kafka batches up to 1 MB), Kafka's Java producer and
aiokafka is accepted whole. The telemetry topic's limit applies to a batch, not a record."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from confluent_kafka import KafkaError, Message, Producer

from hub import topics
from tests.hostile.conftest import HostileHub, now_ms, sites_on
from tests.stack.test_clients import console
from tests.support import record, signed

PARTITION = 8
BURST = 2000  # about 660 KB of records: one librdkafka batch at its defaults


def burst(sites: list[str], tag: str) -> list[tuple[str, bytes]]:
    now = now_ms()
    chosen = [sites[n % len(sites)] for n in range(BURST)]
    return [
        (site, record(site, now, {"test_online": 1}, event_id=f"{tag}-{n}"))
        for n, site in enumerate(chosen)
    ]


def librdkafka_burst(bootstrap: str, items: list[tuple[str, bytes]]) -> list[str]:
    """At librdkafka's defaults but for the partitioner (Kafka's own: a site's partition).
    Signed beforehand, produced in a tight loop: a gateway's burst, batched as one."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    errors: list[str] = []

    def report(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            errors.append(str(error.name()))

    ready: list[tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]] = [
        (site.encode(), value, [*signed(value)]) for site, value in items
    ]
    for key, value, headers in ready:
        producer.produce(topics.TELEMETRY, value, key, headers=headers, on_delivery=report)
    assert producer.flush(60) == 0
    return errors


async def test_a_burst_from_each_client_at_its_defaults_is_accepted(
    hostile: HostileHub, tmp_path: Path
) -> None:
    settings = hostile.settings
    sites = sites_on(PARTITION, settings.partitions)[:10]
    tag = uuid.uuid4().hex[:6]
    settled = hostile.settled()
    accepted = hostile.counter("hub_records_accepted_total")

    rdkafka = burst(sites, f"{tag}-rd")
    assert await asyncio.to_thread(librdkafka_burst, settings.kafka_bootstrap, rdkafka) == []

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        sent = [
            await producer.send(topics.TELEMETRY, v, s.encode(), headers=signed(v))
            for s, v in burst(sites, f"{tag}-aio")
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    lines = [
        f"{name}:{signature.decode()}\t{site}\t{value.decode()}"
        for site, value in burst(sites, f"{tag}-java")
        for name, signature in signed(value)
    ]
    began = time.monotonic()
    out = await asyncio.to_thread(
        console,
        settings,
        "org.apache.kafka.tools.ConsoleProducer",
        "--bootstrap-server",
        settings.kafka_bootstrap,
        "--topic",
        topics.TELEMETRY,
        "--property",
        "parse.key=true",
        "--property",
        "parse.headers=true",
        stdin="\n".join(lines) + "\n",
    )
    assert "ERROR" not in out, out[-2000:]
    print(f"java console producer: {BURST} records in {time.monotonic() - began:.1f} s")

    await hostile.settle(settled, 3 * BURST)
    assert hostile.counter("hub_records_accepted_total") - accepted == 3 * BURST
