"""Reads a partition's records straight from Kafka when the stream skipped some.

Faust's consumer can skip offsets after a seek that races a prefetch (its fetcher then books
the skipped range as a "gap" and commits past it): the records are never delivered, and would be
lost. The processor knows the next offset it expects; when a batch starts beyond it, the runtime
reads the missing range here, with a plain aiokafka consumer, and processes it first.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.processor import Record


class Refill:
    def __init__(self, bootstrap: str, timeout_s: float = 60.0) -> None:
        self.bootstrap = bootstrap
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
            records: list[Record] = []
            deadline = time.monotonic() + self.timeout_s
            while await consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{topic}[{partition}]: offsets {start}-{end - 1} not readable "
                        f"within {self.timeout_s:.0f} s"
                    )
                batches = await consumer.getmany(tp, timeout_ms=1000)
                for message in batches.get(tp, []):
                    if message.offset < end:
                        records.append(
                            Record(topic, partition, message.offset, message.key, message.value)
                        )
            return records

    async def _start(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # a range retention removed: read what remains
            )
            await self._consumer.start()
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
