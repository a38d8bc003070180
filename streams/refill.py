"""Reads Kafka directly where the stream cannot be trusted to: skipped ranges, and the DLQ tail.

Faust's consumer can skip offsets after a seek that races a prefetch (its fetcher then books
the skipped range as a "gap" and commits past it): the records are never delivered, and would be
lost. The processor knows the next offset it expects; when a batch starts beyond it, the runtime
reads the missing range here, with a plain aiokafka consumer, and processes it first.

A partition that no progress record covers starts where its consumer group's committed offset
stands (or at the log start, with none): ``start_offset`` tells the runtime, so that a skip in
the very first batch is read back too.

A partition's new owner also reads back what its previous owner sent to the DLQ after its last
durable progress record: those records are re-delivered, and must not be rejected twice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.processor import Record


class _Rejection(msgspec.Struct):
    """The fields of a DLQ record that say where it came from."""

    topic: str = ""
    partition: int = -1
    offset: int = -1
    hub: str = ""


_rejection = msgspec.json.Decoder(_Rejection).decode


class Refill:
    def __init__(self, client: dict[str, Any], timeout_s: float = 60.0) -> None:
        """``client``: aiokafka's connection options (``hub.principals.client``)."""
        self.client = client
        self.timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        """The records of ``[start, end)`` that still exist (retention may have removed some)."""
        async with self._lock:
            consumer = await self._start()
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, start)
            return [
                Record(topic, partition, m.offset, m.key, m.value, m.timestamp, m.headers)
                for m in await self._fetch(consumer, tp, end)
            ]

    async def start_offset(self, group: str, topic: str, partition: int) -> int:
        """Where ``group`` starts reading a partition it holds no progress of: its committed
        offset, or the log start when it has none (``auto_offset_reset=earliest``)."""
        tp = TopicPartition(topic, partition)
        admin = AIOKafkaAdminClient(**self.client)
        await admin.start()
        try:
            committed = (await admin.list_consumer_group_offsets(group, partitions=[tp])).get(tp)
        finally:
            await admin.close()
        if committed is not None and committed.offset >= 0:
            return int(committed.offset)
        async with self._lock:
            consumer = await self._start()
            return int((await consumer.beginning_offsets([tp]))[tp])

    async def rejected(
        self, dlq: TopicPartition, since_ms: int, hub: str, source: TopicPartition, start: int
    ) -> set[int]:
        """Offsets from ``start`` on of ``source`` that ``hub`` sent to ``dlq`` at or after
        ``since_ms``."""
        async with self._lock:
            consumer = await self._start()
            consumer.assign([dlq])
            found = (await consumer.offsets_for_times({dlq: since_ms})).get(dlq)
            end = (await consumer.end_offsets([dlq]))[dlq]
            if found is None:
                return set()
            consumer.seek(dlq, found.offset)
            offsets: set[int] = set()
            for message in await self._fetch(consumer, dlq, end):
                if not message.value:
                    continue
                try:
                    r = _rejection(message.value)
                except msgspec.DecodeError:
                    continue  # not one of ours
                if r.hub == hub and (r.topic, r.partition) == source and r.offset >= start:
                    offsets.add(r.offset)
            return offsets

    async def _fetch(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, end: int
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """From the consumer's position up to ``end`` (exclusive), within the timeout."""
        messages: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + self.timeout_s
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{tp.topic}[{tp.partition}]: not readable up to offset {end} "
                    f"within {self.timeout_s:.0f} s"
                )
            batches = await consumer.getmany(tp, timeout_ms=1000)
            messages.extend(m for m in batches.get(tp, []) if m.offset < end)
        return messages

    async def _start(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                **self.client,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # a range retention removed: read what remains
            )
            await self._consumer.start()
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
