"""Repeats count once: a device retry whatever `ts` it carries, and a rejected record however often
it is replayed."""

from __future__ import annotations

import base64
import json

from aiokafka import AIOKafkaProducer

from hub import principals, signing, topics
from tests.conftest import run_hub_async
from tests.hostile.conftest import HostileHub, now_ms, publish, shared_site, sites_on
from tests.support import record


async def test_a_retry_stamped_into_the_next_minute_is_counted_once(hostile: HostileHub) -> None:
    """The same event_id published at now-70 s and again at now-5 s: one event."""
    site = sites_on(7, hostile.settings.partitions)[0]
    settled = hostile.settled()
    accepted = hostile.counter("hub_records_accepted_total")
    repeats = hostile.counter("hub_records_duplicate_total")
    event_id = f"retry-{now_ms()}"
    now = now_ms()
    first = record(site, now - 70_000, {"test_online": 1}, event_id=event_id)
    retry = record(site, now - 5_000, {"test_online": 1}, event_id=event_id)
    assert await publish(hostile.settings, [(site, first), (site, retry)]) == [None, None]
    await hostile.settle(settled, 2)
    assert hostile.counter("hub_records_accepted_total") - accepted == 1
    assert hostile.counter("hub_records_duplicate_total") - repeats == 1


async def test_two_companies_devices_numbering_events_alike_each_count(
    hostile: HostileHub,
) -> None:
    """At a site two companies share, each device numbers its events 1, 2, 3: every record
    counts for its own device; only a device's own retry is a repeat."""
    site, first, second = shared_site()
    settled = hostile.settled()
    accepted = hostile.counter("hub_records_accepted_total")
    repeats = hostile.counter("hub_records_duplicate_total")
    now = now_ms()
    sends = [
        (site, record(site, now, {"online": 1}, event_id=str(n), device=device))
        for n in (1, 2, 3)
        for device in (first, second)
    ]
    retry = (site, record(site, now + 1000, {"online": 1}, event_id="2", device=second))
    assert await publish(hostile.settings, [*sends, retry]) == [None] * 7
    await hostile.settle(settled, 7)
    assert hostile.counter("hub_records_accepted_total") - accepted == 6
    assert hostile.counter("hub_records_duplicate_total") - repeats == 1


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


async def dlq(hostile: HostileHub, action: str, *args: str) -> str:
    env = {"HUB_DATABASE_URL": hostile.hub.database_url}
    hub = ("--hub", hostile.hub.app_id)
    result = await run_hub_async("dlq", action, *hub, "--since", "10m", *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_replaying_a_still_invalid_record_never_multiplies_it(hostile: HostileHub) -> None:
    site = sites_on(7, hostile.settings.partitions)[1]
    orphan = record(site, now_ms(), {"test_online": 1}, device=f"{site}-GHOST")
    settled = hostile.settled()
    await publish(hostile.settings, [(site, orphan)])
    await hostile.settle(settled, 1)

    async def copies() -> int:
        listed = await dlq(hostile, "list", "--json", "--limit", "0", "--reason", "unknown_device")
        values = [json.loads(line)["value_b64"] for line in listed.splitlines()]
        return values.count(base64.b64encode(orphan).decode())

    assert await copies() == 1
    for _ in range(3):  # each replay sends it once, and its rejection keeps its identity
        settled = hostile.settled()
        sent = await dlq(hostile, "replay", "--reason", "unknown_device")
        assert sent.startswith("replayed 1 record(s)"), sent
        await hostile.settle(settled, 1)
        assert await copies() == 1


async def test_a_device_cannot_replace_another_devices_rejected_record(
    hostile: HostileHub,
) -> None:
    """An attacker copies a victim's rejection identity into ``hub-replayed-from`` on its own
    rejected record: the hub ignores the header (only its own mark counts), both stay in the
    DLQ under their own identities, and a replay sends the victim's original bytes."""
    site = sites_on(7, hostile.settings.partitions)[2]
    victim = record(site, now_ms(), {"test_online": 1}, device=f"{site}-GHOST1")
    settled = hostile.settled()
    await publish(hostile.settings, [(site, victim)])
    await hostile.settle(settled, 1)

    async def listed() -> dict[str, dict[str, object]]:
        out = await dlq(hostile, "list", "--json", "--limit", "0", "--reason", "unknown_device")
        return {r["value_b64"]: r for r in map(json.loads, out.splitlines())}

    origin = str((await listed())[b64(victim)]["origin"])
    attack = record(site, now_ms(), {"test_online": 1}, device=f"{site}-GHOST2")
    settled = hostile.settled()
    producer = AIOKafkaProducer(**principals.client(hostile.settings), acks="all")
    await producer.start()
    try:
        forged = [(signing.REPLAYED_FROM, origin.encode())]
        await producer.send_and_wait(topics.TELEMETRY, attack, site.encode(), headers=forged)
    finally:
        await producer.stop()
    await hostile.settle(settled, 1)
    rejected = await listed()
    assert rejected[b64(victim)]["origin"] == origin
    assert rejected[b64(attack)]["origin"] != origin
