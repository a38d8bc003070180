"""Latency of ``hub bench``: every registered site at 10 Hz against the hub's workers at their
default settings, for whole minutes of windows.

For each window minute ``b`` of the run a watcher thread polls TimescaleDB for its rows from just
before ``b + 60 s + lateness`` until they stop arriving, and notes when each row became visible
(rows of a partition commit together). Then per row:

* ``close_lag``: visible - (window end + allowed lateness), what the hub adds to the lateness
  policy;
* ``queryable``: visible - the broker timestamp of the window's last record (the producer's
  create time: the start of the send of the last tick dated inside the window, which is never
  later than that record's).

The poll interval bounds the error, always towards more lag.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from hub import principals, topics
from hub.db import connect
from hub.errors import HubError
from hub.settings import Settings
from tooling.bench.load import BatchSender, Load
from tooling.simulate import SimulationOptions, load_sites

POLL_S = 0.05
# The load is the measurement's clock: a generator this far behind its schedule has turned the
# run into a catch-up, whose lags would be the generator's, not the hub's.
MAX_BEHIND_S = 5.0


class LoadFellBehind(HubError):
    """This machine cannot offer the asked rate while the hub runs: no latency is measured."""


SETTLED_S = 5.0  # a window's rows are all in once none arrived for this long


@dataclass(slots=True)
class Visible:
    """When each window's rows became visible: (monotonic-free wall time, rows) per minute."""

    seen: dict[int, list[tuple[float, int]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LatencyResult:
    sites: int
    rate_hz: float
    offered_per_s: float
    windows: int
    rows: int
    close_lag_p50_s: float
    close_lag_p99_s: float
    close_lag_max_s: float
    queryable_p50_s: float
    queryable_p99_s: float
    lateness_s: float
    behind_schedule_max_s: float


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def offer(
    settings: Settings, rate_hz: float, until_s: float, sends: dict[int, float]
) -> tuple[int, float, float, int]:
    """Every registered site at ``rate_hz`` in real time until ``until_s``, noting for each minute
    when its last tick started sending. Returns (sent, seconds, most behind schedule, sites)."""
    sites, keys = await load_sites(
        settings, SimulationOptions(sites=0, rate_hz=rate_hz, duration_s=1)
    )
    load = Load(sites, keys, settings.partitions, run=f"latency-{int(until_s)}", seed=int(until_s))
    producer = AIOKafkaProducer(**principals.client(settings), acks="all", compression_type="lz4")
    await producer.start()
    sender = BatchSender(producer, topics.TELEMETRY)
    interval = 1 / rate_hz
    started = time.time()
    # Half an interval off the grid: no record is dated on a minute's edge.
    stamp = (int(started / interval) + 1.5) * interval
    behind = 0.0
    try:
        while stamp < until_s:
            wait = stamp - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            begun = time.time()
            behind = max(behind, begun - stamp)
            if behind > MAX_BEHIND_S:
                raise LoadFellBehind(
                    f"the load generator fell {behind:.1f} s behind its schedule after "
                    f"{load.sent:,} records ({load.sent / max(begun - started, 1e-9):,.0f}/s of "
                    f"the {rate_hz * len(sites):,.0f}/s asked): this machine cannot offer "
                    f"{rate_hz:g} Hz x {len(sites):,} sites while the hub runs; latency not "
                    "measured (try --latency-rate 1)"
                )
            minute = int(stamp) // 60 * 60
            sends[minute] = begun
            for record in load.tick(stamp):
                await sender.add(*record)
            await sender.flush()
            stamp += interval
        result = await sender.drain()
        if result.failed:
            raise LoadFellBehind(
                f"the broker refused {len(result.failed):,} batches: {result.failed[0]!r}"
            )
    finally:
        await producer.stop()
    sent = load.sent
    return sent, time.time() - started, behind, len(sites)


def watch(
    settings: Settings,
    minutes: list[int],
    lateness_s: float,
    visible: Visible,
    stop: threading.Event,
) -> None:
    """Poll each minute's rows from 2 s before it is due until they settle (in a thread of its
    own, so the load's event loop never delays a poll); ``stop`` ends it early."""

    async def poll() -> None:
        conn = await connect(settings)
        try:
            for minute in minutes:
                due = minute + 60 + lateness_s
                if await asyncio.to_thread(stop.wait, max(0.0, due - 2 - time.time())):
                    return
                seen: list[tuple[float, int]] = []
                rows = 0
                last_change = time.time()
                while time.time() - last_change < SETTLED_S or not rows:
                    n = await conn.fetchval(
                        "SELECT count(*) FROM site_aggregates WHERE bucket = to_timestamp($1) "
                        "AND metric = 'online'",
                        float(minute),
                    )
                    now = time.time()
                    if n > rows:
                        seen.append((now, n - rows))
                        rows = n
                        last_change = now
                    if now - due > 120 or stop.is_set():
                        break
                    await asyncio.sleep(POLL_S)
                visible.seen[minute] = seen
        finally:
            await conn.close()

    asyncio.run(poll())


def measure(
    settings: Settings, minutes: int, rate_hz: float, say: Callable[[str], None]
) -> LatencyResult:
    """Offer the load with the hub's workers already running; measure ``minutes`` whole windows."""
    lateness = settings.allowed_lateness_s
    first = (int(time.time()) // 60 + 1) * 60
    measured = [first + 60 * i for i in range(minutes)]
    until = measured[-1] + 60 + lateness + SETTLED_S + 2
    visible = Visible()
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch, args=(settings, measured, lateness, visible, stop), daemon=True
    )
    watcher.start()
    sends: dict[int, float] = {}
    say(
        f"latency: {rate_hz:g} Hz per site until {time.strftime('%H:%M:%S', time.localtime(until))}"
        f" ({until - time.time():.0f} s), windows {len(measured)} from "
        f"{time.strftime('%H:%M', time.localtime(first))}"
    )
    try:
        sent, seconds, behind, sites = asyncio.run(offer(settings, rate_hz, until, sends))
    except LoadFellBehind:
        stop.set()
        raise
    finally:
        watcher.join(timeout=180)
    lags: list[float] = []
    queryable: list[float] = []
    for minute in measured:
        for at, n in visible.seen.get(minute, []):
            lags.extend([at - (minute + 60 + lateness)] * n)
            queryable.extend([at - sends[minute]] * n)
    return LatencyResult(
        sites=sites,
        rate_hz=rate_hz,
        offered_per_s=round(sent / seconds, 1),
        windows=sum(1 for m in measured if visible.seen.get(m)),
        rows=len(lags),
        close_lag_p50_s=round(quantile(lags, 0.5), 3),
        close_lag_p99_s=round(quantile(lags, 0.99), 3),
        close_lag_max_s=round(max(lags, default=float("nan")), 3),
        queryable_p50_s=round(quantile(queryable, 0.5), 3),
        queryable_p99_s=round(quantile(queryable, 0.99), 3),
        lateness_s=lateness,
        behind_schedule_max_s=round(behind, 3),
    )
