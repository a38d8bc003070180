"""The batching consumer's rules against a fake fetcher, no broker: Faust's own consumer class,
built but never started, with its fetch replaced by records these tests choose.

Each test names the rule it holds the consumer to; breaking the rule in ``streams/faust_compat.py``
fails it (checked by hand for each, as noted in the test).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.structs import RecordMetadata
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP, Message
from faust.types.tuples import FutureMessage, PendingMessage

from hub.settings import Settings
from streams import faust_compat
from streams.app import create_app
from streams.localstate import MARKER, close_local_state, open_local_state

TOPIC = "telemetry"
A, B = TP(TOPIC, 0), TP(TOPIC, 1)


def records(tp: TP, *offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"k", b"v", None, 1, 1, []) for o in offsets
    ]


@dataclass
class Handler:
    """Records each batch handed over; answers with the offsets processed, plus ``extra``
    (offsets read back from a skipped range), or None (the partition is not ours)."""

    batches: list[tuple[int, list[int]]] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    processed: bool = True

    async def __call__(
        self, last: Message, batch: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> Sequence[int] | None:
        self.batches.append((batch[0].partition, [r.offset for r in batch]))
        assert last.offset == batch[-1].offset
        if not self.processed:
            return None
        return [*self.extra, *(r.offset for r in batch)]


@dataclass
class Rig:
    consumer: faust_compat.BatchingConsumer
    handler: Handler
    fetches: list[dict[TP, list[ConsumerRecord[bytes, bytes]]]]
    commits: int = 0

    async def drain(self, fetch: dict[TP, list[ConsumerRecord[bytes, bytes]]]) -> None:
        self.fetches.append(fetch)
        await self.consumer._drain_once()


@pytest.fixture
async def rig() -> Rig:
    app = faust.App("compat-test", broker="kafka://127.0.0.1:1", store="memory://")
    app.topics.add(app.topic(TOPIC))
    await app.topics._update_indices()  # type: ignore[attr-defined]  # what subscribing does
    handler = Handler()
    cls = faust_compat.batching_consumer({TOPIC: handler})

    async def callback(*_: Any) -> None:
        raise AssertionError("the handled topic never takes Faust's per-record path")

    async def partitions_changed(*_: Any) -> None:
        return None

    consumer = cls(app.transport, callback, partitions_changed, partitions_changed)
    rig = Rig(consumer, handler, [])

    async def fetch(_wait_s: float) -> tuple[dict[TP, Any], set[TP] | None]:
        return rig.fetches.pop(0), None

    async def commit(*_: Any, **__: Any) -> bool:
        rig.commits += 1
        return True

    consumer._wait_next_records = fetch  # type: ignore[method-assign,assignment]
    consumer.commit = commit  # type: ignore[method-assign]
    return rig


async def test_each_partition_of_a_fetch_goes_to_the_handler_in_one_call_in_order(
    rig: Rig,
) -> None:
    # (Broken by handing records over one at a time: the calls would be six, not two.)
    await rig.drain({A: records(A, 0, 1, 2), B: records(B, 5, 6, 7)})
    assert sorted(rig.handler.batches) == [(0, [0, 1, 2]), (1, [5, 6, 7])]


async def test_records_read_before_are_not_handed_over_again(rig: Rig) -> None:
    """Faust's rule: the read offset is the last offset read (after a seek, the next to read),
    and a record at it is kept; the processor skips such a repeat by its progress record."""
    # (Broken by dropping the read-offset rule: the second call would get 1-4.)
    await rig.drain({A: records(A, 0, 1, 2)})
    await rig.drain({A: records(A, 1, 2, 3, 4)})
    assert rig.handler.batches == [(0, [0, 1, 2]), (0, [2, 3, 4])]


def commit_point(consumer: faust_compat.BatchingConsumer, tp: TP) -> int | None:
    """Where a commit would move the partition to now, recorded as Faust's commit does."""
    offset = consumer._new_offset(tp)
    if offset is not None:
        consumer._committed_offset[tp] = offset
    return offset


async def test_a_processed_batch_is_acknowledged_and_becomes_committable(rig: Rig) -> None:
    # (Broken by acknowledging only the batch's last offset: no commit point at all.)
    consumer = rig.consumer
    consumer._committed_offset[A] = 0
    await rig.drain({A: records(A, 0, 1, 2)})
    assert consumer._n_acked == 3
    assert commit_point(consumer, A) == 3
    assert consumer.pending_acks() == 0


async def test_offsets_read_back_after_a_seek_race_are_acknowledged_too(rig: Rig) -> None:
    """A seek moved the read offset past 3-4 before they were delivered (the race described in
    docs/reliability.md); the handler read them back and processed them. Acknowledged with the
    batch, they let the commit pass; otherwise every later offset waits behind the hole, and
    piles up in Faust's bookkeeping (a commit stall)."""
    # (Broken by acknowledging only the fetched offsets: no commit point, pending acks grow.)
    consumer = rig.consumer
    consumer._committed_offset[A] = 0
    await rig.drain({A: records(A, 0, 1, 2)})
    assert commit_point(consumer, A) == 3
    consumer._read_offset[A] = 5  # the seek: 5 is the next to read
    rig.handler.extra = [3, 4]
    await rig.drain({A: records(A, 5, 6)})
    assert commit_point(consumer, A) == 7
    assert consumer.pending_acks() == 0


async def test_a_hole_left_in_the_offsets_is_booked_as_a_gap_for_the_commit(rig: Rig) -> None:
    """Offsets compacted away (or otherwise absent from a fetch) must not hold the commit."""
    # (Broken by skipping _add_gap: the commit point would stay at 2.)
    consumer = rig.consumer
    consumer._committed_offset[A] = 0
    await rig.drain({A: records(A, 0, 1)})
    assert commit_point(consumer, A) == 2
    await rig.drain({A: records(A, 5, 6)})
    assert commit_point(consumer, A) == 7


async def test_a_batch_that_is_not_ours_any_more_is_not_acknowledged(rig: Rig) -> None:
    # (Broken by acknowledging whatever the handler returns: the commit would move to 3.)
    consumer = rig.consumer
    consumer._committed_offset[A] = 0
    rig.handler.processed = False
    await rig.drain({A: records(A, 0, 1, 2)})
    assert consumer._n_acked == 0
    assert consumer._new_offset(A) is None
    assert not consumer._unacked_messages  # and not left in flight, holding a rebalance


async def test_nothing_is_handed_over_while_the_flow_is_stopped(rig: Rig) -> None:
    """A rebalance began while fetching: the fetch is dropped, the partitions go back to their
    committed offsets."""
    # (Broken by skipping the flow check: the batch would be handed over.)
    seeks: list[bool] = []

    async def seek() -> None:
        seeks.append(True)

    rig.consumer.perform_seek = seek  # type: ignore[method-assign]
    rig.consumer.flow_active = False
    await rig.drain({A: records(A, 0, 1)})
    assert (rig.handler.batches, seeks) == ([], [True])


async def test_commits_happen_every_broker_commit_every_acknowledgements(rig: Rig) -> None:
    # (Broken by never calling _maybe_commit: commits would stay 0.)
    rig.consumer._commit_every = 4
    await rig.drain({A: records(A, 0, 1, 2)})
    assert rig.commits == 0
    await rig.drain({A: records(A, 3, 4)})
    assert rig.commits == 1


class HeldChannel:
    """A changelog topic whose broker acknowledges (or refuses, with ``error``) each write only
    once ``answer`` is set: a busy loop, a broker slow to answer."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.answer = asyncio.Event()

    async def publish_message(self, fut: FutureMessage, wait: bool = False) -> None:
        await self.answer.wait()
        if self.error is None:
            fut.set_result(
                RecordMetadata("changelog", 7, TopicPartition("changelog", 7), 0, 0, None, 0)
            )
        else:
            fut.set_exception(self.error)


def table_write(channel: HeldChannel) -> FutureMessage:
    stand_in: Any = channel
    return FutureMessage(
        PendingMessage(stand_in, b"7|p", b"progress", 7, None, None, None, None, None)
    )


@pytest.fixture
async def producer() -> AsyncIterator[faust_compat.IdempotentProducer]:
    app = faust.App("compat-test", broker="kafka://127.0.0.1:1", store="memory://")
    made = faust_compat.IdempotentProducer(app.transport)
    await made.buffer.start()  # the buffer only: the channel stands in for Kafka
    try:
        yield made
    finally:
        await made.buffer.stop()


async def test_a_flush_before_an_offset_commit_waits_for_every_table_write(
    producer: faust_compat.IdempotentProducer,
) -> None:
    """Faust commits offsets right after a flush. Its own flush gives up once no write left the
    buffer for 0.1 s, so a commit could pass the journal and progress record still buffered
    (``streams.checkpoint``, steps 3-5)."""
    # (Broken by dropping the override's wait: flush returns with the writes unacknowledged.)
    broker = HeldChannel()
    first, second = table_write(broker), table_write(broker)
    producer.send_soon(first)
    producer.send_soon(second)
    await producer.buffer.flush()  # Faust's own
    assert not second.done()  # what the override is for; if Faust fixes it, drop the override
    flushing = asyncio.ensure_future(producer.flush())
    await asyncio.wait([flushing], timeout=0.5)
    assert not flushing.done()  # still waiting for the broker's answer
    broker.answer.set()
    await asyncio.wait_for(flushing, timeout=5)
    assert first.done()
    assert second.done()
    assert not producer.unacknowledged


async def test_a_table_write_the_broker_refused_stops_the_commit(
    producer: faust_compat.IdempotentProducer, tmp_path: Path
) -> None:
    """Refused before the flush began or while it waits: either way, no commit, now or later
    (the state lacks the write; the worker must restart from what is durable)."""
    # (Broken by forgetting a write once it completed: the flush would return, and commit.)
    refusing = HeldChannel(RuntimeError("NotEnoughReplicas"))
    refusing.answer.set()
    refused = table_write(refusing)
    producer.send_soon(refused)
    await asyncio.wait([refused], timeout=5)
    assert refused.done()
    answering = HeldChannel()
    answering.answer.set()
    producer.send_soon(table_write(answering))
    for _ in range(2):
        with pytest.raises(faust_compat.ChangelogNotDelivered, match="NotEnoughReplicas"):
            await producer.flush()
    # A worker stopping after this must not mark its local state clean (hub.worker).
    assert not producer.delivered_everything
    (tmp_path / "v1").mkdir()  # the worker's local tables
    marked = close_local_state(
        tmp_path, stopped_cleanly=True, delivered_everything=producer.delivered_everything
    )
    assert not marked
    assert not (tmp_path / MARKER).exists()
    assert open_local_state(tmp_path)  # the next start drops the local tables...
    assert not (tmp_path / "v1").exists()  # ...and restores from the changelog


def delivered(producer: faust_compat.IdempotentProducer) -> bool:
    return producer.delivered_everything


async def test_a_producer_that_delivered_every_write_allows_a_clean_stop(
    producer: faust_compat.IdempotentProducer, tmp_path: Path
) -> None:
    broker = HeldChannel()
    write = table_write(broker)
    producer.send_soon(write)
    assert not delivered(producer)  # one still in flight at the stop: not clean
    broker.answer.set()
    await asyncio.wait_for(producer.flush(), timeout=5)
    assert delivered(producer)
    (tmp_path / "v1").mkdir()
    close_local_state(tmp_path, stopped_cleanly=True, delivered_everything=delivered(producer))
    assert (tmp_path / MARKER).exists()
    assert not open_local_state(tmp_path)  # kept
    assert (tmp_path / "v1").exists()


def test_the_installed_faust_has_what_the_hub_relies_on() -> None:
    faust_compat.check()


def test_a_faust_without_a_member_the_hub_relies_on_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(FaustConsumer, "_wait_next_records", None)
    with pytest.raises(faust_compat.FaustIncompatible, match=r"Consumer\._wait_next_records"):
        faust_compat.check()


def test_table_writes_in_a_batch_go_to_the_batch_partitions_changelog() -> None:
    """Faust keeps the current event by weak reference: the block must keep it alive, or every
    table write of the batch fails ("outside of stream iteration"), as it did once."""
    app = faust.App("compat-test", broker="kafka://127.0.0.1:1", store="memory://")
    table = app.Table("state", partitions=12, key_type=bytes, value_type=bytes)
    message = Message(TOPIC, 7, 41, 0.0, 0, None, b"k", b"v", None)
    with faust_compat.current_event(app, message):
        gc.collect()
        assert table.partition_for_key(b"any key") == 7
    with pytest.raises(TypeError, match="outside of stream iteration"):
        table.partition_for_key(b"any key")


async def test_a_workers_consumer_waits_for_the_fetch_sizes_the_settings_give() -> None:
    """Faust builds aiokafka's consumer with ``fetch_min_bytes`` 1: every fetch answered at once,
    a few records each below full load. The worker's consumer takes the settings' sizes."""
    settings = Settings.from_env({"HUB_FETCH_MIN_BYTES": "12345", "HUB_FETCH_MAX_WAIT": "0.25"})
    assert fetch_sizes(settings) == (12345, 250)
    assert fetch_sizes(Settings.from_env({})) == (65536, 100)


def fetch_sizes(settings: Settings) -> tuple[int, int]:
    """What the aiokafka consumer of a worker app made with ``settings`` would fetch with."""
    app, _ = create_app(settings)
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    return consumer._fetch_min_bytes, consumer._fetch_max_wait_ms


def test_an_aiokafka_that_no_longer_keeps_its_fetch_sizes_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(faust_compat, "FETCH_ATTRIBUTES", ("_fetch_min_bytes", "_fetch_gone"))
    with pytest.raises(faust_compat.FaustIncompatible, match="no longer keeps _fetch_gone"):
        faust_compat.check()
