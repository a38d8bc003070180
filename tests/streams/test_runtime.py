"""The worker runtime's recovery rule, with plain stand-ins for Faust's table and producer: a
failure part-way through a batch must not leave its records judged but unwritten."""

from __future__ import annotations

import asyncio
import json

from prometheus_client import CollectorRegistry

from hub import topics
from hub.metrics import worker_metrics
from hub.settings import Settings
from streams.processor import PartitionProcessor, ProcessorConfig, Record
from streams.registry import Snapshot
from streams.runtime import WorkerRuntime
from streams.sink import TimescaleSink


class FlakyProducer:
    """Fails its first send (a broker error, say); then delivers."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, dict[str, object]]] = []
        self.failed = False

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: object,
    ) -> asyncio.Future[None]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("broker went away")
        self.sent.append((topic, partition, json.loads(value or b"")))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class NoRejectionsYet:
    """The DLQ read-back of a partition no one owned before: nothing in it."""

    async def read(self, *_: object) -> list[Record]:
        return []

    async def rejected(self, *_: object) -> set[int]:
        return set()

    async def close(self) -> None:
        pass


class NoDatabase:
    """A database with nothing to write here (every record is rejected) and no contender."""

    async def sink(self) -> TimescaleSink:
        raise AssertionError("nothing of this batch goes to the database")

    async def claim(self, partition: int) -> int:
        return 1

    async def snapshot_if_changed(self, digest: str) -> Snapshot | None:
        return None

    async def close(self) -> None:
        pass


async def test_a_batch_that_fails_part_way_is_redone_from_the_written_state() -> None:
    registry = CollectorRegistry()
    table: dict[bytes, bytes] = {}
    producer = FlakyProducer()
    runtime = WorkerRuntime(
        Settings(),
        worker_metrics(registry),
        ProcessorConfig(),
        table=table,
        producer=producer,
        highwater=lambda partition: None,
        partitions={topics.DLQ: 12},
        database=NoDatabase(),
        refill=NoRejectionsYet(),
    )
    runtime.assign([5])
    # No device is registered (an empty registry): every record is rejected to the DLQ.
    batch = [Record(topics.TELEMETRY, 5, n, b"GJ-BUK-0001", b"{}") for n in range(100, 104)]

    await runtime.handle_batch(batch)

    assert [(topic, p, m["offset"]) for topic, p, m in producer.sent] == [
        (topics.DLQ, 5, n) for n in range(100, 104)
    ]
    assert registry.get_sample_value("hub_batch_failures_total") == 1
    written = PartitionProcessor(5, runtime.config)
    written.restore(table.items(), runtime.snapshot, now_ms=0)
    assert written.next_offset == 104
