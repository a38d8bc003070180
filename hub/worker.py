"""``hub worker``: prepare the database and topics, load the registry, then run the Faust app."""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass

import faust
from prometheus_client import disable_created_metrics

from hub import principals
from hub.db import connect
from hub.db.migrate import migrate
from hub.errors import HubError
from hub.settings import Settings
from hub.topics import DLQ, TELEMETRY, hub_topics
from hub.topicsetup import ensure_topics, partition_counts
from streams import faust_compat
from streams.app import WorkerOptions, create_app
from streams.database import load_snapshot
from streams.localstate import close_local_state, open_local_state
from streams.snapshot import Snapshot

log = logging.getLogger(__name__)

# CPython collects its youngest generation every 700 net allocations of container objects. A
# worker makes several a record and holds a large heap (Faust, aiokafka, the registry): at that
# default about a tenth of its time goes to collections, a fifth of that with the start-up heap
# frozen and the youngest generation collected every 10,000 (docs/performance.md, "Choices
# measured"). The older generations keep CPython's thresholds.
GC_YOUNGEST_THRESHOLD = 10_000


class RegistryMissing(HubError):
    """The worker will not judge telemetry against an empty registry."""


@dataclass(frozen=True, slots=True)
class Prepared:
    snapshot: Snapshot
    partitions: dict[str, int]  # of the topics the worker writes to a chosen partition


async def prepare(settings: Settings) -> Prepared:
    """Migrations, topics, registry: everything a batch needs before the first one arrives."""
    conn = await connect(settings)
    try:
        for name in await migrate(conn):
            log.info("applied migration %s", name)
        snapshot = await load_snapshot(conn)
        regions = [r["code"] for r in await conn.fetch("SELECT code FROM regions")]
    finally:
        await conn.close()
    if not snapshot.digest:
        raise RegistryMissing("the database holds no registry: run `hub registry load` first")
    created = await ensure_topics(
        settings.kafka_bootstrap,
        settings.partitions,
        hub_topics(regions),
        replication_factor=settings.replication_factor,
        dlq_retention_days=settings.retention_dlq_days,
        **principals.security(settings),
    )
    for name in created:
        log.info("created topic %s", name)
    partitions = await partition_counts(
        settings.kafka_bootstrap, [TELEMETRY, DLQ], **principals.security(settings)
    )
    return Prepared(snapshot, partitions)


def tune_gc() -> None:
    """Leave everything made so far (the app, the registry) out of every later collection, and
    collect the youngest generation less often; reference counting still frees what dies."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, middle, oldest)


def run_worker(settings: Settings, options: WorkerOptions, loglevel: str = "info") -> None:
    disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series only double what Prometheus scrapes
    prepared = asyncio.run(prepare(settings))
    datadir = options.datadir(settings)
    open_local_state(datadir)
    app, runtime = create_app(settings, options, partitions=prepared.partitions)
    runtime.snapshot = prepared.snapshot
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    tune_gc()
    try:
        worker.execute_from_commandline()
    except SystemExit as stopped:
        close_local_state(
            datadir,
            stopped_cleanly=stopped.code in (0, None)
            and worker.crash_reason is None
            and app.crash_reason is None,
            delivered_everything=faust_compat.delivered_everything(app),
        )
        raise
