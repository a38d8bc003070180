"""The worker's I/O around the pure processor: registry refresh, state table, sink, producer.

One ``PartitionProcessor`` per assigned partition, created (restored from the state table, and
its rows claimed) on first use and dropped when the partition is revoked or assigned anew.
Batches and wall-clock ticks of a partition are serialised by a per-partition lock; everything a
batch produced is written by the checkpoint (``streams.checkpoint``: database, then Kafka, then
the state table) before the batch returns, i.e. before its offsets may be committed. This
worker's hold on each partition (fence, DLQ read-back) is kept beside its processor
(``streams.ownership``).

What it writes to and reads from comes in through the constructor: Faust's table and producer
and the consumer's high-water marks in the worker, plain stand-ins in tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka import TopicPartition

from hub import principals, topics
from hub.metrics import WorkerMetrics
from hub.settings import Settings
from streams.checkpoint import Checkpoint, OutputProducer, StateTable
from streams.database import WorkerDatabase
from streams.intake import KafkaRecord
from streams.observe import Observer
from streams.ownership import Owned
from streams.processor import BatchResult, PartitionProcessor, ProcessorConfig
from streams.refill import Refill
from streams.rows import Fence, LastSeenRow
from streams.sink import DATABASE_UNAVAILABLE, Fenced, SinkBatch, TimescaleSink
from streams.snapshot import EMPTY, Snapshot

log = logging.getLogger(__name__)

# How far the clocks of two workers may disagree: a new owner reads the DLQ from this long before
# its predecessor's last progress record.
CLOCK_MARGIN_MS = 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


class ReadBack(Protocol):
    """Reads Kafka where the stream cannot be trusted to (``streams.refill.Refill``)."""

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Any]: ...
    async def start_offset(self, group: str, topic: str, partition: int) -> int: ...
    async def rejected(
        self,
        dlq: TopicPartition,
        since_ms: int,
        hub: str,
        source: TopicPartition,
        start: int,
    ) -> set[int]: ...
    async def close(self) -> None: ...


class Database(Protocol):
    """The worker's database (``streams.database.WorkerDatabase``)."""

    async def sink(self) -> TimescaleSink: ...
    async def claim(self, partition: int) -> int: ...
    async def snapshot_if_changed(self, current: Snapshot) -> Snapshot: ...
    async def close(self) -> None: ...


class NotAssigned(Exception):
    """Work for a partition this worker does not own (now): nothing to do."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"partition {partition} is not assigned to this worker")
        self.partition = partition


class WorkerRuntime:
    def __init__(
        self,
        settings: Settings,
        metrics: WorkerMetrics,
        config: ProcessorConfig,
        *,
        table: StateTable,
        producer: OutputProducer,
        highwater: Callable[[int], int | None],
        partitions: dict[str, int],
        database: Database | None = None,
        refill: ReadBack | None = None,
        rebalancing: Callable[[], bool] = lambda: False,
    ) -> None:
        """``highwater``: a partition's log-end offset as the consumer last saw it (None if not
        known); ``partitions``: the partition counts of the topics written to a chosen one;
        ``rebalancing``: whether the group is taking this worker's partitions back now."""
        self.settings = settings
        self.metrics = metrics
        self.config = config
        self.table = table
        self.producer = producer
        self.highwater = highwater
        self.partitions = partitions
        self.database: Database = database or WorkerDatabase(
            settings,
            config.hub,
            on_error=lambda e: metrics.db_errors.labels(type(e).__name__).inc(),
            on_quarantine=lambda t, n: metrics.sink_quarantined.labels(t).inc(n),
        )
        self.refill: ReadBack = refill or Refill(principals.client(settings))
        self.observe = Observer(metrics)
        self.snapshot: Snapshot = EMPTY
        self.owned: dict[int, Owned] = {}
        self.locks: dict[int, asyncio.Lock] = {}
        self.next_offset: dict[int, int] = {}
        self.assigned: set[int] = set()
        # This worker's claim on each partition, once per assignment: a processor rebuilt after
        # a failure keeps it (claiming again could take the partition from its next owner).
        self.fences: dict[int, Fence] = {}
        self.rebalancing = rebalancing
        self.checkpoint = Checkpoint(self.database, producer, table, self.partition_count, metrics)

    async def refresh_registry(self) -> bool:
        """Reload the registry if its digest changed; True if it did. While the database is
        away the worker keeps judging with the registry it has (the sink waits it out)."""
        try:
            return await self._read_registry()
        except DATABASE_UNAVAILABLE as error:
            self.metrics.db_errors.labels(type(error).__name__).inc()
            log.warning("registry refresh skipped, database unavailable (%s)", error)
            return False

    async def _read_registry(self) -> bool:
        """The registry as the database holds it now (raises while the database is away)."""
        previous = self.snapshot
        snapshot = await self.database.snapshot_if_changed(previous)
        self.snapshot = snapshot
        if snapshot.digest == previous.digest:
            return False
        log.info(
            "registry %s loaded: %d devices, %d sites",
            snapshot.digest,
            len(snapshot.devices),
            len(snapshot.sites),
        )
        self.metrics.registry_digest_loaded.set(time.time())
        return True

    def assign(self, partitions: Sequence[int]) -> None:
        """Newly assigned partitions start from the state table: a processor kept from an
        earlier assignment would hold what another owner has since changed."""
        for partition in partitions:
            self.owned.pop(partition, None)
            self.fences.pop(partition, None)
        self.assigned.update(partitions)

    async def write_held_back(self, partitions: Sequence[int], timeout_s: float = 5.0) -> None:
        """What the partitions' processors held back of site_last_seen, before they go (a stop,
        a rebalance). Bounded: if the database is away, the next owner writes it (restore)."""
        rows: list[LastSeenRow] = []
        for partition in partitions:
            owned = self.owned.get(partition)
            if owned is not None:
                rows.extend(owned.processor.take_last_seen())
        if not rows:
            return
        try:
            sink = await self.database.sink()
            await asyncio.wait_for(sink.write(SinkBatch((), (), (), rows)), timeout_s)
        except (TimeoutError, *DATABASE_UNAVAILABLE) as error:
            log.warning("site_last_seen of %d sites left to the next owner (%r)", len(rows), error)

    def revoke(self, partitions: Sequence[int]) -> None:
        """Forget revoked partitions: whoever gets them next restores from the table."""
        for partition in partitions:
            self.assigned.discard(partition)
            self.owned.pop(partition, None)
            self.fences.pop(partition, None)
            self.observe.forget(partition)

    async def own(self, partition: int) -> Owned:
        """The partition's processor and this worker's hold on it, made on first use after an
        assignment: restored from the state table, its rows claimed. No claim is made while the
        group takes the partitions back: a worker dropped from its group (a batch stuck past the
        poll interval) still has them until that batch ends, and a claim of it then would fence
        off the worker the group gave them to (the outage test lost a partition that way)."""
        owned = self.owned.get(partition)
        if owned is None:
            fence = self.fences.get(partition)
            if partition not in self.assigned or (fence is None and self.rebalancing()):
                raise NotAssigned(partition)
            processor = PartitionProcessor(partition, self.config)
            items = ((k, v) for k, v in self.table.items() if processor.owns(k) and v is not None)
            processor.restore(items, self.snapshot, now_ms())
            if not processor.next_offset:
                # No progress of it survives: it starts where the group's offset stands. Faust
                # may deliver its first batch from beyond that (a prefetch racing the seek to
                # the committed offsets, which books the range between as done): the skipped
                # records are read back like any other skip.
                processor.start_at(
                    await self.refill.start_offset(
                        self.settings.app_id, topics.TELEMETRY, partition
                    )
                )
            log.info(
                "partition %d: restored %d open windows, %d KPI states, watermark %d, "
                "next offset %d",
                partition,
                processor.windows.open_windows(),
                len(processor.kpi_states),
                processor.windows.watermark_ms,
                processor.next_offset,
            )
            if fence is None:
                epoch = await self.database.claim(partition)
                fence = self.fences[partition] = Fence(self.config.hub, partition, epoch)
            owned = Owned(processor, fence)
            self.owned[partition] = owned
        return owned

    async def _read_back_rejections(self, owned: Owned, first: KafkaRecord) -> None:
        """What a previous owner sent to the DLQ of the records from here on, before its
        progress record (if any) was durable: those records come again, and must not be
        rejected twice. A rejection is written after its record arrived: the DLQ is read from
        the earlier of the progress record's time and the first record's arrival (less a margin
        for the clocks of broker and workers)."""
        processor = owned.processor
        partition = processor.partition
        start = processor.next_offset or first.offset
        since = first.timestamp if first.timestamp > 0 else now_ms()
        if processor.progress_ms:
            since = min(since, processor.progress_ms)
        dlq = TopicPartition(topics.DLQ, partition % self.partition_count(topics.DLQ))
        owned.rejected_before = await self.refill.rejected(
            dlq,
            since - CLOCK_MARGIN_MS,
            self.config.hub,
            TopicPartition(topics.TELEMETRY, partition),
            start,
        )
        owned.read_back = True
        if owned.rejected_before:
            log.info(
                "partition %d: %d records from offset %d on are already in the DLQ",
                partition,
                len(owned.rejected_before),
                start,
            )

    def partition_count(self, topic: str) -> int:
        count = self.partitions.get(topic)
        if not count:
            raise RuntimeError(f"the partition count of {topic} is not known")
        return count

    def lock(self, partition: int) -> asyncio.Lock:
        return self.locks.setdefault(partition, asyncio.Lock())

    async def handle_batch(self, messages: Sequence[KafkaRecord]) -> list[int] | None:
        """One batch of one partition's records, processed and written. Returns the offsets
        processed (with any skipped range read back), to be acknowledged; None when the partition
        is not this worker's (any more): nothing may be acknowledged."""
        if not messages:
            return []
        partition = messages[0].partition
        started = time.monotonic()
        processed: list[int] = []

        async def step(owned: Owned) -> None:
            processed[:] = await self._process(owned, messages)

        async with self.lock(partition):
            done = await self._until_done(partition, step)
        self.metrics.batch_seconds.observe(time.monotonic() - started)
        return processed if done else None

    async def _process(self, owned: Owned, records: Sequence[KafkaRecord]) -> list[int]:
        processor = owned.processor
        partition = processor.partition
        end = self.highwater(partition)
        if end is not None and end < processor.next_offset:
            # The topic was deleted and created again: its offsets started over.
            log.warning(
                "partition %d: log end %d is below the %d already processed; the topic "
                "was recreated, reading it as new",
                partition,
                end,
                processor.next_offset,
            )
            processor.start_at(0)
            owned.read_back = False  # offsets of the old topic
        if not owned.read_back:
            await self._read_back_rejections(owned, records[0])
        records = await self._without_gaps(processor.next_offset, records)
        self.next_offset[partition] = records[-1].offset + 1
        self.metrics.batch_records.observe(len(records))
        self.metrics.received.inc(len(records))
        rest: Sequence[KafkaRecord] = records
        final = False
        while rest:
            result = processor.process(
                rest,
                self.snapshot,
                now_ms(),
                already_rejected=owned.rejected_before,
                registry_final=final,
            )
            await self.apply(owned, result)
            if result.resume_at is None:
                break
            # A device or key newer than the snapshot, maybe: read the registry again (at
            # once, not at the next refresh) and judge the rest by it. Once per batch; if the
            # database is away this raises, and the batch is retried from what was written.
            self.metrics.registry_rereads.inc()
            await self._read_registry()
            rest, final = rest[result.resume_at :], True
        return [record.offset for record in records]

    async def _until_done(self, partition: int, step: Callable[[Owned], Awaitable[None]]) -> bool:
        """Run ``step`` on the partition's processor until it succeeds.

        A failure part-way (an error the sink does not know, a producer error) leaves the
        processor's memory ahead of what was written: its records judged, their rows or DLQ
        records not. Giving up would lose them once the batch's offsets were acknowledged.
        Instead the processor is rebuilt from the state table, which holds only what was
        written, and the step runs again from there.
        """
        backoff = 0.5
        while True:
            try:
                await step(await self.own(partition))
                return True
            except NotAssigned:
                log.info("partition %d: not assigned here (any more); skipped", partition)
                return False
            except Fenced as fenced:
                # Another worker claimed the partition while this one waited: nothing of the
                # batch was written, nothing is acknowledged. If the group is taking the
                # partition from here, no claim is made again (``own``); if the group still
                # gives it here, the other claim was stale and the next batch claims it back:
                # dropping it would leave it to nobody until the next rebalance.
                self.owned.pop(partition, None)
                self.fences.pop(partition, None)
                self.metrics.fenced.inc()
                log.warning("partition %d: fenced, batch dropped (%s)", partition, fenced)
                return False
            except asyncio.CancelledError:
                self.owned.pop(partition, None)  # its memory may be ahead of its writes
                raise
            except Exception:
                self.owned.pop(partition, None)
                self.metrics.batch_failures.inc()
                if partition not in self.assigned:
                    log.exception("partition %d: processing failed; revoked meanwhile", partition)
                    return False
                log.exception(
                    "partition %d: processing failed; rebuilt from its state, retrying in %.1f s",
                    partition,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _without_gaps(
        self, expected: int, records: Sequence[KafkaRecord]
    ) -> list[KafkaRecord]:
        """``records`` with any offsets the stream skipped (from ``expected`` on) read back in."""
        out: list[KafkaRecord] = []
        for record in records:
            if record.offset > expected:
                skipped = await self.refill.read(
                    record.topic, record.partition, expected, record.offset
                )
                log.warning(
                    "partition %d: the stream skipped offsets %d-%d; read %d records directly",
                    record.partition,
                    expected,
                    record.offset - 1,
                    len(skipped),
                )
                self.metrics.refilled.inc(len(skipped))
                out.extend(skipped)
            out.append(record)
            expected = max(expected, record.offset + 1)
        return out

    def lagging(self, partition: int) -> bool:
        """Records are waiting in Kafka that this worker has not processed yet."""
        end = self.highwater(partition)
        done = self.next_offset.get(partition)
        return end is not None and done is not None and done < end

    async def handle_tick(self, partition: int) -> None:
        # A partition that seems idle only because the worker is behind is not idle: its event
        # time must come from its records, or catching up would turn them into late ones. A tick
        # for a partition owned elsewhere now (sent before a rebalance) is not this worker's.
        if partition not in self.assigned or self.lagging(partition):
            return
        async with self.lock(partition):
            await self._until_done(partition, self._tick)

    async def _tick(self, owned: Owned) -> None:
        await self.apply(owned, owned.processor.tick(self.snapshot, now_ms()))

    async def apply(self, owned: Owned, result: BatchResult) -> None:
        """The batch's checkpoint (``streams.checkpoint``), then what it is observed by: the
        offset moves only after the checkpoint."""
        await self.checkpoint.commit(owned, result)
        processor = owned.processor
        self.observe.counts(result.counts)
        self.observe.written(result)
        end, done = self.highwater(processor.partition), self.next_offset.get(processor.partition)
        self.observe.partition(
            processor.partition,
            None if end is None or done is None else end - done,
            processor.windows.watermark_ms,
            processor.windows.closed_through_ms,
            processor.clock_ahead,
        )

    async def close(self) -> None:
        await self.refill.close()
        await self.database.close()
