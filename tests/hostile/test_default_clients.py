"""Devices publish with whatever client their maker chose, at its defaults: a burst of small
valid records from librdkafka (confluent-kafka batches up to 1 MB), Kafka's Java producer and
aiokafka, each logged in as the device over TLS, is accepted whole. The telemetry topic's limit
applies to a batch, not a record."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from confluent_kafka import KafkaError, Message, Producer

from hub import principals, signing, topics
from tests.hostile.conftest import HostileHub, Issued, add_device, now_ms, shared_site
from tests.stack.test_clients import client_properties, console
from tests.support import record

BURST = 1000  # about 330 KB of records: one librdkafka batch at its defaults


def burst(site: str, device: str, tag: str) -> list[bytes]:
    now = now_ms()
    return [
        record(site, now, {"online": 1}, event_id=f"{tag}-{n}", device=device) for n in range(BURST)
    ]


def librdkafka_burst(
    config: dict[str, str], site: str, key: bytes, values: list[bytes]
) -> list[str]:
    """At librdkafka's defaults but for the partitioner (Kafka's own: a site's partition).
    Signed beforehand, produced in a tight loop: a gateway's burst, batched as one."""
    producer = Producer({**config, "partitioner": "murmur2_random"})
    errors: list[str] = []

    def report(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            errors.append(str(error.name()))

    ready: list[tuple[bytes, list[tuple[str, str | bytes | None]]]] = [
        (value, [(signing.HEADER, signing.signature(key, value))]) for value in values
    ]
    for value, headers in ready:
        producer.produce(
            topics.TELEMETRY, value, site.encode(), headers=headers, on_delivery=report
        )
    assert producer.flush(120) == 0
    return errors


async def test_a_burst_from_each_client_at_its_defaults_is_accepted(
    access: HostileHub, tmp_path: Path
) -> None:
    hostile = access
    settings = hostile.settings
    site, device, _ = shared_site()
    login: Issued = await add_device(hostile, device)
    tag = uuid.uuid4().hex[:6]
    settled = hostile.settled()
    accepted = hostile.counter("hub_records_accepted_total")

    rdkafka = {
        "bootstrap.servers": settings.kafka_sasl_bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(settings.kafka_ca),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": login.username,
        "sasl.password": login.password,
    }
    values = burst(site, device, f"{tag}-rd")
    errors = await asyncio.to_thread(librdkafka_burst, rdkafka, site, login.key, values)
    assert errors == []

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_sasl_bootstrap,
        security_protocol="SASL_SSL",
        ssl_context=principals.device_tls(settings),
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=login.username,
        sasl_plain_password=login.password,
    )
    await producer.start()
    try:
        sent = [
            await producer.send(
                topics.TELEMETRY, v, site.encode(), headers=signing.headers(login.key, v)
            )
            for v in burst(site, device, f"{tag}-aio")
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    lines = [
        f"{signing.HEADER}:{signing.signature(login.key, value).decode()}\t{site}\t{value.decode()}"
        for value in burst(site, device, f"{tag}-java")
    ]
    config = client_properties(settings, tmp_path, login.username, login.password)
    began = time.monotonic()
    out = await asyncio.to_thread(
        console,
        settings,
        "org.apache.kafka.tools.ConsoleProducer",
        "--bootstrap-server",
        settings.kafka_sasl_bootstrap,
        "--producer.config",
        str(config),
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

    await hostile.settle(settled, 3 * BURST, timeout_s=180)
    assert hostile.counter("hub_records_accepted_total") - accepted == 3 * BURST
