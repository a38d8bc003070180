"""The worker's I/O around the pure processor: registry refresh, state table, sink, producer.

One ``PartitionProcessor`` per assigned partition, created (and restored from the state table)
on first use and dropped when the partition is revoked. Batches and wall-clock ticks of a
partition are serialised by a per-partition lock; everything a batch produced is written before
the batch returns, i.e. before Faust may commit its offsets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any

import asyncpg
from aiokafka import TopicPartition

from hub import topics
from hub.db import WORKER_SESSION, create_pool
from hub.metrics import WorkerMetrics
from hub.settings import Settings
from streams.intake import KafkaRecord
from streams.processor import BatchResult, PartitionProcessor, ProcessorConfig
from streams.refill import Refill
from streams.registry import EMPTY, Snapshot, current_digest, load_snapshot
from streams.sink import (
    DATABASE_UNAVAILABLE,
    Fence,
    Fenced,
    LastSeenRow,
    SinkBatch,
    TimescaleSink,
    claim,
)

log = logging.getLogger("hub.worker")

# How far the clocks of two workers may disagree: a new owner reads the DLQ from this long before
# its predecessor's last progress record.
CLOCK_MARGIN_MS = 60_000
# How long a worker's claim on a partition counts as proven after a fenced write or a check: a
# worker loses a partition only after missing its group's session timeout (6 s at least).
FENCE_FRESH_S = 3.0
FAULT_EXIT_CODE = 86


def now_ms() -> int:
    return int(time.time() * 1000)


class NotAssigned(Exception):
    """Work for a partition this worker does not own (now): nothing to do."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"partition {partition} is not assigned to this worker")
        self.partition = partition


class WorkerRuntime:
    def __init__(self, settings: Settings, metrics: WorkerMetrics, config: ProcessorConfig) -> None:
        self.settings = settings
        self.metrics = metrics
        self.config = config
        self.snapshot: Snapshot = EMPTY
        self.processors: dict[int, PartitionProcessor] = {}
        self.locks: dict[int, asyncio.Lock] = {}
        self._pool: asyncpg.Pool | None = None
        self._sink: TimescaleSink | None = None
        self._pool_lock = asyncio.Lock()
        self.table: Any = None  # the Faust state table, set by create_app
        self.producer: Any = None  # the Faust producer, set by create_app
        # The partition's log-end offset as the consumer last saw it (set by create_app).
        self.highwater: Callable[[int], int | None] = lambda partition: None
        self.next_offset: dict[int, int] = {}
        self.refill = Refill(settings.kafka_bootstrap)
        # Partition counts of the topics written to a chosen partition (set by the worker).
        self.partitions: dict[str, int] = {}
        self.assigned: set[int] = set()
        self._clock_ahead_shown: dict[int, set[str]] = {}
        self._accepting_batches = 0
        # Who claims partitions (partition_owners.owner): host, process, worker index.
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    async def sink(self) -> TimescaleSink:
        async with self._pool_lock:
            if self._sink is None:
                self._pool = await create_pool(
                    self.settings, min_size=1, max_size=4, server_settings=WORKER_SESSION
                )
                self._sink = TimescaleSink(
                    self._pool,
                    on_error=lambda e: self.metrics.db_errors.labels(type(e).__name__).inc(),
                    on_quarantine=lambda t, n: self.metrics.sink_quarantined.labels(t).inc(n),
                )
            return self._sink

    async def refresh_registry(self) -> bool:
        """Reload the registry if its digest changed; True if it did. While the database is
        away the worker keeps judging with the registry it has (the sink waits it out)."""
        await self.sink()  # opens the pool
        assert self._pool is not None
        try:
            async with self._pool.acquire(timeout=10) as conn:
                if await current_digest(conn) == self.snapshot.digest and self.snapshot.digest:
                    return False
                snapshot = await load_snapshot(conn)
        except DATABASE_UNAVAILABLE as error:
            self.metrics.db_errors.labels(type(error).__name__).inc()
            log.warning("registry refresh skipped, database unavailable (%s)", error)
            return False
        if snapshot.digest != self.snapshot.digest:
            log.info(
                "registry %s loaded: %d devices, %d sites",
                snapshot.digest,
                len(snapshot.devices),
                len(snapshot.sites),
            )
        self.snapshot = snapshot
        self.metrics.registry_digest_loaded.set(time.time())
        return True

    def assign(self, partitions: Sequence[int]) -> None:
        """Newly assigned partitions start from the state table: a processor kept from an
        earlier assignment would hold what another owner has since changed."""
        for partition in partitions:
            self.processors.pop(partition, None)
        self.assigned.update(partitions)

    async def write_held_back(self, partitions: Sequence[int], timeout_s: float = 5.0) -> None:
        """What the partitions' processors held back of site_last_seen, before they go (a stop,
        a rebalance). Bounded: if the database is away, the next owner writes it (restore)."""
        rows: list[LastSeenRow] = []
        for partition in partitions:
            processor = self.processors.get(partition)
            if processor is not None:
                rows.extend(processor.take_last_seen())
        if not rows:
            return
        try:
            sink = await self.sink()
            await asyncio.wait_for(sink.write(SinkBatch((), (), (), rows)), timeout_s)
        except (TimeoutError, *DATABASE_UNAVAILABLE) as error:
            log.warning("site_last_seen of %d sites left to the next owner (%r)", len(rows), error)

    def revoke(self, partitions: Sequence[int]) -> None:
        """Forget revoked partitions: whoever gets them next restores from the table."""
        for partition in partitions:
            self.assigned.discard(partition)
            self.processors.pop(partition, None)
            metrics = self.metrics
            for gauge in (metrics.watermark_lag, metrics.closed_through, metrics.consumer_lag):
                with suppress(KeyError):
                    gauge.remove(str(partition))

    async def processor(self, partition: int) -> PartitionProcessor:
        processor = self.processors.get(partition)
        if processor is None:
            if partition not in self.assigned:
                raise NotAssigned(partition)
            processor = PartitionProcessor(partition, self.config)
            items = ((k, v) for k, v in self.table.items() if processor.owns(k) and v is not None)
            processor.restore(items, self.snapshot, now_ms())
            log.info(
                "partition %d: restored %d open windows, %d KPI states, watermark %d, "
                "next offset %d",
                partition,
                processor.windows.open_windows(),
                len(processor.kpi_states),
                processor.windows.watermark_ms,
                processor.next_offset,
            )
            processor.fence = Fence(self.config.hub, partition, await self._claim(partition))
            processor.fence_confirmed = time.monotonic()
            self.processors[partition] = processor
        return processor

    async def _claim(self, partition: int) -> int:
        await self.sink()  # opens the pool
        assert self._pool is not None
        async with self._pool.acquire(timeout=10) as conn:
            return await claim(conn, self.config.hub, partition, self.owner)

    async def _read_back_rejections(
        self, processor: PartitionProcessor, first: KafkaRecord
    ) -> None:
        """What a previous owner sent to the DLQ of the records from here on, before its
        progress record (if any) was durable: those records come again, and must not be
        rejected twice. A rejection is written after its record arrived: the DLQ is read from
        the earlier of the progress record's time and the first record's arrival (less a margin
        for the clocks of broker and workers)."""
        partition = processor.partition
        start = processor.next_offset or first.offset
        since = first.timestamp if first.timestamp > 0 else now_ms()
        if processor.progress_ms:
            since = min(since, processor.progress_ms)
        dlq = TopicPartition(topics.DLQ, partition % self.partition_count(topics.DLQ))
        processor.rejected_before = await self.refill.rejected(
            dlq,
            since - CLOCK_MARGIN_MS,
            self.config.hub,
            TopicPartition(topics.TELEMETRY, partition),
            start,
        )
        processor.read_back = True
        if processor.rejected_before:
            log.info(
                "partition %d: %d records from offset %d on are already in the DLQ",
                partition,
                len(processor.rejected_before),
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

        async def step(processor: PartitionProcessor) -> None:
            processed[:] = await self._process(processor, messages)

        async with self.lock(partition):
            done = await self._until_done(partition, step)
        self.metrics.batch_seconds.observe(time.monotonic() - started)
        return processed if done else None

    async def _process(
        self, processor: PartitionProcessor, records: Sequence[KafkaRecord]
    ) -> list[int]:
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
            processor.next_offset = 0
            processor.read_back = False  # offsets of the old topic
        if not processor.read_back:
            await self._read_back_rejections(processor, records[0])
        if processor.next_offset:
            records = await self._without_gaps(processor.next_offset, records)
        self.next_offset[partition] = records[-1].offset + 1
        result = processor.process(records, self.snapshot, now_ms())
        self.metrics.batch_records.observe(len(records))
        self.metrics.received.inc(len(records))
        await self.apply(processor, result)
        return [record.offset for record in records]

    async def _until_done(
        self, partition: int, step: Callable[[PartitionProcessor], Awaitable[None]]
    ) -> bool:
        """Run ``step`` on the partition's processor until it succeeds.

        A failure part-way (an error the sink does not know, a producer error) leaves the
        processor's memory ahead of what was written: its records judged, their rows or DLQ
        records not. Letting the agent crash would lose them, since Faust acknowledges a crashed
        agent's records. Instead the processor is rebuilt from the state table, which holds only
        what was written, and the step runs again from there.
        """
        backoff = 0.5
        while True:
            try:
                await step(await self.processor(partition))
                return True
            except NotAssigned:
                log.info("partition %d: not assigned here (any more); skipped", partition)
                return False
            except Fenced as fenced:
                # Another worker took the partition over while this one waited: nothing of the
                # batch was written, nothing is acknowledged, and no processor is made for it
                # again until the group assigns it here anew.
                self.processors.pop(partition, None)
                self.assigned.discard(partition)
                self.metrics.fenced.inc()
                log.warning("partition %d: fenced, batch dropped (%s)", partition, fenced)
                return False
            except asyncio.CancelledError:
                self.processors.pop(partition, None)  # its memory may be ahead of its writes
                raise
            except Exception:
                self.processors.pop(partition, None)
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

    async def _tick(self, processor: PartitionProcessor) -> None:
        await self.apply(processor, processor.tick(self.snapshot, now_ms()))

    async def apply(self, processor: PartitionProcessor, result: BatchResult) -> None:
        """Database first, then Kafka (acknowledged), then the state table: the offset moves
        after all three."""
        fence = processor.fence
        if result.rows:
            sink = await self.sink()
            self.metrics.sink_backlog.set(sink.backlog_rows + result.rows)
            took = await sink.write(
                SinkBatch(
                    result.aggregate_rows,
                    result.kpi_rows,
                    result.alert_rows,
                    result.last_seen_rows,
                    fence,
                )
            )
            processor.fence_confirmed = time.monotonic()
            self.metrics.sink_backlog.set(sink.backlog_rows)
            self.metrics.sink_rows.observe(result.rows)
            self.metrics.sink_seconds.observe(took)
        elif fence is not None and time.monotonic() - processor.fence_confirmed > FENCE_FRESH_S:
            # A while since this worker last proved it owns the partition (stuck, say): prove it
            # again before its outputs and state go out.
            await (await self.sink()).confirm(fence)
            processor.fence_confirmed = time.monotonic()
        send = self.producer.send
        delivered = []
        for out in result.outgoing:
            partition = out.partition
            if partition is not None:
                partition %= self.partition_count(out.topic)
            delivered.append(await send(out.topic, out.key, out.value, partition, None, None))
        if delivered:
            # The state written next records this batch as done, and re-delivered records below
            # its offset are skipped: the outputs must be durable first. (They and the changelog
            # go out in separate produce requests; a crash could keep one and lose the other.)
            await asyncio.gather(*delivered)
        for key, value in result.state_writes:
            if value is None:
                self.table.pop(key, None)
            else:
                self.table[key] = value
        self._maybe_fail(result)
        self._count(processor, result)

    def _maybe_fail(self, result: BatchResult) -> None:
        """HUB_FAULT_EXIT_AFTER_BATCHES: exit like a killed process right after the Nth batch's
        state reached the local store, before Faust's producer sent it to the changelog."""
        limit = self.settings.fault_exit_after_batches
        if not limit or not result.counts["accepted"]:
            return
        self._accepting_batches += 1
        if self._accepting_batches >= limit:
            log.warning("fault injection: exiting after batch %d's state writes", limit)
            logging.shutdown()
            os._exit(FAULT_EXIT_CODE)

    def _count(self, processor: PartitionProcessor, result: BatchResult) -> None:
        m = self.metrics
        for (region, district), n in result.accepted_by_district.items():
            m.accepted.labels(region or "unknown", district or "unknown").inc(n)
        self._clock_ahead(processor)
        for name, n in result.counts.items():
            if name.startswith("rejected:"):
                m.rejected.labels(name.split(":", 1)[1]).inc(n)
            elif name == "duplicate":
                m.duplicates.inc(n)
            elif name == "redelivered":
                m.redelivered.inc(n)
            elif name == "windows_closed":
                m.windows_closed.inc(n)
            elif name.startswith("kpi:"):
                m.kpi_results.labels(name.split(":", 1)[1]).inc(n)
            elif name.startswith("alert:"):
                m.alerts.labels(name.split(":", 1)[1]).inc(n)
        now = time.time()
        for row in result.aggregate_rows:
            start = row.bucket.timestamp()
            m.window_close_lag.observe(now - start - 60)
            m.event_to_written.observe(now - start - 30)
        for kpi_row in result.kpi_rows:
            m.kpi_judged_lag.observe(now - kpi_row.window_end.timestamp())
        end = self.highwater(processor.partition)
        done = self.next_offset.get(processor.partition)
        if end is not None and done is not None:
            m.consumer_lag.labels(str(processor.partition)).set(max(0, end - done))
        watermark = processor.windows.watermark_ms
        if watermark:
            m.watermark_lag.labels(str(processor.partition)).set((now_ms() - watermark) / 1000)
            m.closed_through.labels(str(processor.partition)).set(
                processor.windows.closed_through_ms / 1000
            )

    def _clock_ahead(self, processor: PartitionProcessor) -> None:
        """Devices dated ahead of their arrival, as gauges; devices back in line removed."""
        ahead = processor.clock_ahead
        shown = self._clock_ahead_shown.setdefault(processor.partition, set())
        gauge = self.metrics.clock_ahead
        for device in shown - ahead.keys():
            with suppress(KeyError):
                gauge.remove(device)
        for device, ms in ahead.items():
            gauge.labels(device).set(ms / 1000)
        self._clock_ahead_shown[processor.partition] = set(ahead)
        self.metrics.devices_clock_ahead.set(
            sum(len(p.clock_ahead) for p in self.processors.values())
        )

    async def close(self) -> None:
        await self.refill.close()
        if self._pool is not None:
            await self._pool.close()
