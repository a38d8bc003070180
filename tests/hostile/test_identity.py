"""A device's credential publishes only as that device: tried with a third-party client
(confluent-kafka, a current librdkafka) over the SASL listener, as a competitor would."""

from __future__ import annotations

import asyncio
import base64

from aiokafka import AIOKafkaProducer
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import Producer

from hub import principals, signing, topics
from hub.access import KafkaTools
from hub.registry.files import read_registry
from hub.settings import Settings
from tests import support
from tests.hostile.conftest import HostileHub, Issued, add_device, hub_access, now_ms, shared_site
from tests.support import end_offsets, record


def produce(
    settings: Settings, login: Issued, items: list[tuple[str, bytes, bytes | None]]
) -> list[str | None]:
    """(site, value, signing key or None) sent with confluent-kafka as ``login``: each delivery's
    error name, or None. librdkafka must be told to use Kafka's default (murmur2) partitioner."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_sasl_bootstrap,
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(settings.kafka_ca),
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": login.username,
            "sasl.password": login.password,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "message.timeout.ms": 6_000,  # a revoked login fails within it (and keeps trying)
        }
    )
    errors: list[str | None] = []

    def report(error: RdKafkaError | None, _: object) -> None:
        errors.append(None if error is None else str(error.name()))

    for site, value, key in items:
        headers: dict[str, str | bytes | None] | None = None
        if key is not None:
            headers = {signing.HEADER: signing.signature(key, value)}
        producer.produce(
            topics.TELEMETRY, value, site.encode(), headers=headers, on_delivery=report
        )
    producer.flush(30)
    return errors


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


async def test_a_device_cannot_publish_as_another_and_revoking_ends_both(
    access: HostileHub,
) -> None:
    hostile = access
    settings = hostile.settings
    site, victim, competitor = shared_site()
    mine = await add_device(hostile, competitor)
    start = await end_offsets(settings, topics.DLQ)
    settled = hostile.settled()
    accepted = hostile.counter("hub_records_accepted_total")

    def event(device: str) -> bytes:
        return record(site, now_ms(), {"online": 1}, device=device)

    forged, unsigned, own = event(victim), event(victim), event(competitor)
    sends = [(site, forged, mine.key), (site, unsigned, None), (site, own, mine.key)]
    # The broker takes them all: the login is valid, and it may write telemetry.
    assert await asyncio.to_thread(produce, settings, mine, sends) == [None, None, None]
    await hostile.settle(settled, 3)
    rejected = {r["value_b64"]: r for r in await hostile.rejected(start)}
    assert [rejected[b64(v)]["reason"] for v in (forged, unsigned)] == ["unauthenticated"] * 2
    assert f"not signed with the key device {victim} held" in str(rejected[b64(forged)]["detail"])
    assert b64(own) not in rejected
    assert hostile.counter("hub_records_accepted_total") - accepted == 1

    await hub_access(hostile, "revoke", mine.username)
    after = await asyncio.to_thread(produce, settings, mine, [(site, event(competitor), mine.key)])
    assert after != [None], "a revoked login still publishes"
    # A copy of the revoked key, used another way in, is refused too.
    start = await end_offsets(settings, topics.DLQ)
    settled = hostile.settled()
    copy = event(competitor)
    producer = AIOKafkaProducer(**principals.client(settings), acks="all")
    await producer.start()
    try:
        headers = signing.headers(mine.key, copy)
        await producer.send_and_wait(topics.TELEMETRY, copy, site.encode(), headers=headers)
    finally:
        await producer.stop()
    await hostile.settle(settled, 1)
    rejected = {r["value_b64"]: r for r in await hostile.rejected(start)}
    assert rejected[b64(copy)]["reason"] == "unauthenticated"


async def test_every_device_is_held_to_the_produce_quota_but_the_hubs_own(
    access: HostileHub,
) -> None:
    """The broker's default user quota (HUB_DEVICE_BYTE_RATE, 64 KiB/s) holds every login, a
    device's whether added alone or with its whole demonstration; the hub's worker is exempt."""
    tools = KafkaTools(access.settings)
    users = ("kafka.admin.ConfigCommand", "--entity-type", "users")
    default = await asyncio.to_thread(tools.run, *users, "--entity-default", "--describe")
    assert "producer_byte_rate=65536" in default
    device = read_registry().devices[1].device_id
    issued = await add_device(access, device)
    own = await asyncio.to_thread(tools.user_config, issued.username, "--describe")
    assert "producer_byte_rate" not in own  # no exemption of its own: the default holds it
    worker = await asyncio.to_thread(tools.user_config, "hub-worker", "--describe")
    assert "producer_byte_rate=1.073741824E9" in worker
    await hub_access(access, "revoke", issued.username)


async def send_signed(settings: Settings, items: list[tuple[str, bytes, bytes]]) -> None:
    """(site, value, key): each signed with ``key``, acknowledged by the broker, in order."""
    producer = AIOKafkaProducer(**principals.client(settings), acks="all")
    await producer.start()
    try:
        for site, value, key in items:
            headers = signing.headers(key, value)
            await producer.send_and_wait(topics.TELEMETRY, value, site.encode(), headers=headers)
    finally:
        await producer.stop()


async def test_a_new_key_works_at_once_and_the_old_one_stops(access: HostileHub) -> None:
    """At the hub's defaults (registry refresh every 5 s): the operator rotates a device's key
    and the device goes on with the new one at once. Its records count with no wait for the
    worker's next refresh; the old key signs nothing appended after the rotation."""
    hostile = access
    settings = hostile.settings
    site, device, _ = shared_site()
    old = support.test_key(device)
    start = await end_offsets(settings, topics.DLQ)
    settled = hostile.settled()
    accepted = hostile.counter("hub_records_accepted_total")

    def event() -> bytes:
        return record(site, now_ms(), {"online": 1}, device=device)

    out = await hub_access(hostile, "rotate-key", device)
    new = bytes.fromhex(out.split()[1])
    fresh = [event() for _ in range(5)]
    await send_signed(settings, [(site, v, new) for v in fresh])
    stolen = event()
    await send_signed(settings, [(site, stolen, old)])

    await hostile.settle(settled, 6)
    rejected = {r["value_b64"]: r["reason"] for r in await hostile.rejected(start)}
    assert rejected == {b64(stolen): "unauthenticated"}
    assert hostile.counter("hub_records_accepted_total") - accepted == 5


async def test_a_rotation_keeps_the_backlog_the_worker_had_not_reached(
    access: HostileHub,
) -> None:
    """The worker is down while the device publishes with its key; the operator rotates it, the
    device goes on with the new one, and the worker comes back knowing the rotation: the
    backlog is judged by the key it was signed with (appended before the rotation), the rest by
    the new one. Before keys had a history, the rotation turned the backlog into rejections."""
    hostile = access
    settings = hostile.settings
    site, device, _ = shared_site()
    old = support.test_key(device)
    start = await end_offsets(settings, topics.DLQ)

    def event() -> bytes:
        return record(site, now_ms(), {"online": 1}, device=device)

    hostile.worker.stop()
    try:
        backlog = [event() for _ in range(5)]
        await send_signed(settings, [(site, v, old) for v in backlog])
        out = await hub_access(hostile, "rotate-key", device)
        new = bytes.fromhex(out.split()[1])
        fresh = [event() for _ in range(5)]
        await send_signed(settings, [(site, v, new) for v in fresh])
    finally:
        hostile.worker.start()
        await asyncio.to_thread(hostile.worker.wait_ready)
    # A new process: its counters start at zero, and it reads the registry (the rotation
    # included) before its first batch.
    await hostile.settle(0, 10)
    rejected = [r for r in await hostile.rejected(start) if r["key"] == site]
    assert rejected == []
    assert hostile.counter("hub_records_accepted_total") == 10
