"""``hub bench``: the hub end to end against raw baselines, on this machine, in one run.

1. raw ceilings: an aiokafka consumer reading the pre-loaded telemetry with no processing, and a
   raw COPY of aggregate rows into TimescaleDB;
2. the hub end to end: N records of Gwangju's 3,375 sites pre-loaded into testbed.telemetry.v1,
   then workers started, until every window of those records is written (1, then 2 workers);
3. latency at a fixed offered load (3,375 sites at 1 Hz, then 10 Hz): how far behind window
   close each window's row became queryable, and event -> queryable for a window's median event.

Workers run with a short allowed lateness (``BENCH_WORKER_ENV``) so the figures show processing,
not the lateness policy; the report says so. Every record is accounted for: accepted in
``site_aggregates`` or rejected in the DLQ.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from hub import signing, telemetry, topics
from hub.db import connect
from hub.localrun import (
    Process,
    drop_hub_topics,
    ensure_hub_topics,
    fresh_hub,
    scrape,
    total,
    wait_for,
)
from hub.registry.files import read_registry
from hub.settings import Settings
from hub.simulate import SimulationOptions, load_sites, simulate
from hub.simulate.fleet import Fleet

LATENESS_S = 5
BENCH_SITES = 3375  # Gwangju's, whose records are pre-loaded
BENCH_WORKER_ENV = {
    "HUB_ALLOWED_LATENESS": str(LATENESS_S),
    "HUB_IDLE_TIMEOUT": "3",
    "HUB_TICK_INTERVAL": "1",
}


@dataclass(slots=True)
class BenchOptions:
    records: int = 1_000_000
    workers: tuple[int, ...] = (1, 2)
    latency_rates: tuple[float, ...] = (1.0, 10.0)
    latency_duration_s: float = 90.0
    event_rate_hz: float = 10.0  # event-time density of the pre-loaded records, per site
    copy_rows: int = 200_000


@dataclass(slots=True)
class Report:
    records: int
    sites: int
    raw_consume_per_s: float = 0.0
    copy_rows_per_s: float = 0.0
    e2e: dict[int, float] = field(default_factory=dict)  # workers -> records/s
    accounted: dict[int, bool] = field(default_factory=dict)
    latency: dict[float, dict[str, float]] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=lambda: dict(BENCH_WORKER_ENV))

    def line(self) -> dict[str, object]:
        best_workers = max(self.e2e, key=lambda w: self.e2e[w]) if self.e2e else 0
        events = self.e2e.get(best_workers, 0.0)
        first_rate = self.latency.get(min(self.latency)) if self.latency else None
        return {
            "events_per_s": round(events, 1),
            "raw_consume_per_s": round(self.raw_consume_per_s, 1),
            "ratio": round(events / self.raw_consume_per_s, 4) if self.raw_consume_per_s else 0,
            "copy_rows_per_s": round(self.copy_rows_per_s, 1),
            "p50_latency_s": first_rate["event_p50_s"] if first_rate else None,
            "p99_latency_s": first_rate["event_p99_s"] if first_rate else None,
            "workers": best_workers,
            "events_per_s_by_workers": {str(w): round(r, 1) for w, r in self.e2e.items()},
            "accounted": all(self.accounted.values()) if self.accounted else False,
            "records": self.records,
            "latency": {str(rate): v for rate, v in self.latency.items()},
            "worker_settings": self.settings,
        }


# -- pre-loading --------------------------------------------------------------------------------


async def preload(
    settings: Settings, count: int, base_s: float, rate_hz: float
) -> tuple[dict[TopicPartition, tuple[int, int]], float]:
    """Publish ``count`` records of Gwangju's sites, one per site per 1/rate_hz s of event time,
    then one pusher per partition past the last window plus lateness. Returns each partition's
    offset range of the records, and the newest event time."""
    options = SimulationOptions(sites=0, rate_hz=rate_hz, duration_s=1, region="gwangju")
    sites, keys = await load_sites(settings, options)
    fleet = Fleet(sites, outage_per_hour=0.0, seed=int(base_s))
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        linger_ms=50,
        max_batch_size=1024 * 1024,
        compression_type="lz4",
        acks="all",
    )
    await producer.start()
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    sent = 0
    stamp = base_s
    try:
        while sent < count:
            batch = fleet.tick(stamp, 1 / rate_hz)[: count - sent]
            for site_id, device_id, value in batch:
                future = await producer.send(
                    topics.TELEMETRY,
                    value=value,
                    key=site_id.encode(),
                    headers=signing.headers(keys[device_id], value),
                )
                future.add_done_callback(_track(first, last))
            sent += len(batch)
            stamp += 1 / rate_hz
        await producer.flush()
        await _push_every_partition(producer, settings, stamp + 60 + LATENESS_S + 1, keys)
    finally:
        await producer.stop()
    ranges = {TopicPartition(topics.TELEMETRY, p): (first[p], last[p] + 1) for p in first}
    return ranges, stamp


def _track(first: dict[int, int], last: dict[int, int]) -> Callable[[object], None]:
    def done(future: object) -> None:
        metadata = future.result()  # type: ignore[attr-defined]
        p, o = metadata.partition, metadata.offset
        first[p] = min(first.get(p, o), o)
        last[p] = max(last.get(p, o), o)

    return done


async def _push_every_partition(
    producer: AIOKafkaProducer, settings: Settings, ts: float, keys: dict[str, bytes]
) -> None:
    """A record per partition dated past the last window's end plus lateness: closes them all."""
    every = list(range(settings.partitions))
    partitioner = DefaultPartitioner()
    devices = {d.site_id: d.device_id for d in read_registry().devices}
    pushers: dict[int, str] = {}
    for site in sorted(devices):
        pushers.setdefault(int(partitioner(site.encode(), every, every)), site)
    for site in pushers.values():
        value = telemetry.encode(
            event_id=f"bench-push-{uuid.uuid4()}",
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


# -- the raw ceilings -----------------------------------------------------------------------------


async def raw_consume(settings: Settings, ranges: dict[TopicPartition, tuple[int, int]]) -> float:
    """Records/s of a plain aiokafka consumer over the same records, doing nothing with them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(list(ranges))
        for tp, (start, _) in ranges.items():
            consumer.seek(tp, start)
        want = sum(end - start for start, end in ranges.values())
        seen = 0
        started = time.perf_counter()
        while seen < want:
            for tp, messages in (
                await consumer.getmany(timeout_ms=2000, max_records=10_000)
            ).items():
                end = ranges[tp][1]
                seen += sum(1 for m in messages if m.offset < end)
        return want / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def raw_copy(settings: Settings, rows: int) -> float:
    """Rows/s of a raw COPY of aggregate rows into a hypertable shaped like site_aggregates."""
    conn = await connect(settings)
    table = f"bench_copy_{uuid.uuid4().hex[:8]}"
    try:
        await conn.execute(f"CREATE TABLE {table} (LIKE site_aggregates INCLUDING ALL)")
        await conn.execute(
            f"SELECT create_hypertable('{table}', by_range('bucket', INTERVAL '6 hours'))"
        )
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        records = [
            (
                now - timedelta(minutes=i // 3375),
                f"GJ-BENCH-{i % 3375:04d}",
                "DEMO-001",
                "online",
                60,
                60.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
            )
            for i in range(rows)
        ]
        columns = [
            "bucket",
            "site_id",
            "demonstration_id",
            "metric",
            *("count", "sum", "min", "max", "p50", "p95", "p99"),
        ]
        started = time.perf_counter()
        await conn.copy_records_to_table(table, records=records, columns=columns)
        return rows / (time.perf_counter() - started)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


# -- the hub end to end -------------------------------------------------------------------------


def start_workers(settings: Settings, count: int, name: str, app_id: str) -> list[Process]:
    logs = settings.home / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**BENCH_WORKER_ENV, "HUB_APP_ID": app_id}
    return [
        Process(f"worker {i}", ["worker", "--index", str(i)], logs / f"{name}-worker-{i}.log", env)
        for i in range(count)
    ]


def ports(settings: Settings, count: int) -> list[int]:
    return [settings.worker_web_port + i for i in range(count)]


def closed_through(settings: Settings, count: int) -> list[float]:
    return [
        v
        for port in ports(settings, count)
        for k, v in scrape(port).items()
        if k.startswith("hub_windows_closed_through_timestamp_seconds")
    ]


async def counted(settings: Settings, since_s: float, until_s: float) -> int:
    """Records counted in site_aggregates between two times (every profile reports `online`)."""
    conn = await connect(settings)
    try:
        total_count = await conn.fetchval(
            "SELECT coalesce(sum(count), 0) FROM site_aggregates WHERE metric = 'online' "
            "AND bucket >= to_timestamp($1) AND bucket < to_timestamp($2) "
            "AND site_id LIKE 'GJ-%'",
            float(since_s),
            float(until_s),
        )
    finally:
        await conn.close()
    return int(total_count)


def end_to_end(
    settings: Settings, options: BenchOptions, workers: int, say: Callable[[str], None]
) -> tuple[float, float, bool]:
    """Pre-load, start the workers, time from the first record read to the last window written.
    Returns (records/s end to end, raw consume records/s over the same records, accounted)."""
    # Minutes of their own: a window another run wrote would be replaced, not added to.
    used = settings.home / "bench" / "last-event-time"
    last = float(used.read_text()) if used.exists() else 0.0
    # Event time already past when pre-loaded, closing record included: no record may move the
    # watermark beyond its own arrival (the broker's time), so records dated ahead would keep
    # their windows open until the wall clock caught up. A second into a minute of its own:
    # device-clock jitter (40 ms) never crosses into a minute an earlier run wrote, whose windows
    # this run's would replace.
    span = options.records / BENCH_SITES / options.event_rate_hz + 60 + LATENESS_S + 10
    minute = (int(max(time.time() - span - 60, last)) // 60 + 1) * 60
    base = minute + 1.0
    if base + span > time.time():
        say(f"waiting {base + span - time.time():.0f} s for event time {base:.0f} to be past")
        time.sleep(base + span - time.time())
    say(f"pre-loading {options.records:,} records ...")
    asyncio.run(ensure_hub_topics(settings))
    ranges, newest = asyncio.run(preload(settings, options.records, base, options.event_rate_hz))
    used.parent.mkdir(parents=True, exist_ok=True)
    used.write_text(f"{newest + 1}\n")
    raw = asyncio.run(raw_consume(settings, ranges))
    say(f"raw aiokafka consume: {raw:,.0f} records/s; starting {workers} worker(s)")
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    asyncio.run(fresh_hub(settings, app_id, {tp: start for tp, (start, _) in ranges.items()}))
    processes = start_workers(settings, workers, f"e2e{workers}", app_id)
    target = (int(newest) // 60 + 1) * 60
    try:

        def reading() -> bool:
            samples = [scrape(p) for p in ports(settings, workers)]
            return total(samples, "hub_records_received_total") > 0

        wait_for(reading, "the first record to be read", 300, processes)
        started = time.perf_counter()

        def done() -> bool:
            through = closed_through(settings, workers)
            return len(through) == settings.partitions and min(through) >= target

        wait_for(done, "the last window to be written", 1800, processes)
        elapsed = time.perf_counter() - started
        samples = [scrape(p) for p in ports(settings, workers)]
        say(
            "workers: "
            + ", ".join(
                f"{name} {total(samples, f'hub_records_{name}_total'):,.0f}"
                for name in ("received", "accepted", "duplicate", "rejected")
            )
        )
    finally:
        for process in processes:
            process.stop()
        asyncio.run(drop_hub_topics(settings, app_id))
    found = asyncio.run(counted(settings, minute, target))
    ok = found == options.records
    rate = options.records / elapsed
    say(
        f"end to end with {workers} worker(s): {rate:,.0f} records/s "
        f"({options.records:,} in {elapsed:.1f} s); counted in site_aggregates: {found:,} "
        f"({'exact' if ok else 'MISMATCH'})"
    )
    return rate, raw, ok


# -- latency under a fixed offered load ------------------------------------------------------------


async def window_lags(
    settings: Settings, since_s: float, until_s: float
) -> list[tuple[float, int]]:
    conn = await connect(settings)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM closed_at - bucket - INTERVAL '1 minute') AS lag, count "
            "FROM site_aggregates WHERE metric = 'online' AND site_id LIKE 'GJ-%' "
            "AND bucket >= to_timestamp($1) AND bucket < to_timestamp($2)",
            float(since_s),
            float(until_s),
        )
    finally:
        await conn.close()
    return [(float(r["lag"]), int(r["count"])) for r in rows]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(
    settings: Settings, options: BenchOptions, rate: float, say: Callable[[str], None]
) -> dict[str, float]:
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    asyncio.run(fresh_hub(settings, app_id))
    processes = start_workers(settings, 2, f"latency{rate:g}", app_id)
    try:
        wait_for(
            lambda: (
                sum(scrape(p).get("hub_partitions_assigned", 0) for p in ports(settings, 2))
                == settings.partitions
            ),
            "the workers to share the partitions",
            300,
            processes,
        )
        started = time.time()
        sim = SimulationOptions(
            sites=0,
            rate_hz=rate,
            duration_s=options.latency_duration_s,
            region="gwangju",
            seed=int(started),
        )
        tally = asyncio.run(simulate(settings, sim))
        ended = time.time()
        offered = tally.sent / (ended - started)
        target = (int(ended) // 60 + 1) * 60

        def done() -> bool:
            through = closed_through(settings, 2)
            return len(through) == settings.partitions and min(through) >= target

        wait_for(done, "the offered load's last windows", 600, processes)
    finally:
        for process in processes:
            process.stop()
        asyncio.run(drop_hub_topics(settings, app_id))
    # Whole minutes inside the run only: the first and last are partly filled.
    first_full = (int(started) // 60 + 1) * 60
    lags = asyncio.run(window_lags(settings, first_full, int(ended) // 60 * 60))
    if not lags:
        lags = asyncio.run(window_lags(settings, int(started) // 60 * 60, target))
    behind = [lag for lag, _ in lags]
    # A window's median event is 30 s older than its end.
    events = [lag + 30.0 for lag in behind]
    result = {
        "sites": 3375,
        "rate_hz": rate,
        "offered_per_s": round(offered, 1),
        "windows": len(lags),
        "behind_close_p50_s": round(quantile(behind, 0.5), 2),
        "behind_close_p99_s": round(quantile(behind, 0.99), 2),
        "event_p50_s": round(quantile(events, 0.5), 2),
        "event_p99_s": round(quantile(events, 0.99), 2),
        "mean_behind_close_s": round(statistics.fmean(behind), 2),
    }
    say(
        f"latency at {rate:g} Hz x 3,375 sites (offered {offered:,.0f}/s): written "
        f"{result['behind_close_p50_s']} s (p50) / {result['behind_close_p99_s']} s (p99) "
        f"after window close; median event -> queryable {result['event_p50_s']} s / "
        f"{result['event_p99_s']} s"
    )
    return result


def run_bench(settings: Settings, options: BenchOptions, say: Callable[[str], None]) -> Report:
    report = Report(records=options.records, sites=3375)
    report.copy_rows_per_s = asyncio.run(raw_copy(settings, options.copy_rows))
    say(f"raw COPY into a hypertable: {report.copy_rows_per_s:,.0f} rows/s")
    raws = []
    for workers in options.workers:
        rate, raw, ok = end_to_end(settings, options, workers, say)
        report.e2e[workers] = rate
        report.accounted[workers] = ok
        raws.append(raw)
    report.raw_consume_per_s = max(raws) if raws else 0.0
    for rate in options.latency_rates:
        report.latency[rate] = latency(settings, options, rate, say)
    return report


def table(report: Report) -> str:
    line = report.line()
    rows = [
        ("raw aiokafka consume", f"{report.raw_consume_per_s:,.0f} records/s"),
        ("raw COPY into TimescaleDB", f"{report.copy_rows_per_s:,.0f} rows/s"),
        *((f"hub end to end, {w} worker(s)", f"{r:,.0f} records/s") for w, r in report.e2e.items()),
        ("ratio to raw consume", f"{line['ratio']}"),
        ("every record accounted", str(line["accounted"])),
        *(
            (
                f"latency {r:g} Hz x 3,375 sites",
                f"behind close p50 {v['behind_close_p50_s']} s, p99 {v['behind_close_p99_s']} s; "
                f"event -> row p50 {v['event_p50_s']} s, p99 {v['event_p99_s']} s "
                f"(offered {v['offered_per_s']:,.0f}/s)",
            )
            for r, v in report.latency.items()
        ),
        ("worker settings", " ".join(f"{k}={v}" for k, v in report.settings.items())),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:{width}}  {value}" for name, value in rows)


def as_json(report: Report) -> str:
    return json.dumps(report.line())
