"""The worker's producer, across the real broker: the app is built on the idempotent producer,
and a batch's outputs sent as record batches land once each, in order, where Kafka's default
partitioner would have put them."""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path

import faust
from aiokafka import AIOKafkaConsumer

from hub import principals
from hub.partitioning import partition_of
from hub.settings import Settings
from streams import faust_compat
from streams.app import WorkerOptions, broker_credentials, create_app
from tests.support import scratch_topic


def test_the_worker_is_built_on_the_idempotent_producer_and_the_batching_consumer(
    settings: Settings, tmp_path: Path
) -> None:
    """Faust makes its producer once, on first use: one made before ``install`` is its own,
    whose flush may return before the table writes are acknowledged (``streams.checkpoint``)."""
    # (Broken by giving the runtime app.producer before install(), as the worker did until
    # 2026-12-06: its producer was Faust's.)
    app, runtime = create_app(settings, WorkerOptions(index=7))
    producer = runtime.producer
    assert isinstance(producer, faust_compat.IdempotentProducer)
    assert producer is app.producer
    assert isinstance(app.consumer, faust_compat.BatchingConsumer)
    assert faust_compat.delivered_everything(app)  # nothing sent yet


async def test_outputs_sent_as_record_batches_land_once_each_in_order(stack: Settings) -> None:
    async with scratch_topic(stack, "test.sendmany", 3) as topic:
        app = faust.App(
            f"sendmany-{uuid.uuid4().hex[:6]}",
            broker=f"kafka://{stack.kafka_bootstrap}",
            broker_credentials=broker_credentials(stack),
            producer_max_batch_size=64 * 1024,  # a few batches per partition: the split is tested
        )
        producer = faust_compat.IdempotentProducer(app.transport)
        await producer.start()
        padding = b"x" * 900
        # Keyed messages go where Kafka's partitioner puts their key; a DLQ-like one names its own.
        sent = [
            (f"GJ-SITE-{i % 11:04d}".encode(), b"%d|" % i + padding, 2 if i % 10 == 0 else None)
            for i in range(400)
        ]
        try:
            futures = await producer.send_many(topic, sent)
            assert len(futures) > 3  # more than one batch per partition
            for future in futures:
                await future
        finally:
            await producer.stop()

        expected: dict[int, list[bytes]] = defaultdict(list)
        for key, value, partition in sent:
            expected[partition if partition is not None else partition_of(key, 3)].append(value)
        consumer = AIOKafkaConsumer(
            topic,
            **principals.client(stack),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        received: dict[int, list[bytes]] = defaultdict(list)
        try:
            while sum(len(v) for v in received.values()) < len(sent):
                batches = await consumer.getmany(timeout_ms=10_000)
                assert batches, "the broker holds fewer records than were sent"
                for tp, messages in batches.items():
                    received[tp.partition].extend(m.value for m in messages if m.value is not None)
        finally:
            await consumer.stop()
        assert dict(received) == dict(expected)  # each once, in order, on its partition
