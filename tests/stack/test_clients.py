"""The clients devices and partners really use, on the SASL listener (SCRAM-SHA-512): a current
librdkafka (confluent-kafka) and Kafka's own console tools, besides aiokafka (test_access.py).
Debian 12's kcat bundles librdkafka 2.0.2, whose SCRAM fails against Kafka 4 (docs/security.md)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

from hub import topics
from hub.kafkatools import java_command
from hub.registry.files import read_registry
from hub.settings import Settings
from tests.stack.test_access import add
from tests.support import record, send_all, signed
from tooling.stack.kafka import Kafka

PARTNER_TOPIC = topics.partner_topic("jeonnam", "kpi-alerts")


@pytest.fixture
def device_id() -> str:
    return read_registry().devices[1].device_id


def librdkafka(settings: Settings, user: str, password: str) -> dict[str, object]:
    """The working configuration docs/security.md gives device makers and partners."""
    return {
        "bootstrap.servers": settings.kafka_sasl_bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(settings.kafka_ca),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "partitioner": "murmur2_random",  # Kafka's Java partitioner: the site's partition
    }


def client_properties(settings: Settings, tmp: Path, user: str, password: str) -> Path:
    path = tmp / f"{user}.properties"
    path.write_text(
        "security.protocol=SASL_SSL\n"
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={settings.kafka_ca}\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{password}";\n'
    )
    return path


def console(settings: Settings, main: str, *args: str, stdin: str = "") -> str:
    """Kafka's console tool ``main`` from the stack's own jars: its output (stderr included)."""
    kafka = Kafka(settings)
    java = shutil.which("java") or "java"
    argv = java_command(settings, kafka.libs, java, main, *args, logs=kafka.dir / "logs")
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


async def hub_publishes(settings: Settings, key: str, value: bytes) -> None:
    """A KPI alert on the partner topic, as the hub writes it (its own listener)."""
    await send_all(settings, PARTNER_TOPIC, [(key, value)])


async def test_librdkafka_devices_publish_and_partners_read(
    loaded_registry: Settings, device_id: str
) -> None:
    settings = loaded_registry
    user, password = await add("add-device", device_id)
    producer = Producer(librdkafka(settings, user, password))
    site = device_id.rsplit("-", 1)[0]
    value = record(site, int(time.time() * 1000), {"online": 1}, device=device_id)
    outcome: dict[str, KafkaError | None] = {}

    def report(error: KafkaError | None, message: Message) -> None:
        outcome[message.topic() or ""] = error

    headers: list[tuple[str, str | bytes | None]] = [*signed(value)]
    producer.produce(topics.TELEMETRY, value=value, key=site, headers=headers, on_delivery=report)
    producer.produce(topics.DLQ, value=b"{}", on_delivery=report)
    assert await asyncio.to_thread(producer.flush, 30) == 0
    assert outcome[topics.TELEMETRY] is None
    refused = outcome[topics.DLQ]
    assert refused is not None
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    name = f"rdk-{uuid.uuid4().hex[:6]}"
    user, password = await add("add-partner", "jeonnam", name)
    consumer = Consumer(
        {
            **librdkafka(settings, user, password),
            "group.id": f"{name}.alerts",
            "auto.offset.reset": "latest",
        }
    )
    consumer.subscribe([PARTNER_TOPIC])
    try:
        marker = json.dumps({"marker": name}).encode()

        def assigned() -> bool:
            consumer.poll(0.5)
            return bool(consumer.assignment())

        for _ in range(60):
            if await asyncio.to_thread(assigned):
                break
        await hub_publishes(settings, "JN-MOKPO-0001", marker)
        got = None
        for _ in range(60):
            message = await asyncio.to_thread(consumer.poll, 0.5)
            if message is not None and message.error() is None and message.value() == marker:
                got = message
                break
        assert got is not None, "the partner's librdkafka consumer did not receive the alert"
    finally:
        consumer.close()


async def test_kafkas_console_tools_publish_as_a_device_and_read_as_a_partner(
    loaded_registry: Settings, device_id: str, tmp_path: Path
) -> None:
    settings = loaded_registry
    user, password = await add("add-device", device_id)
    config = client_properties(settings, tmp_path, user, password)
    site = device_id.rsplit("-", 1)[0]
    value = record(site, int(time.time() * 1000), {"online": 1}, device=device_id).decode()
    (name, signature), *_ = signed(value.encode())
    line = f"{name}:{signature.decode()}\t{site}\t{value}\n"
    produce = [
        "--bootstrap-server",
        settings.kafka_sasl_bootstrap,
        "--producer.config",
        str(config),
        "--property",
        "parse.key=true",
        "--property",
        "parse.headers=true",
        "--sync",
    ]
    out = await asyncio.to_thread(
        console,
        settings,
        "org.apache.kafka.tools.ConsoleProducer",
        "--topic",
        topics.TELEMETRY,
        *produce,
        stdin=line,
    )
    assert "ERROR" not in out, out[-2000:]
    out = await asyncio.to_thread(
        console,
        settings,
        "org.apache.kafka.tools.ConsoleProducer",
        "--topic",
        topics.DLQ,
        *produce,
        stdin=line,
    )
    assert "TopicAuthorizationException" in out or "Not authorized" in out, out[-2000:]

    partner = f"console-{uuid.uuid4().hex[:6]}"
    user, password = await add("add-partner", "jeonnam", partner)
    config = client_properties(settings, tmp_path, user, password)
    marker = json.dumps({"marker": partner})
    await hub_publishes(settings, "JN-MOKPO-0001", marker.encode())
    out = await asyncio.to_thread(
        console,
        settings,
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "--bootstrap-server",
        settings.kafka_sasl_bootstrap,
        "--consumer.config",
        str(config),
        "--topic",
        PARTNER_TOPIC,
        "--group",
        f"{partner}.console",
        "--from-beginning",
        "--max-messages",
        "100000",
        "--timeout-ms",
        "5000",
    )
    assert marker in out, out[-2000:]
