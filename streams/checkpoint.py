"""The delivery guarantee in one place: what a processed batch writes, and in which order.

Every count stays exact across a crash at any point because each step is durable before the next
begins, and each is safe to repeat (a crash re-delivers the batch, which is then written again):

1. **Rows to TimescaleDB** (``write_rows``), one transaction, fenced by this worker's epoch for
   the partition: a worker that lost the partition writes nothing (``Fenced``). Rows are merged
   by key, so writing them again leaves the same rows.
2. **Outputs to Kafka, acknowledged** (``send_outputs``: DLQ records, partner topics, KPI
   messages, incidents), through the idempotent producer. Before step 3, because a batch the
   state records as done is skipped when re-delivered: its outputs must already be durable.
3. **State to the table** (``write_state``: journal chunks, KPI states, the progress record with
   the next offset). Faust puts it in local RocksDB at once and in the changelog topic shortly
   after (its producer, in the background).

The handler returns; Faust then, at its commit interval (``streams.faust_compat``):

4. **Changelog flushed** (``IdempotentProducer.flush``): every table write acknowledged by the
   broker, or the commit is refused (``ChangelogNotDelivered``) and the worker restarts.
5. **Offsets committed**: the batch is not delivered again. A crash before this re-delivers
   it; steps 1-3 repeat, and the progress record skips what step 3 already recorded.

And when the worker stops (``streams.localstate``):

6. **Clean-stop marker**, only if every table write reached the changelog: otherwise the local
   state, which may hold writes the changelog lacks, is dropped at the next start and rebuilt
   from the changelog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from hub.metrics import WorkerMetrics
from streams.ownership import Owned
from streams.processor import BatchResult
from streams.sink import SinkBatch, TimescaleSink


class StateTable(Protocol):
    """The partitions' state (Faust's changelog-backed table)."""

    def items(self) -> Iterable[tuple[bytes, bytes | None]]: ...
    def __setitem__(self, key: bytes, value: bytes) -> None: ...
    def pop(self, key: Any, default: Any, /) -> Any: ...


class OutputProducer(Protocol):
    """Sends to a topic (``streams.faust_compat.IdempotentProducer``)."""

    async def send_many(
        self, topic: str, messages: Sequence[tuple[bytes, bytes, int | None]]
    ) -> Sequence[Awaitable[Any]]:
        """(key, value, partition or None to partition by key) appended in order, a partition's
        messages in its order; futures that complete once the broker acknowledged them all."""
        ...


class Sinks(Protocol):
    """Where rows go (``streams.database.WorkerDatabase``)."""

    async def sink(self) -> TimescaleSink: ...


class Checkpoint:
    """Writes a batch's results in the order above; raises if any step fails (the runtime then
    rebuilds the partition from its state table and runs the batch again)."""

    def __init__(
        self,
        database: Sinks,
        producer: OutputProducer,
        table: StateTable,
        partition_count: Callable[[str], int],
        metrics: WorkerMetrics,
    ) -> None:
        self.database = database
        self.producer = producer
        self.table = table
        self.partition_count = partition_count
        self.metrics = metrics

    async def commit(self, owned: Owned, result: BatchResult) -> None:
        await self.write_rows(owned, result)
        await self.send_outputs(result)
        self.write_state(result)

    async def write_rows(self, owned: Owned, result: BatchResult) -> None:
        """Step 1. With no rows, the fence is still proven when it has not been for a while:
        the outputs and state that follow must come from the partition's owner."""
        if not result.rows:
            if owned.needs_proof():
                await (await self.database.sink()).confirm(owned.fence)
                owned.proven()
            return
        sink = await self.database.sink()
        self.metrics.sink_backlog.set(sink.backlog_rows + result.rows)
        took = await sink.write(
            SinkBatch(
                result.aggregate_rows,
                result.kpi_rows,
                result.alert_rows,
                result.last_seen_rows,
                result.device_minute_rows,
                result.rejection_rows,
                owned.fence,
            )
        )
        owned.proven()
        self.metrics.sink_backlog.set(sink.backlog_rows)
        self.metrics.sink_rows.observe(result.rows)
        self.metrics.sink_seconds.observe(took)

    async def send_outputs(self, result: BatchResult) -> None:
        """Step 2: every output sent, then every acknowledgement awaited. (Outputs and the
        changelog go out in separate produce requests: a crash could keep one and lose the
        other, hence the order.) A topic's outputs go to the producer together: a closing
        batch's ~1,500 messages as a few record batches, not ~1,500 sends."""
        by_topic: dict[str, list[tuple[bytes, bytes, int | None]]] = {}
        for out in result.outgoing:
            partition = out.partition
            if partition is not None:
                partition %= self.partition_count(out.topic)
            by_topic.setdefault(out.topic, []).append((out.key, out.value, partition))
        delivered: list[Awaitable[Any]] = []
        for topic, messages in by_topic.items():
            delivered.extend(await self.producer.send_many(topic, messages))
        if delivered:
            await asyncio.gather(*delivered)

    def write_state(self, result: BatchResult) -> None:
        """Step 3: the state table (RocksDB now, the changelog through Faust's producer)."""
        for key, value in result.state_writes:
            if value is None:
                self.table.pop(key, None)
            else:
                self.table[key] = value
