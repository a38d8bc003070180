"""A flood of fresh metric names: each would open a window (tens of GB within minutes at this
rate, restored by the journal after a crash). Names a demonstration does not declare are refused,
so the worker's memory stays flat and the other sites' event time keeps pace with the clock (their
windows close on schedule: when event time passes a window's end plus the allowed lateness)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from hub import principals, topics
from tests.hostile.conftest import HostileHub, now_ms, sites_on
from tests.support import record, signed

RATE = 500  # records a second
SECONDS = 45
NAMES = 64  # fresh metric names per record
PARTITION = 6


async def test_a_flood_of_fresh_metric_names_leaves_memory_flat_and_windows_closing(
    hostile: HostileHub,
) -> None:
    settings = hostile.settings
    sites = sites_on(PARTITION, settings.partitions)
    flooders, others = sites[:2], sites[2:7]
    gauge = f'hub_watermark_lag_seconds{{partition="{PARTITION}"}}'
    settled = hostile.settled()
    accepted = hostile.counter("hub_records_accepted_total")
    undeclared = 'hub_records_rejected_total{reason="undeclared_metric"}'
    refused = hostile.counter(undeclared)
    producer = AIOKafkaProducer(**principals.client(settings), linger_ms=20, compression_type="lz4")
    await producer.start()
    memory: list[tuple[float, float]] = []
    began = time.time()
    sent = flood = 0
    try:
        for tick in range(SECONDS * 10):  # every 100 ms: 50 flood records, one on-time record
            due = began + tick / 10
            if due > time.time():
                await asyncio.sleep(due - time.time())
            for i in range(RATE // 10):
                n = tick * RATE // 10 + i
                site = flooders[n % len(flooders)]
                metrics = {f"x{n}_{k}": float(k) for k in range(NAMES)}
                value = record(site, now_ms(), metrics)
                await producer.send(
                    topics.TELEMETRY, value=value, key=site.encode(), headers=signed(value)
                )
                flood += 1
            site = others[tick % len(others)]
            value = record(site, now_ms(), {"test_online": 1})
            await producer.send(
                topics.TELEMETRY, value=value, key=site.encode(), headers=signed(value)
            )
            sent += 1
            if tick % 25 == 0:
                memory.append((time.time() - began, hostile.worker.resident_bytes()))
        await producer.flush()
    finally:
        await producer.stop()
    await hostile.settle(settled, flood + sent, timeout_s=300)
    memory.append((time.time() - began, hostile.worker.resident_bytes()))
    # Event time of the flooded partition as its last batch left it (the last on-time record).
    behind = hostile.worker.metrics().get(gauge)

    warm = [m for t, m in memory if t >= 20]
    assert all(warm), "the worker did not report its memory"
    growth = (warm[-1] - warm[0]) / 2**20
    print(
        f"flood: {flood:,} records of {NAMES} fresh names at {RATE}/s for {SECONDS} s; worker "
        f"resident memory {warm[0] / 2**20:.0f} -> {warm[-1] / 2**20:.0f} MiB "
        f"(peak {max(warm) / 2**20:.0f}); samples {[round(m / 2**20) for _, m in memory]}"
    )
    assert growth < 100, f"memory grew {growth:.0f} MiB under the flood"
    assert hostile.counter("hub_records_accepted_total") - accepted == sent
    assert hostile.counter(undeclared) - refused == flood
    # The on-time sites' event time kept pace with the wall clock through the flood: their
    # windows close on schedule.
    assert behind is not None, "the worker did not report the partition's event time"
    assert behind < 10, f"event time {behind} s behind the clock"
