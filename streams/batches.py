"""Faust's consumer with one change: the telemetry topic reaches the hub a fetched batch at a time.

Faust hands every record to a stream on its own: per record, its drain loop starts two tasks to
wait for "delivered or flow suspended", the conductor decodes it into a channel queue, and the
stream takes it out again and acknowledges it. Profiled on a worker catching up on a backlog,
that path cost more than the hub's own work (see docs/performance.md). Here the records of one
fetch are grouped per partition and handed to a handler in one call, the partitions of a fetch
side by side; every record is still tracked and acknowledged through Faust's own bookkeeping, so
offset commits and the wait for in-flight records at a rebalance work as they did. Records of
every other topic (ticks, changelogs) take Faust's path unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP, Message

log = logging.getLogger("hub.worker")

BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]


class BatchingConsumer(Consumer):
    """Set ``handlers`` (topic -> handler) on a subclass: see :func:`batching_consumer`."""

    handlers: ClassVar[Mapping[str, BatchHandler]] = {}

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's drain loop (``Consumer._drain_messages``), batching the topics handled."""
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await self.sleep(0)  # getmany may not yield to the loop when records wait
                if self.should_stop:
                    continue
                batches: dict[TP, list[Message]] = {}
                handled = self.handlers
                async for tp, message in self.getmany(timeout=1.0):
                    offset = message.offset
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        continue  # already read: Faust drops these too
                    if last is not None and offset - last > 1 and acks_enabled_for(tp.topic):
                        await self._add_gap(tp, last + 1, offset)  # e.g. compacted away
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if tp.topic in handled:
                        batches.setdefault(tp, []).append(message)
                    else:
                        await self.wait_first(self.callback(message), self.suspend_flow.wait())
                    read_offset[tp] = offset
                if batches:
                    await asyncio.gather(
                        *(self._deliver(handled[tp.topic], batch) for tp, batch in batches.items())
                    )
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

    async def _deliver(self, handler: BatchHandler, messages: list[Message]) -> None:
        """One partition's records to the handler; acknowledged once it returns.

        Tracked first, as Faust's conductor does: a rebalance waits until no tracked record is
        left unacknowledged before it commits and hands the partition over. The batch's last
        record stands for the batch (it is acknowledged last), which spares a weak reference a
        record.
        """
        self._unacked_messages.add(messages[-1])
        await handler(messages)
        ack = self.ack
        for message in messages:
            ack(message)


def batching_consumer(handlers: Mapping[str, BatchHandler]) -> type[BatchingConsumer]:
    """A consumer class for ``app.transport.Consumer``: each topic's batches to its handler."""
    return type("HubConsumer", (BatchingConsumer,), {"handlers": dict(handlers)})
