"""`hub dlq list` across the real broker when hubs share it: each hub's newest rejection of a
record stands, whichever hub rejected it last. (On a scratch topic, like test_refill.)"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from hub import dlq, principals, topics
from hub.settings import Settings
from hub.topicsetup import ensure_topics


def rejection(hub: str, offset: int, origin: str, at: datetime, detail: str) -> bytes:
    return json.dumps(
        {
            "reason": "unknown_device",
            "detail": detail,
            "topic": topics.TELEMETRY,
            "partition": 3,
            "offset": offset,
            "key": "site",
            "value_b64": "e30=",
            "received_at": at.isoformat(),
            "origin": origin,
            "hub": hub,
        }
    ).encode()


async def test_each_hub_keeps_its_own_newest_rejection_of_a_shared_record(
    stack: Settings,
) -> None:
    mine, theirs = f"dlq-{uuid.uuid4().hex[:8]}", f"dlq-{uuid.uuid4().hex[:8]}"
    topic = f"test-dlq-{mine}"
    await ensure_topics(
        stack.kafka_bootstrap, stack.partitions, [topic], **principals.security(stack)
    )
    origin = f"{topics.TELEMETRY}/3/100"
    now = datetime.now(UTC)
    # Both hubs rejected the record, then its replay (offset 200, same origin); the other hub's
    # rejection of the replay is the newest of all.
    written = [
        rejection(mine, 100, "", now - timedelta(seconds=30), "first, mine"),
        rejection(theirs, 100, "", now - timedelta(seconds=29), "first, theirs"),
        rejection(mine, 200, origin, now - timedelta(seconds=10), "replayed, mine"),
        rejection(theirs, 200, origin, now - timedelta(seconds=9), "replayed, theirs"),
    ]
    producer = AIOKafkaProducer(**principals.client(stack))
    await producer.start()
    try:
        for value in written:
            await producer.send_and_wait(topic, value, key=b"site", partition=3)
    finally:
        await producer.stop()
    try:
        entries = await dlq.read_dlq(stack, now - timedelta(minutes=1), topic)
        by_hub = {e.record.hub: e.record.detail for e in entries}
        assert by_hub == {mine: "replayed, mine", theirs: "replayed, theirs"}
        assert len(entries) == 2
    finally:
        admin = AIOKafkaAdminClient(**principals.client(stack))
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
