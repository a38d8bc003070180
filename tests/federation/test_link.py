"""Federation: South Jeolla's own cluster, its own hub, and MirrorMaker 2 to Gwangju's cluster.

The regional cluster and MirrorMaker come up for the module (`HUB_FEDERATION=1 hub stack up
kafka-jeonnam mirrormaker`) and go down after it, by their pidfiles. A regional hub (its workers
at the hub's default settings, HUB_REGIONS=jeonnam) processes records published to the regional
cluster into the super-regional database; its results cross to the central cluster. Behind the
`federation` marker: `make test-federation`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from hub import principals, topics
from hub.settings import Settings
from tests.conftest import DEFAULT_WORKER_ENV, WorkerProcess, registry_dir_with_test_demo, run_hub
from tests.reliability.workload import Workload, account, two_sites_per_partition
from tests.support import end_offsets, eventually, scratch_database
from tooling.localrun import drop_hub_topics, fresh_hub
from tooling.stack.federation import REGION, regional, regional_env

pytestmark = pytest.mark.federation

FEDERATION_ENV = {"HUB_FEDERATION": "1"}


@pytest.fixture(scope="module")
def federation(stack: Settings) -> Iterator[Settings]:
    """The regional cluster and the link, up for the module: the region's settings."""
    try:
        up = run_hub("stack", "up", "kafka-jeonnam", "mirrormaker", env=FEDERATION_ENV, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        status = run_hub("stack", "status", env=FEDERATION_ENV)
        print(status.stdout)
        states = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[1:]}
        assert states["kafka-jeonnam"] == states["mirrormaker"] == "running", status.stdout
        yield regional(stack)
    finally:
        down = run_hub(
            "stack", "down", "kafka-jeonnam", "mirrormaker", env=FEDERATION_ENV, timeout=300
        )
        assert down.returncode == 0, down.stderr


def region_sites(partitions: int) -> list[str]:
    """A South Jeolla site on every partition that has one (their test devices are registered)."""
    return [s for s in two_sites_per_partition(partitions) if s.startswith("JN-")]


async def results_since(
    settings: Settings, topic: str, start: dict[TopicPartition, int], sites: set[str]
) -> Counter[tuple[str, str, str]]:
    """(site, window start, metric) of every committed result of ``sites`` on ``topic`` since
    ``start``, with how often each was written (read_committed: what MirrorMaker wrote exactly
    once is what a consumer sees)."""
    consumer = AIOKafkaConsumer(
        **principals.client(settings),
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = list(start)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp])
        end = await consumer.end_offsets(tps)
        seen: Counter[tuple[str, str, str]] = Counter()

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        while await behind():
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for m in messages:
                    row = json.loads(m.value)
                    if row["site_id"] in sites:
                        seen[(row["site_id"], row["window_start"], row["metric"])] += 1
        return seen
    finally:
        await consumer.stop()


async def test_a_regions_records_are_counted_once_and_its_results_cross_the_link(
    federation: Settings, stack: Settings, tmp_path: Path
) -> None:
    region = federation
    sites = region_sites(region.partitions)
    assert sites
    app_id = f"federation-{uuid.uuid4().hex[:8]}"
    async with scratch_database(stack, registry_dir_with_test_demo(tmp_path / "r")) as database:
        env = {
            **DEFAULT_WORKER_ENV,
            **regional_env(stack, REGION),
            "HUB_APP_ID": app_id,
            "HUB_DATABASE_URL": database,
        }
        await fresh_hub(region, app_id)
        starts = {
            name: await end_offsets(cluster, topics.SITE_AGGREGATES)
            for name, cluster in (("region", region), ("centre", stack))
        }
        dlq_start = await end_offsets(region, topics.DLQ)
        worker = WorkerProcess(0, tmp_path, env).start()
        try:
            await asyncio.to_thread(worker.wait_ready)
            # Backdated 200 s: at the default lateness its windows close at once.
            load = Workload(region, "federation", sites, total=6_000, backdate_ms=200_000)
            await load.run()
            await load.close_windows(
                lateness_ms=int(DEFAULT_WORKER_ENV["HUB_ALLOWED_LATENESS"]) * 1000
            )
            got = await account(load, database, app_id, dlq_start, timeout_s=180)
            print(f"{load.tag}: sent {load.acknowledged}, {got.summary()}")
            written = await results_since(
                region, topics.SITE_AGGREGATES, starts["region"], set(sites)
            )
            assert written
            assert set(written.values()) == {1}, "a result written twice on the regional cluster"

            async def mirrored() -> Counter[tuple[str, str, str]] | None:
                seen = await results_since(
                    stack, topics.SITE_AGGREGATES, starts["centre"], set(sites)
                )
                return seen if set(seen) >= set(written) else None

            copied = await eventually(mirrored, "the region's results on the central cluster", 120)
            assert copied == written, "a result lost or copied twice across the link"
        finally:
            worker.stop()
            await drop_hub_topics(region, app_id)
