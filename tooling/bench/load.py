"""A load generator cheap enough to run beside the hub on the same two cores.

``hub simulate``'s fleet builds every record from scratch (a profile drawn, a ``datetime``, a
UUID, a typed encode) and sends it through aiokafka's per-record ``send``: some 35 us a record,
more than a core for 37,050 records/s. Here each device's readings are drawn from its profile
once, ahead, and kept as encoded JSON tails; a record is then a join of prepared bytes with its
event id and time, signed with the device's key, appended to an aiokafka batch of its site's
partition (Kafka's murmur2 partitioner, as the hub checks). What a record carries is what the
simulator would send: the same devices, keys, kinds and metric names, valid telemetry v1.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from hub import signing
from streams.snapshot import EMPTY
from tooling.simulate.fleet import SimSite

READINGS = 16  # readings prepared per device, sent in turn
_HEAD = b'{"schema":"telemetry/1","event_id":"'
# (partition, key, value, headers): one record to send.
Prepared = tuple[int, bytes, bytes, list[tuple[str, bytes]]]


@dataclass(slots=True)
class _Device:
    key: bytes  # the device's signing key
    middle: bytes  # from the end of the event id to the start of the time
    tails: list[bytes]  # from the end of the time to the end of the record: prepared readings
    turn: int = 0


@dataclass(slots=True)
class _Site:
    key: bytes
    partition: int
    devices: list[_Device]
    turn: int = 0


def ts_text(stamp: float) -> bytes:
    """RFC 3339 in UTC with milliseconds, as devices send it."""
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").encode()


class Load:
    """Every site's next record per tick, its devices in turn, from readings prepared ahead."""

    def __init__(
        self,
        sites: list[SimSite],
        keys: dict[str, bytes],
        partitions: int,
        *,
        run: str,
        seed: int = 1,
    ) -> None:
        rng = random.Random(seed)
        self.prefix = run.encode() + b"-"
        self.sent = 0
        self.sites = [
            _Site(
                site.site_id.encode(),
                EMPTY.partition_of(site.site_id, partitions),
                [
                    _Device(
                        keys[device.device_id],
                        _middle(device.device_id, site.site_id),
                        [_tail(*device.profile(rng, site.quality)) for _ in range(READINGS)],
                    )
                    for device in site.devices
                ],
            )
            for site in sites
        ]

    def tick(self, stamp: float, part: int = 0, parts: int = 1) -> Iterator[Prepared]:
        """One record per site dated ``stamp``: of every site, or of the ``part``-th of
        ``parts`` shares of them (sites whose devices send at another phase of the second)."""
        ts = ts_text(stamp)
        prefix, header, signature = self.prefix, signing.HEADER, signing.signature
        for site in self.sites[part::parts]:
            device = site.devices[site.turn % len(site.devices)]
            site.turn += 1
            tail = device.tails[device.turn % READINGS]
            device.turn += 1
            self.sent += 1
            value = b"".join((_HEAD, prefix, b"%d" % self.sent, device.middle, ts, tail))
            yield site.partition, site.key, value, [(header, signature(device.key, value))]


def _middle(device_id: str, site_id: str) -> bytes:
    encode = msgspec.json.encode
    return b'","device_id":' + encode(device_id) + b',"site_id":' + encode(site_id) + b',"ts":"'


def _tail(kind: str, metrics: dict[str, float]) -> bytes:
    encode = msgspec.json.encode
    return b'","kind":' + encode(kind) + b',"metrics":' + encode(metrics) + b"}"


@dataclass(slots=True)
class Sent:
    """What the broker acknowledged: [first, last] offset per partition, and the refusals."""

    low: dict[int, int] = field(default_factory=dict)
    high: dict[int, int] = field(default_factory=dict)
    failed: list[BaseException] = field(default_factory=list)
    records: int = 0


class BatchSender:
    """Records into one aiokafka batch per partition, each handed to the producer when full or
    on ``flush``; acknowledgements noted in ``sent`` as they come."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.open: dict[int, BatchBuilder] = {}
        self.sent = Sent()
        self.pending: set[asyncio.Future[object]] = set()

    async def add(
        self, partition: int, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        batch = self.open.get(partition)
        if batch is None:
            batch = self.open[partition] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            await self._send(partition)
            batch = self.open[partition] = self.producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit an empty batch")

    async def flush(self) -> None:
        """Hand every open batch to the producer (not waiting for the broker)."""
        for partition in list(self.open):
            await self._send(partition)

    async def drain(self) -> Sent:
        """Flush, then wait until the broker acknowledged (or refused) every batch."""
        await self.flush()
        if self.pending:
            await asyncio.wait(self.pending)
        return self.sent

    async def _send(self, partition: int) -> None:
        batch = self.open.pop(partition)
        count = batch.record_count()
        if not count:
            return
        future = await self.producer.send_batch(batch, self.topic, partition=partition)
        self.pending.add(future)
        future.add_done_callback(lambda f: self._done(f, partition, count))

    def _done(self, future: asyncio.Future[object], partition: int, count: int) -> None:
        self.pending.discard(future)
        sent = self.sent
        error = future.exception()
        if error is not None:
            sent.failed.append(error)
            return
        base = future.result().offset  # type: ignore[attr-defined]
        sent.low[partition] = min(sent.low.get(partition, base), base)
        sent.high[partition] = max(sent.high.get(partition, base), base + count - 1)
        sent.records += count
