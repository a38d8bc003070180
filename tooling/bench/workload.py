"""The records every pipeline of ``hub bench`` reads: pre-loaded once, read by each in turn.

Every registered site sends one record a second (its devices in turn, the simulator's profiles,
signed with the device's key) for ``minutes`` whole minutes of event time already past, so no
record is dated ahead of its arrival; then one record per partition dated a lateness past the
last minute closes every window. Each run takes minutes no earlier run used: a window another
run wrote would be replaced, not added to.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from hub import principals, signing, telemetry, topics
from hub.db import connect
from hub.errors import HubError
from hub.settings import Settings
from tooling.bench.load import BatchSender, Load
from tooling.localrun import ensure_hub_topics
from tooling.simulate import SimulationOptions, load_sites


@dataclass(frozen=True, slots=True)
class Workload:
    ranges: dict[TopicPartition, tuple[int, int]]  # [start, end) of the records, per partition
    first_minute_s: int
    end_minute_s: int  # the end of the last minute of records
    records: int
    sites: int
    rate_hz: float

    @property
    def by_partition(self) -> dict[int, tuple[int, int]]:
        return {tp.partition: r for tp, r in self.ranges.items()}


def plan_minutes(settings: Settings, minutes: int) -> int:
    """The first minute of a run: whole minutes already past when the records and their closing
    record (a lateness later) are written, and used by no earlier run in the same database (its
    windows would be replaced, not added to): the latest such span, going back in time."""
    book = settings.home / "bench" / f"minutes-used-{settings.database.dbname}"
    used = (
        [
            (int(a), int(b))
            for a, b in (line.split() for line in book.read_text().splitlines() if line.strip())
        ]
        if book.exists()
        else []
    )
    # The records' minutes, the closing record's a lateness after them, and its own.
    length = minutes * 60 + int(settings.allowed_lateness_s) + 120
    first = (int(time.time()) - length - 30) // 60 * 60
    while clash := [a for a, b in used if a < first + length and first < b]:
        first = (min(clash) - length) // 60 * 60
    book.parent.mkdir(parents=True, exist_ok=True)
    with book.open("a") as out:
        out.write(f"{first} {first + length}\n")
    return first


# How many booked spans holding rows already ``free_minutes`` passes over before it gives up.
MAX_WRITTEN_SPANS = 1000


async def free_minutes(settings: Settings, minutes: int) -> int:
    """``plan_minutes``, passing over spans where ``site_aggregates`` holds rows already: the
    book knows only earlier pre-loads, not what a latency phase, a demo or a simulator wrote at
    the time (a pre-load once landed on an earlier latency phase's minutes and counted 4,601,610
    of 1,111,500 records). Each span passed over stays booked."""
    conn = await connect(settings)
    try:
        for _ in range(MAX_WRITTEN_SPANS):
            first = plan_minutes(settings, minutes)
            written = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM site_aggregates WHERE bucket >= to_timestamp($1) "
                "AND bucket < to_timestamp($2))",
                float(first),
                float(first + minutes * 60),
            )
            if not written:
                return first
    finally:
        await conn.close()
    raise HubError(
        f"no {minutes} free minutes in the last {MAX_WRITTEN_SPANS} spans: site_aggregates holds "
        "rows in all of them (HUB_DATABASE_URL naming another database gives the bench a clean one)"
    )


async def preload(
    settings: Settings, minutes: int, rate_hz: float, say: Callable[[str], None]
) -> Workload:
    """Publish every registered site's records for ``minutes`` minutes of event time."""
    first = await free_minutes(settings, minutes)
    await ensure_hub_topics(settings)  # a fresh broker has none yet
    options = SimulationOptions(sites=0, rate_hz=rate_hz, duration_s=1)
    sites, keys = await load_sites(settings, options)
    load = Load(sites, keys, settings.partitions, run=f"bench-{first}", seed=first)
    producer = AIOKafkaProducer(
        **principals.client(settings),
        max_batch_size=128 * 1024,  # compressed, well under the topic's max.message.bytes
        compression_type="lz4",
        acks="all",
    )
    await producer.start()
    sender = BatchSender(producer, topics.TELEMETRY)
    # Half an interval in: device clocks jitter by up to 40 ms, never across a minute.
    stamps = [first + (i + 0.5) / rate_hz for i in range(int(minutes * 60 * rate_hz))]
    per_minute = max(1, int(60 * rate_hz))
    try:
        for i, stamp in enumerate(stamps):
            for record in load.tick(stamp):
                await sender.add(*record)
            if i % per_minute == 0:
                say(f"  pre-loading: {load.sent:,} records, minute {i // per_minute + 1}")
        sent = await sender.drain()
        if sent.failed:
            raise PreloadFailed(
                f"{len(sent.failed):,} batches of {load.sent:,} records refused: {sent.failed[0]!r}"
            )
        if sent.records != load.sent:
            raise PreloadFailed(f"{sent.records:,} of {load.sent:,} records acknowledged")
        end = first + minutes * 60
        devices = {site.site_id: site.devices[0].device_id for site in sites}
        closing = end + settings.allowed_lateness_s + 1
        await close_every_partition(producer, settings, closing, devices, keys)
    finally:
        await producer.stop()
    low, high = sent.low, sent.high
    return Workload(
        ranges={TopicPartition(topics.TELEMETRY, p): (low[p], high[p] + 1) for p in low},
        first_minute_s=first,
        end_minute_s=first + minutes * 60,
        records=load.sent,
        sites=len(sites),
        rate_hz=rate_hz,
    )


class PreloadFailed(HubError):
    """The broker refused some of the records: the pipelines would not read the same ones."""


async def close_every_partition(
    producer: AIOKafkaProducer,
    settings: Settings,
    ts: float,
    devices: dict[str, str],
    keys: dict[str, bytes],
) -> None:
    """A heartbeat per partition dated ``ts``: past every window's end plus lateness."""
    every = list(range(settings.partitions))
    partitioner = DefaultPartitioner()
    pushers: dict[int, str] = {}
    for site in sorted(devices):
        pushers.setdefault(int(partitioner(site.encode(), every, every)), site)
    for site in pushers.values():
        value = telemetry.encode(
            event_id=f"bench-close-{uuid.uuid4()}",
            device_id=devices[site],
            site_id=site,
            ts=datetime.fromtimestamp(ts, UTC),
            kind="heartbeat",
            metrics={"online": 1},
        )
        await producer.send(
            topics.TELEMETRY,
            value=value,
            key=site.encode(),
            headers=signing.headers(keys[devices[site]], value),
        )
    await producer.flush()
