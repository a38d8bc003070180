"""Every use the hub makes of Faust's private members, in one place, checked at start-up.

The hub relies on Faust (faust-streaming, pinned to one release) for the consumer group and its
rebalances, the changelog-backed state table with its RocksDB store, the producer, timers and
the web server for /metrics. Four things it changes, all here:

* **the telemetry topic reaches the hub a fetched batch at a time** (``BatchingConsumer``);
* **Faust's producer is idempotent with acks=all** outside transactions too, and its flush
  before an offset commit waits until every table write is acknowledged (``IdempotentProducer``);
* **a batch's table writes go to its partition's changelog** (``current_event``: Faust
  takes the changelog partition from the task's "current event");
* **the broker holds a fetch until it has ``Fetch.min_bytes``** or ``Fetch.max_wait_ms`` passed
  (``FetchingConsumerThread``): Faust fixes aiokafka's ``fetch_min_bytes`` at 1, so below full
  load a worker fetched every few records and paid a fetch, a hand-over and a batch for each.

``check()`` runs before a worker starts: every private member used here must exist with the
shape the code expects, or the worker refuses to start naming it (a Faust release that renamed
``_drain_messages`` would otherwise leave telemetry unread, with no error).

The batching consumer:

Faust hands every record to a stream on its own: per record, its fetch loop builds a message,
starts two tasks to wait for "delivered or flow suspended", the conductor decodes it into a
channel queue, and the stream takes it out again and acknowledges it. Profiled on a worker
catching up on a backlog, that path cost more than the hub's own work (docs/performance.md).

Here each fetch is split per partition and a partition's records go to its handler in one call,
as aiokafka returned them, the partitions of a fetch side by side. Faust's rules stay: records
are taken only while the flow is on and the generation unchanged, already read offsets are
skipped, the batch is in Faust's set of records in flight while it is handled (a rebalance waits
for it), and its offsets are acknowledged into Faust's commit bookkeeping once it returns.
Records of every other topic (ticks, changelogs) take Faust's path, a record at a time.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import aiokafka
import faust
import faust.topics
from aiokafka import ConsumerRecord
from faust.events import Event
from faust.streams import _current_event
from faust.transport import consumer as faust_consumer
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Producer
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from hub import partitioning
from hub.errors import HubError

log = logging.getLogger(__name__)

FAUST_RELEASE = "0.15.3"  # the release whose private members this module was written against
# How often a flush waiting for the broker says so.
FLUSH_REPORT_S = 30.0


class FaustIncompatible(HubError):
    """The installed Faust lacks a private member the hub relies on: it refuses to start."""


# Methods of Faust's aiokafka consumer (and the parameters this module passes them).
CONSUMER_METHODS: Mapping[str, tuple[str, ...]] = {
    "_drain_messages": ("fetcher",),  # overridden below: Faust's fetcher must call it
    "_wait_next_records": ("timeout",),
    "_add_gap": ("tp", "offset_from", "offset_to"),
    "_to_message": ("tp", "record"),
    "_new_offset": ("tp",),
    "perform_seek": (),
    "wait_first": (),
    "commit": (),
    "sleep": (),
}
# What a constructed consumer holds (checked on the instance, when the worker builds it).
CONSUMER_ATTRIBUTES = (
    "_read_offset",
    "_acked",
    "_acked_index",
    "_n_acked",
    "_committed_offset",
    "_unacked_messages",
    "_commit_every",
    "_buffered_partitions",
    "_waiting_for_ack",
    "_stopped",
    "diag",
    "suspend_flow",
    "consumer_stopped_errors",
    "flow_active",
)


def check() -> None:
    """Refuse to start on a Faust that does not have what this module uses, naming it."""
    problems: list[str] = []
    for name, params in CONSUMER_METHODS.items():
        method = getattr(Consumer, name, None)
        if not callable(method):
            problems.append(f"Consumer.{name} is gone")
            continue
        found = tuple(inspect.signature(method).parameters)[1:]
        if any(p not in found for p in params):
            problems.append(f"Consumer.{name}{found} no longer takes {params}")
    fetcher = inspect.getsource(faust_consumer.Fetcher)
    if "._drain_messages(" not in fetcher:
        problems.append("Fetcher no longer calls Consumer._drain_messages")
    for name in ("_settings_extra", "_ensure_producer"):
        if not callable(getattr(Producer, name, None)):
            problems.append(f"Producer.{name} is gone")
    if "self.app.producer.send_soon(" not in inspect.getsource(faust.topics.Topic.send_soon):
        problems.append("Topic.send_soon no longer hands table writes to Producer.send_soon")
    if not callable(getattr(AIOKafkaConsumerThread, "_create_worker_consumer", None)):
        problems.append("AIOKafkaConsumerThread._create_worker_consumer is gone")
    made = inspect.getsource(aiokafka.AIOKafkaConsumer.__init__)
    for name in FETCH_ATTRIBUTES:
        if f"self.{name} = " not in made:
            problems.append(f"aiokafka's consumer no longer keeps {name}")
    if not hasattr(_current_event, "set"):
        problems.append("faust.streams._current_event is not a context variable")
    if problems:
        raise FaustIncompatible(
            f"faust-streaming {faust.__version__} (this hub was written against "
            f"{FAUST_RELEASE}): {'; '.join(problems)}; pin faust-streaming=={FAUST_RELEASE}"
        )


# (the batch's last record as Faust's message, the batch) -> the offsets processed (the batch's,
# and any the handler read back that the stream skipped), or None when the partition is not
# this worker's any more. Faust's tables take the partition of their changelog writes from a
# message.
BatchHandler = Callable[[Message, Sequence[ConsumerRecord]], Awaitable[Sequence[int] | None]]


# What aiokafka's consumer reads its fetch sizes from when it starts (Faust passes none of them).
FETCH_ATTRIBUTES = ("_fetch_min_bytes", "_fetch_max_wait_ms")


@dataclass(frozen=True, slots=True)
class Fetch:
    """How long the broker may hold a worker's fetch: until ``min_bytes`` are there (of every
    partition it asks for together) or ``max_wait_ms`` passed, whichever comes first. The
    defaults are Faust's own."""

    min_bytes: int = 1
    max_wait_ms: int = 1500


class FetchingConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka consumer given the fetch sizes of the
    ``BatchingConsumer`` it serves."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        fetch: Fetch = self.consumer.fetch  # type: ignore[attr-defined]
        consumer._fetch_min_bytes = fetch.min_bytes
        consumer._fetch_max_wait_ms = fetch.max_wait_ms
        return consumer


class BatchingConsumer(Consumer):
    """Set ``handlers`` (topic -> handler) and ``fetch`` on a subclass: see
    :func:`batching_consumer`."""

    handlers: ClassVar[Mapping[str, BatchHandler]] = {}
    fetch: ClassVar[Fetch] = Fetch()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        missing = [name for name in CONSUMER_ATTRIBUTES if not hasattr(self, name)]
        if missing:
            raise FaustIncompatible(
                f"faust-streaming {faust.__version__}: its consumer no longer has "
                f"{', '.join(missing)} (written against {FAUST_RELEASE})"
            )

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return FetchingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's drain loop (``Consumer._drain_messages`` and ``getmany``), batching the
        topics handled."""
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await self.sleep(0)  # a fetch may not yield to the loop when records wait
                if not self.should_stop:
                    await self._drain_once()
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("broker stopped the consumer, shutting down")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _drain_once(self) -> None:
        records, active = await self._wait_next_records(1.0)
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # As Faust's getmany: the flow stopped for a rebalance while fetching; what was
            # fetched is dropped and the partitions go back to their committed offsets.
            try:
                await self.perform_seek()
            except Exception as error:
                log.warning("seek to the committed offsets failed: %r", error)
            return
        generation = self.app.consumer_generation_id
        batches: list[tuple[BatchHandler, TP, list[ConsumerRecord]]] = []
        for tp, fetched in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break  # a rebalance began: the rest belongs to the next generation
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            handler = self.handlers.get(tp.topic)
            if handler is None:
                await self._deliver_each(tp, fetched)
            else:
                fresh = await self._unread(tp, fetched)
                if fresh:
                    batches.append((handler, tp, fresh))
        if batches:
            await asyncio.gather(*(self._deliver(h, tp, batch) for h, tp, batch in batches))

    async def _unread(self, tp: TP, fetched: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """The records not read before, in order; gaps in the offsets noted for the commit.

        Faust's rules: the read offset is the last offset read, or after a seek the next one to
        read, so a record at it is kept.
        """
        last = self._read_offset[tp]
        if last is not None and fetched[0].offset < last:
            fetched = [record for record in fetched if record.offset >= last]
        if not fetched:
            return fetched
        first, newest = fetched[0].offset, fetched[-1].offset
        contiguous = (not last or first - last <= 1) and newest - first == len(fetched) - 1
        if not contiguous and self.app.topics.acks_enabled_for(tp.topic):
            for record in fetched:
                if last and record.offset - last > 1:
                    # The missing offsets only (Faust passes the record's own, inclusive).
                    await self._add_gap(tp, last + 1, record.offset - 1)
                last = record.offset
        self._read_offset[tp] = newest
        return fetched

    async def _deliver_each(self, tp: TP, fetched: list[ConsumerRecord]) -> None:
        """Faust's own path, a record at a time (ticks, changelogs)."""
        for record in await self._unread(tp, fetched):
            await self._maybe_commit()
            message = self._to_message(tp, record)
            await self.wait_first(self.callback(message), self.suspend_flow.wait())

    async def _deliver(self, handler: BatchHandler, tp: TP, records: list[ConsumerRecord]) -> None:
        """One partition's records to the handler; acknowledged once it returns.

        The batch's last record, as Faust's message, stands for the batch in Faust's set of
        records in flight: a rebalance waits until none is left before it commits and hands the
        partition over.
        """
        last = self._to_message(tp, records[-1])
        self._unacked_messages.add(last)
        try:
            processed = await handler(last, records)
            if processed is not None:
                self._acknowledge(tp, processed)
        finally:
            last.acked = True
            self._unacked_messages.discard(last)
        await self._maybe_commit()

    async def _maybe_commit(self) -> None:
        """Faust's ``broker_commit_every``: commit once that many records were acknowledged."""
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    def pending_acks(self) -> int:
        """Offsets acknowledged but not yet committable (waiting behind a hole): bounded in a
        healthy worker; growing without end, a stalled commit."""
        return sum(len(offsets) for offsets in self._acked.values())

    def _acknowledge(self, tp: TP, offsets: Sequence[int]) -> None:
        """``Consumer.ack`` for a batch of offsets: what the next commit may include."""
        with ack_lock:
            if not self.app.topics.acks_enabled_for(tp.topic):
                return
            committed = self._committed_offset[tp]
            index = self._acked_index[tp]
            new = [o for o in offsets if (committed is None or o >= committed) and o not in index]
            index.update(new)
            self._acked[tp].extend(new)
            self._n_acked += len(new)
            notify(self._waiting_for_ack)


def batching_consumer(
    handlers: Mapping[str, BatchHandler], fetch: Fetch = Fetch()
) -> type[BatchingConsumer]:
    """A consumer class for ``app.transport.Consumer``: each topic's batches to its handler,
    fetched with ``fetch``."""
    return type("HubConsumer", (BatchingConsumer,), {"handlers": dict(handlers), "fetch": fetch})


def install(
    app: faust.App, handlers: Mapping[str, BatchHandler], fetch: Fetch = Fetch()
) -> IdempotentProducer:
    """Faust's transport builds its consumer and producer from these class attributes, once:
    installed before anything asks the app for either. Returns the app's producer."""
    app.transport.Consumer = batching_consumer(handlers, fetch)  # type: ignore[misc]
    app.transport.Producer = IdempotentProducer  # type: ignore[misc]
    producer = app.producer
    if not isinstance(producer, IdempotentProducer):
        raise FaustIncompatible(
            f"the app's producer is a {type(producer).__name__}, made before install(): "
            "table writes could reach the changelog after their offsets were committed"
        )
    return producer


def delivered_everything(app: faust.App) -> bool:
    """Whether the app's producer delivered every table write it was given (a stopped worker's
    last flush may have failed, which Faust logs and swallows)."""
    producer = app.producer
    return not isinstance(producer, IdempotentProducer) or producer.delivered_everything


@contextmanager
def current_event(app: faust.App, message: Message) -> Iterator[Event]:
    """Make ``message`` the task's current event while the block runs: Faust's tables send their
    changelog writes to the partition of the current event's record (here, a batch's last
    record). Faust holds the event by weak reference only: the block keeps it alive."""
    event = Event(app, message.key, message.value, message.headers, message)
    token = _current_event.set(weakref.ref(event))
    try:
        yield event
    finally:
        _current_event.reset(token)


@functools.lru_cache(maxsize=65_536)  # a few thousand sites' keys, over and over
def _partition_of(key: bytes, partitions: int) -> int:
    return partitioning.partition_of(key, partitions)


class ChangelogNotDelivered(HubError):
    """A table write could not be delivered to its changelog: offsets must not be committed."""


class IdempotentProducer(Producer):
    """Faust's producer with acks=all and idempotence outside transactions too: a retry after a
    broker failover never writes an output (or a changelog entry) twice.

    And a ``flush`` that waits for every message queued before it: Faust commits offsets right
    after ``flush``, whose buffer gives up once no message left it for 0.1 s
    (``ProducerBuffer.flush_atmost``), and does not count the one being handed over. Table
    writes (the journal, the progress record) could then reach the changelog after the offsets
    were committed, and a crash in between leave the next owner a progress record behind the
    commit, or none (``streams.checkpoint``, steps 3-5).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unacknowledged: set[asyncio.Future[Any]] = set()
        # The first table write the broker refused: the state is incomplete from there on, and
        # no offset may be committed past it again (the worker must restart and restore).
        self.undelivered: str | None = None

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    def send_soon(self, fut: Any) -> None:
        """Faust's tables send their changelog writes here (to the buffer)."""
        self.unacknowledged.add(fut)
        fut.add_done_callback(self._done)
        super().send_soon(fut)

    def _done(self, fut: asyncio.Future[Any]) -> None:
        self.unacknowledged.discard(fut)
        if self.undelivered is None and (fut.cancelled() or fut.exception() is not None):
            self.undelivered = "cancelled" if fut.cancelled() else repr(fut.exception())

    async def send_many(
        self, topic: str, messages: Sequence[tuple[bytes, bytes, int | None]]
    ) -> list[asyncio.Future[Any]]:
        """Messages (key, value, partition or None: by key, as Kafka's default partitioner)
        appended in order to record batches of their partitions, each handed to aiokafka whole
        (``create_batch``, ``send_batch``): ~1.5 us of CPU a message against ~12 us through
        ``send``, which makes a future a message (``docs/performance.md``). A batch is numbered
        for idempotence when it is drained, as ``send``'s are. Futures: a batch each, done once
        the broker acknowledged it."""
        producer = self._ensure_producer()
        count = len(await producer.partitions_for(topic))
        open_batches: dict[int, Any] = {}
        delivered: list[asyncio.Future[Any]] = []
        for key, value, partition in messages:
            if partition is None:
                partition = _partition_of(key, count)
            batch = open_batches.get(partition)
            if batch is None:
                batch = open_batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: it goes
                delivered.append(await producer.send_batch(batch, topic, partition=partition))
                batch = open_batches[partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # a batch's first always fits
        for partition, batch in open_batches.items():
            batch.close()  # nothing else may join it (aiokafka's ``send`` would)
            delivered.append(await producer.send_batch(batch, topic, partition=partition))
        return delivered

    async def flush(self) -> None:
        await super().flush()
        await self.acknowledged(set(self.unacknowledged))

    @property
    def delivered_everything(self) -> bool:
        """Every table write sent reached the changelog: the local state holds nothing the
        changelog lacks (what a clean stop means, ``streams.localstate``)."""
        return self.undelivered is None and not self.unacknowledged

    async def acknowledged(self, waiting: set[asyncio.Future[Any]]) -> None:
        """Wait until the broker acknowledged every message of ``waiting``; raise if a table
        write failed (now or before) or cannot be sent any more: no commit may follow."""
        while True:
            if self.undelivered is not None:
                raise ChangelogNotDelivered(
                    f"a table write was not delivered to the changelog ({self.undelivered})"
                )
            if not waiting:
                return
            _, waiting = await asyncio.wait(waiting, timeout=FLUSH_REPORT_S)
            if waiting and self.buffer.should_stop:
                raise ChangelogNotDelivered(
                    f"{len(waiting)} table write(s) unsent: the producer is stopping"
                )
            if waiting:
                log.warning(
                    "%d table write(s) not yet acknowledged by the broker after %.0f s: the "
                    "offset commit waits for them",
                    len(waiting),
                    FLUSH_REPORT_S,
                )
