"""Reading the DLQ tail back across the real broker: what a partition's previous owner rejected
after its last durable progress record, and nothing of other hubs or partitions. (On a scratch
topic: the real DLQ is read by `hub dlq list`, which these partial records would only clutter.)"""

from __future__ import annotations

import json
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from hub import principals, topics
from hub.settings import Settings
from hub.topicsetup import ensure_topics
from streams.refill import Refill


async def test_the_dlq_tail_gives_this_hubs_rejections_of_one_source_partition(
    stack: Settings,
) -> None:
    hub, other = f"refill-{uuid.uuid4().hex[:8]}", f"refill-{uuid.uuid4().hex[:8]}"
    dlq = TopicPartition(f"test-dlq-{hub}", 7)
    await ensure_topics(stack.kafka_bootstrap, 8, [dlq.topic], **principals.security(stack))
    since_ms = int(time.time() * 1000)
    mine = [(hub, 7, n) for n in (40, 41, 43, 30)]  # 30: before the restored progress
    theirs = [(other, 7, 42), (hub, 19, 44)]  # another hub; another source partition
    producer = AIOKafkaProducer(**principals.client(stack))
    await producer.start()
    try:
        for name, partition, offset in [*mine, *theirs]:
            body = {"hub": name, "topic": topics.TELEMETRY, "partition": partition}
            body["offset"] = offset
            await producer.send_and_wait(
                dlq.topic, json.dumps(body).encode(), key=b"site", partition=dlq.partition
            )
        await producer.send_and_wait(dlq.topic, b"not a DLQ record", partition=dlq.partition)
    finally:
        await producer.stop()

    refill = Refill(principals.client(stack))
    try:
        source = TopicPartition(topics.TELEMETRY, 7)
        assert await refill.rejected(dlq, since_ms, hub, source, start=40) == {40, 41, 43}
        # Nothing written since a later time.
        later = int(time.time() * 1000) + 60_000
        assert await refill.rejected(dlq, later, hub, source, start=40) == set()
    finally:
        await refill.close()
        admin = AIOKafkaAdminClient(**principals.client(stack))
        await admin.start()
        try:
            await admin.delete_topics([dlq.topic])
        finally:
            await admin.close()


async def test_a_partition_without_progress_starts_at_the_groups_offset_or_the_log_start(
    stack: Settings,
) -> None:
    """Where a worker's first batch of a partition should begin, so that a batch Faust delivers
    from further on is noticed and the records before it are read back."""
    name = f"test-start-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(name, 0)
    await ensure_topics(stack.kafka_bootstrap, 1, [name], **principals.security(stack))
    producer = AIOKafkaProducer(**principals.client(stack))
    await producer.start()
    try:
        for n in range(10):
            await producer.send_and_wait(name, b"%d" % n, partition=0)
    finally:
        await producer.stop()
    committer = AIOKafkaConsumer(**principals.client(stack), group_id=f"{name}-committed")
    await committer.start()
    admin = AIOKafkaAdminClient(**principals.client(stack))
    await admin.start()
    refill = Refill(principals.client(stack))
    try:
        committer.assign([tp])
        await committer.commit({tp: 7})
        await admin.delete_records({tp: RecordsToDelete(3)})  # retention took the first three
        assert await refill.start_offset(f"{name}-committed", name, 0) == 7
        assert await refill.start_offset(f"{name}-never-committed", name, 0) == 3
    finally:
        await refill.close()
        await committer.stop()
        try:
            await admin.delete_topics([name])
        finally:
            await admin.close()
