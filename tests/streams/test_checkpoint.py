"""The checkpoint's order, with plain stand-ins: rows, then outputs acknowledged, then state. A
batch whose state is written is skipped when re-delivered, so nothing may reach the state before
what it depends on is durable."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from hub.metrics import worker_metrics
from streams.checkpoint import Checkpoint
from streams.ownership import Owned
from streams.processor import BatchResult, PartitionProcessor, ProcessorConfig
from streams.routing import Outgoing
from streams.rows import Fence, LastSeenRow
from streams.sink import Fenced, SinkBatch, TimescaleSink

pytestmark = pytest.mark.timeout(30)


class Sink:
    def __init__(self, events: list[str], fenced_at: int | None = None) -> None:
        self.events = events
        self.fenced_at = fenced_at
        self.backlog_rows = 0

    async def write(self, batch: SinkBatch) -> float:
        assert batch.fence is not None
        if self.fenced_at is not None:
            raise Fenced(batch.fence, self.fenced_at)
        self.events.append(f"rows:{len(batch)}")
        return 0.0

    async def confirm(self, fence: Fence) -> None:
        self.events.append("fence proven")


class Database:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    async def sink(self) -> TimescaleSink:
        return cast(TimescaleSink, self._sink)


class HeldProducer:
    """Acknowledges what it was sent only when ``answer`` is set."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.answer = asyncio.Event()

    async def send_many(self, topic: str, messages: Sequence[Any]) -> list[asyncio.Future[None]]:
        self.events.append(f"sent:{topic}")
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def acknowledge() -> None:
            await self.answer.wait()
            self.events.append(f"acknowledged:{topic}")
            acked.set_result(None)

        asyncio.get_running_loop().create_task(acknowledge())
        return [acked]


class Table(dict[bytes, bytes]):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.events.append(f"state:{key.decode()}")
        super().__setitem__(key, value)


def batch() -> BatchResult:
    result = BatchResult()
    result.last_seen_rows.append(LastSeenRow("GJ-BUK-0001", datetime(2026, 12, 6, tzinfo=UTC)))
    result.outgoing.append(Outgoing("testbed.telemetry.dlq.v1", b"k", b"{}", 3))
    result.state_writes.append((b"p", b"progress"))
    return result


def parts(
    fenced_at: int | None = None,
) -> tuple[list[str], Checkpoint, HeldProducer, Table, Owned]:
    events: list[str] = []
    producer = HeldProducer(events)
    table = Table(events)
    checkpoint = Checkpoint(
        Database(Sink(events, fenced_at)),
        producer,
        table,
        lambda topic: 12,
        worker_metrics(CollectorRegistry()),
    )
    owned = Owned(PartitionProcessor(3, ProcessorConfig()), Fence("hub", 3, 1))
    return events, checkpoint, producer, table, owned


async def test_the_state_waits_for_the_rows_and_the_acknowledged_outputs() -> None:
    # (Broken by writing the state before awaiting the acknowledgements: "state:p" would come
    # while the DLQ record is unacknowledged, and a crash then would lose the rejection.)
    events, checkpoint, producer, table, owned = parts()
    commit = asyncio.create_task(checkpoint.commit(owned, batch()))
    await asyncio.wait([commit], timeout=0.2)
    assert not commit.done()
    assert events == ["rows:1", "sent:testbed.telemetry.dlq.v1"]
    assert table == {}
    producer.answer.set()
    await asyncio.wait_for(commit, 5)
    assert events[2:] == ["acknowledged:testbed.telemetry.dlq.v1", "state:p"]


async def test_a_fenced_worker_sends_nothing_and_writes_no_state() -> None:
    events, checkpoint, producer, table, owned = parts(fenced_at=2)
    producer.answer.set()
    with pytest.raises(Fenced):
        await checkpoint.commit(owned, batch())
    assert events == []
    assert table == {}


async def test_a_batch_without_rows_proves_a_stale_fence_first() -> None:
    events, checkpoint, producer, _, owned = parts()
    producer.answer.set()
    quiet = BatchResult()
    quiet.state_writes.append((b"p", b"progress"))
    await checkpoint.commit(owned, quiet)
    assert events == ["state:p"]  # proven a moment ago (by the claim)
    owned.confirmed -= 60
    await checkpoint.commit(owned, quiet)
    assert events == ["state:p", "fence proven", "state:p"]
