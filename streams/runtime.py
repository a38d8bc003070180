"""The worker's I/O around the pure processor: registry refresh, state table, sink, producer.

One ``PartitionProcessor`` per assigned partition, created (and restored from the state table)
on first use and dropped when the partition is revoked. Batches and wall-clock ticks of a
partition are serialised by a per-partition lock; everything a batch produced is written before
the batch returns, i.e. before Faust may commit its offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import asyncpg

from hub.db import create_pool
from hub.metrics import WorkerMetrics
from hub.settings import Settings
from streams.processor import BatchResult, PartitionProcessor, ProcessorConfig, Record
from streams.refill import Refill
from streams.registry import EMPTY, Snapshot, current_digest, load_snapshot
from streams.sink import DATABASE_UNAVAILABLE, SinkBatch, TimescaleSink

log = logging.getLogger("hub.worker")


def now_ms() -> int:
    return int(time.time() * 1000)


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

    async def sink(self) -> TimescaleSink:
        async with self._pool_lock:
            if self._sink is None:
                self._pool = await create_pool(self.settings, min_size=1, max_size=4)
                self._sink = TimescaleSink(
                    self._pool,
                    on_error=lambda e: self.metrics.db_errors.labels(type(e).__name__).inc(),
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

    def revoke(self, partitions: Sequence[int]) -> None:
        """Forget revoked partitions: whoever gets them next restores from the table."""
        for partition in partitions:
            self.processors.pop(partition, None)
            metrics = self.metrics
            for gauge in (metrics.watermark_lag, metrics.closed_through, metrics.consumer_lag):
                with suppress(KeyError):
                    gauge.remove(str(partition))

    def processor(self, partition: int) -> PartitionProcessor:
        processor = self.processors.get(partition)
        if processor is None:
            processor = PartitionProcessor(partition, self.config)
            items = ((k, v) for k, v in self.table.items() if processor.owns(k) and v is not None)
            processor.restore(items, now_ms())
            log.info(
                "partition %d: restored %d open windows, %d KPI states, watermark %d",
                partition,
                len(processor.windows.open),
                len(processor.kpi_states),
                processor.windows.watermark_ms,
            )
            self.processors[partition] = processor
        return processor

    def lock(self, partition: int) -> asyncio.Lock:
        return self.locks.setdefault(partition, asyncio.Lock())

    async def handle_batch(self, messages: Sequence[Any]) -> None:
        """One batch of one partition's records (Faust messages), processed and written."""
        if not messages:
            return
        partition = messages[0].partition
        started = time.monotonic()
        records = [Record(m.topic, m.partition, m.offset, m.key, m.value) for m in messages]
        async with self.lock(partition):
            processor = self.processor(partition)
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
            if processor.next_offset:
                records = await self._without_gaps(processor.next_offset, records)
            self.next_offset[partition] = records[-1].offset + 1
            result = processor.process(records, self.snapshot, now_ms())
            self.metrics.batch_records.observe(len(records))
            self.metrics.received.inc(len(records))
            await self.apply(processor, result)
        self.metrics.batch_seconds.observe(time.monotonic() - started)

    async def _without_gaps(self, expected: int, records: list[Record]) -> list[Record]:
        """``records`` with any offsets the stream skipped (from ``expected`` on) read back in."""
        out: list[Record] = []
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
        # time must come from its records, or catching up would turn them into late ones.
        if self.lagging(partition):
            return
        async with self.lock(partition):
            processor = self.processor(partition)
            result = processor.tick(self.snapshot, now_ms())
            await self.apply(processor, result)

    async def apply(self, processor: PartitionProcessor, result: BatchResult) -> None:
        """Database first, then Kafka (acknowledged), then the state table: the offset moves
        after all three."""
        if result.rows:
            sink = await self.sink()
            self.metrics.sink_backlog.set(sink.backlog_rows + result.rows)
            took = await sink.write(
                SinkBatch(
                    result.aggregate_rows,
                    result.kpi_rows,
                    result.alert_rows,
                    result.last_seen_rows,
                )
            )
            self.metrics.sink_backlog.set(sink.backlog_rows)
            self.metrics.sink_rows.observe(result.rows)
            self.metrics.sink_seconds.observe(took)
        send = self.producer.send
        delivered = [
            await send(out.topic, out.key, out.value, None, None, None) for out in result.outgoing
        ]
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
        self._count(processor, result)

    def _count(self, processor: PartitionProcessor, result: BatchResult) -> None:
        m = self.metrics
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
            elif name.startswith("accepted:"):
                _, region, district = name.split(":", 2)
                m.accepted.labels(region or "unknown", district or "unknown").inc(n)
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

    async def close(self) -> None:
        await self.refill.close()
        if self._pool is not None:
            await self._pool.close()
