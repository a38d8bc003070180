"""The Faust app, assembled in one place from the pipeline's parts.

    telemetry topic --(a fetch at a time, per partition)--> WorkerRuntime.handle_batch
        -> PartitionProcessor (intake -> windows -> KPI -> routing)
        -> TimescaleDB sink, output topics, state table (changelog) -> offset commit
    ticks topic (one per partition, from a timer) --> WorkerRuntime.handle_tick (idle rule)

Nothing here holds logic: the consumer (`streams.faust_compat`) and the clock's agent move
records between Kafka and the runtime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from aiokafka import ConsumerRecord
from faust.types import TP, Message
from prometheus_client import CollectorRegistry, generate_latest

from hub import principals, topics
from hub.metrics import worker_metrics
from hub.settings import Settings
from streams import faust_compat
from streams.processor import ProcessorConfig
from streams.runtime import WorkerRuntime, now_ms

log = logging.getLogger(__name__)

# RocksDB per state partition. Faust's defaults (3 x 64 MiB memtables, a 2 GiB block cache, per
# partition) let a worker's memory grow for the better part of an hour at 1 Hz x 3,375 sites before
# the first flush (`hub bench --soak` shows it: docs/reliability.md, Soak). The state is written
# once and read back only on a restart: small memtables and cache cost nothing here and bound a
# worker's RocksDB to ~16 MiB per partition.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 2**20,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 2**20,
    "block_cache_compressed_size": 8 * 2**20,
}


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """What differs between worker processes on one machine."""

    index: int = 0

    def web_port(self, settings: Settings) -> int:
        return settings.worker_web_port + self.index

    def datadir(self, settings: Settings) -> Path:
        return settings.home / "worker" / settings.app_id / str(self.index)


def broker_credentials(settings: Settings) -> faust.SASLCredentials | None:
    """The worker's login on the hub's listener (``hub.principals``), if one is known."""
    login = principals.login(settings)
    if login is None:
        return None
    return faust.SASLCredentials(
        username=login.username, password=login.password, mechanism=principals.MECHANISM
    )


def create_app(
    settings: Settings,
    options: WorkerOptions | None = None,
    registry: CollectorRegistry | None = None,
    partitions: Mapping[str, int] | None = None,
) -> tuple[faust.App, WorkerRuntime]:
    """``partitions``: the partition counts of the existing topics (the telemetry topic's may
    differ from ``HUB_PARTITIONS`` when it was created elsewhere)."""
    faust_compat.check()
    options = options or WorkerOptions()
    registry = registry or CollectorRegistry()
    partitions = partitions or {}
    config = ProcessorConfig(
        lateness_ms=int(settings.allowed_lateness_s * 1000),
        dedup_horizon_ms=int(settings.dedup_horizon_s * 1000),
        idle_timeout_ms=int(settings.idle_timeout_s * 1000),
        hub=settings.app_id,
        partitions=partitions.get(topics.TELEMETRY, settings.partitions),
        clock_tolerance_ms=int(settings.clock_tolerance_s * 1000),
        regions=settings.processed_regions,
    )
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=broker_credentials(settings),
        store="rocksdb://",
        datadir=str(options.datadir(settings)),
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=settings.batch_max,
        broker_session_timeout=settings.session_timeout_s,
        broker_max_poll_interval=settings.max_poll_interval_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        broker_request_timeout=max(90.0, settings.session_timeout_s + 30),
        producer_linger=0.01,
        producer_max_batch_size=512 * 1024,
        # A DLQ record holds the base64 copy of a record up to the telemetry topic's limit.
        producer_max_request_size=topics.PRODUCER_MAX_REQUEST_BYTES,
        # zstd at level 3 (aiokafka's and the broker's default): aiokafka compresses lz4 at
        # level 9 (LZ4HC), which took 7 % of a worker catching up; any client since Kafka 2.1
        # reads zstd.
        producer_compression_type="zstd",
        web_enabled=True,
        web_bind=settings.bind_host,
        web_port=options.web_port(settings),
        web_in_thread=False,
        table_cleanup_interval=3600.0,
        loghandlers=[],
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    telemetry = app.topic(topics.TELEMETRY, **raw)
    ticks = app.topic(topics.TICKS, partitions=settings.partitions, retention=3600.0, **raw)
    for name in topics.contract_topics()[1:]:
        app.topic(name, partitions=settings.partitions, **raw)
    table = app.Table(
        "state",
        default=None,
        partitions=settings.partitions,
        key_type=bytes,  # bytes keys and values: Faust picks its raw serializer
        value_type=bytes,
        help="journal of accepted events, KPI states and progress, per partition",
        options=dict(ROCKSDB_OPTIONS),
    )

    def highwater(partition: int) -> int | None:
        try:
            value = app.consumer.highwater(TP(topics.TELEMETRY, partition))
        except Exception:  # not assigned or not fetched yet: nothing known
            return None
        return int(value) if value is not None else None

    async def intake(last: Message, records: Sequence[ConsumerRecord]) -> Sequence[int] | None:
        """One partition's fetched records; their table writes go to its changelog partition."""
        with faust_compat.current_event(app, last):
            return await runtime.handle_batch(records)

    # Before anything asks the app for its producer or consumer: Faust makes each once.
    fetch = faust_compat.Fetch(settings.fetch_min_bytes, round(settings.fetch_max_wait_s * 1000))
    producer = faust_compat.install(app, {topics.TELEMETRY: intake}, fetch)
    runtime = WorkerRuntime(
        settings,
        worker_metrics(registry),
        config,
        table=table,
        producer=producer,
        highwater=highwater,
        partitions=dict(partitions),
        rebalancing=lambda: not app.flow_control.is_active(),
    )

    app.topics.add(telemetry)  # subscribed without an agent: records go to `intake` in batches

    @app.agent(ticks, name="clock")
    async def clock(stream: Any) -> None:
        async for event in stream.events():
            await runtime.handle_tick(event.message.partition)

    @app.timer(interval=settings.tick_interval_s)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        """One tick per owned partition: idle partitions still close windows and judge KPIs."""
        value = str(now_ms()).encode()
        for tp in app.assignor.assigned_actives():
            if tp.topic == topics.TELEMETRY:
                await ticks.send(key=b"tick", value=value, partition=tp.partition)

    @app.timer(interval=settings.registry_refresh_s)  # type: ignore[untyped-decorator]
    async def refresh_registry() -> None:
        await runtime.refresh_registry()
        consumer = app.consumer
        if isinstance(consumer, faust_compat.BatchingConsumer):
            runtime.metrics.acks_pending.set(consumer.pending_acks())

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", set())
        partitions = [tp.partition for tp in revoked if tp.topic == topics.TELEMETRY]
        await runtime.write_held_back(partitions)
        runtime.revoke(partitions)

    @app.on_before_shutdown.connect
    async def on_shutdown(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await runtime.write_held_back(list(runtime.owned))
        with suppress(TimeoutError):  # a database away must not hold the stop
            await asyncio.wait_for(runtime.close(), 10)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned", set())
        owned = [tp.partition for tp in assigned if tp.topic == topics.TELEMETRY]
        runtime.assign(owned)
        runtime.metrics.partitions_assigned.set(len(owned))
        log.info("assigned telemetry partitions %s", sorted(owned))

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway.
        return web.bytes(generate_latest(registry), content_type="text/plain; version=0.0.4")

    del clock, tick, refresh_registry, on_revoked, on_shutdown, on_assigned, metrics
    return app, runtime
