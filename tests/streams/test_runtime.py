"""The worker runtime's recovery rule, with plain stand-ins for Faust's table and producer: a
failure part-way through a batch must not leave its records judged but unwritten."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from hub import signing, telemetry, topics
from hub.metrics import worker_metrics
from hub.registry.model import Demonstration, Device, Registry, Site
from hub.settings import Settings
from streams.processor import PartitionProcessor, ProcessorConfig, Record
from streams.rows import Fence
from streams.runtime import WorkerRuntime, now_ms
from streams.sink import Fenced, SinkBatch, TimescaleSink
from streams.snapshot import Snapshot, build_snapshot

# The runtime retries a failing batch for ever (as a worker must): a broken stand-in shows as a
# timeout, which need not take the suite's ten minutes.
pytestmark = pytest.mark.timeout(30)


class FlakyProducer:
    """Fails its first send (a broker error, say); then delivers."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, dict[str, object]]] = []
        self.failed = False

    async def send_many(
        self, topic: str, messages: Sequence[tuple[bytes, bytes, int | None]]
    ) -> list[asyncio.Future[None]]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("broker went away")
        self.sent.extend((topic, partition, json.loads(value)) for _, value, partition in messages)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done]


class FreshPartition:
    """Kafka around a partition no one owned before: its group's offset stands at ``start``, the
    DLQ holds nothing of it, and reading a skipped range gives what ``skipped`` holds."""

    def __init__(self, start: int, skipped: list[Record] | None = None) -> None:
        self.start = start
        self.skipped = skipped or []
        self.reads: list[tuple[int, int]] = []

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        self.reads.append((start, end))
        return [r for r in self.skipped if start <= r.offset < end]

    async def rejected(self, *_: object) -> set[int]:
        return set()

    async def start_offset(self, *_: object) -> int:
        return self.start

    async def close(self) -> None:
        pass


class RecordingSink:
    """Takes every row a batch writes (the database is not what this test is about)."""

    backlog_rows = 0

    def __init__(self) -> None:
        self.batches: list[SinkBatch] = []

    async def write(self, batch: SinkBatch) -> float:
        self.batches.append(batch)
        return 0.0

    async def confirm(self, fence: Fence) -> None:
        pass


class RejectingDatabase:
    """A database that takes the rows of rejected records (every record here is rejected) and
    no contender for the partition."""

    def __init__(self) -> None:
        self.recorder = RecordingSink()
        self.claims: list[int] = []  # the partitions claimed, in order

    async def sink(self) -> TimescaleSink:
        return cast(TimescaleSink, self.recorder)

    def rejected_offsets(self) -> set[int]:
        return {row.offset for batch in self.recorder.batches for row in batch.rejections}

    def other_rows(self) -> int:
        return sum(len(batch) - len(batch.rejections) for batch in self.recorder.batches)

    async def claim(self, partition: int) -> int:
        self.claims.append(partition)
        return len(self.claims)

    async def snapshot_if_changed(self, current: Snapshot) -> Snapshot:
        return current

    async def close(self) -> None:
        pass


def runtime_on(
    database: RejectingDatabase,
    kafka: FreshPartition,
    *,
    producer: FlakyProducer | None = None,
    table: dict[bytes, bytes] | None = None,
    registry: CollectorRegistry | None = None,
    config: ProcessorConfig | None = None,
    rebalancing: bool = False,
) -> WorkerRuntime:
    """A runtime over these stand-ins, its producer delivering unless one is given."""
    if producer is None:
        producer = FlakyProducer()
        producer.failed = True
    return WorkerRuntime(
        Settings(),
        worker_metrics(registry or CollectorRegistry()),
        config or ProcessorConfig(),
        table={} if table is None else table,
        producer=producer,
        highwater=lambda partition: None,
        partitions={topics.DLQ: 12},
        database=database,
        refill=kafka,
        rebalancing=lambda: rebalancing,
    )


async def test_a_batch_that_fails_part_way_is_redone_from_the_written_state() -> None:
    registry = CollectorRegistry()
    table: dict[bytes, bytes] = {}
    producer = FlakyProducer()
    database = RejectingDatabase()
    runtime = runtime_on(
        database, FreshPartition(100), producer=producer, table=table, registry=registry
    )
    runtime.assign([5])
    # No device is registered (an empty registry): every record is rejected to the DLQ.
    batch = [Record(topics.TELEMETRY, 5, n, b"GJ-BUK-0001", b"{}") for n in range(100, 104)]

    await runtime.handle_batch(batch)

    assert [(topic, p, m["offset"]) for topic, p, m in producer.sent] == [
        (topics.DLQ, 5, n) for n in range(100, 104)
    ]
    assert registry.get_sample_value("hub_batch_failures_total") == 1
    # The processor was rebuilt on this worker's claim: claiming again could have fenced off a
    # worker the group gave the partition to meanwhile.
    assert database.claims == [5]
    # Each rejection is kept (written again on the retry: the table is keyed by offset).
    assert database.rejected_offsets() == set(range(100, 104))
    assert database.other_rows() == 0
    written = PartitionProcessor(5, runtime.config)
    written.restore(table.items(), runtime.snapshot, now_ms=0)
    assert written.next_offset == 104


def rejected_records(offsets: range) -> list[Record]:
    """Records no registry knows (an empty one): each goes to the DLQ, which shows its offset."""
    return [Record(topics.TELEMETRY, 5, n, b"GJ-BUK-0001", b"{}") for n in offsets]


async def test_a_first_batch_delivered_past_the_groups_offset_gets_the_skipped_records_first() -> (
    None
):
    """No progress of the partition survives, and Faust's first batch starts beyond the group's
    committed offset (its prefetch raced the seek to it and booked the range as done): the
    skipped records are read back and processed first."""
    # (Broken by starting a fresh partition at 0, as before: nothing is read back.)
    producer = FlakyProducer()
    producer.failed = True  # delivers from the start
    kafka = FreshPartition(100, rejected_records(range(95, 105)))
    database = RejectingDatabase()
    runtime = runtime_on(database, kafka, producer=producer)
    runtime.assign([5])

    processed = await runtime.handle_batch(rejected_records(range(105, 108)))

    assert kafka.reads == [(100, 105)]
    assert processed == list(range(100, 108))
    assert [m["offset"] for _, _, m in producer.sent] == list(range(100, 108))
    assert database.rejected_offsets() == set(range(100, 108))


class NewKeyDatabase(RejectingDatabase):
    """A registry in which the device got its key after the worker read the registry."""

    def __init__(self, newer: Snapshot) -> None:
        super().__init__()
        self.newer = newer
        self.reads = 0

    async def snapshot_if_changed(self, current: Snapshot) -> Snapshot:
        self.reads += 1
        return self.newer


async def test_a_device_provisioned_while_the_worker_runs_loses_nothing() -> None:
    """The worker's registry predates the device's key (it was issued a moment ago, and the next
    refresh is seconds away): its first records are judged by a registry read at once, not
    rejected as unauthenticated. One reread for the batch."""
    registry = CollectorRegistry()
    producer = FlakyProducer()
    producer.failed = True
    site, device = "GJ-BUK-0001", "GJ-BUK-0001-CAM1"
    key = b"k" * 32
    files = Registry(
        (Site(site, "gwangju", "buk", "school_zone", "", 35.1, 126.9),),
        (Device(device, site, "DEMO-A", ""),),
        (Demonstration("DEMO-A", "A", "t", "t", "2026-01-01", "2027-12-31", (), ("online",)),),
        "r1",
    )
    now = now_ms()
    stale = build_snapshot(files, {}, as_of_ms=now - 2_000)  # the key did not exist yet
    database = NewKeyDatabase(build_snapshot(files, {device: key}, "r2", as_of_ms=now))
    runtime = runtime_on(
        database,
        FreshPartition(0),
        producer=producer,
        registry=registry,
        config=ProcessorConfig(partitions=1),
    )
    runtime.snapshot = stale
    runtime.assign([0])
    batch = []
    for n in range(3):
        value = telemetry.encode(
            event_id=f"e{n}",
            device_id=device,
            site_id=site,
            ts=datetime.fromtimestamp(now / 1000, UTC),
            kind="heartbeat",
            metrics={"online": 1.0},
        )
        headers = signing.headers(key, value)
        batch.append(Record(topics.TELEMETRY, 0, n, site.encode(), value, now, headers))

    assert await runtime.handle_batch(batch) == [0, 1, 2]

    assert producer.sent == []  # nothing to the DLQ
    assert (
        registry.get_sample_value(
            "hub_records_accepted_total", {"region": "gwangju", "district": "buk"}
        )
        == 3
    )
    assert registry.get_sample_value("hub_registry_rereads_total") == 1
    assert database.reads == 1


async def test_a_worker_its_group_is_dropping_claims_nothing() -> None:
    """Its partitions are being taken back (a batch stuck past the poll interval): they may be
    claimed by their next owner already, and a claim now would fence that owner off."""
    database = RejectingDatabase()
    runtime = runtime_on(
        database, FreshPartition(100, rejected_records(range(100, 110))), rebalancing=True
    )
    runtime.assign([5])

    assert await runtime.handle_batch(rejected_records(range(100, 103))) is None

    assert database.claims == []
    assert database.recorder.batches == []


class StaleClaimSink(RecordingSink):
    """Its first write finds another claim on the partition (a worker that has since lost it)."""

    async def write(self, batch: SinkBatch) -> float:
        if not self.batches and batch.fence is not None and batch.fence.epoch == 1:
            raise Fenced(batch.fence, 2)
        return await super().write(batch)


async def test_a_worker_fenced_by_a_stale_claim_claims_its_partition_back() -> None:
    """The group still gives the partition here: dropping it would leave it to nobody until the
    next rebalance (its records unread, its windows never closed)."""
    database = RejectingDatabase()
    database.recorder = StaleClaimSink()
    runtime = runtime_on(database, FreshPartition(100, rejected_records(range(100, 110))))
    runtime.assign([5])

    assert await runtime.handle_batch(rejected_records(range(100, 103))) is None
    processed = await runtime.handle_batch(rejected_records(range(103, 105)))

    assert database.claims == [5, 5]
    assert processed == list(range(100, 105))
    assert database.rejected_offsets() == set(range(100, 105))
