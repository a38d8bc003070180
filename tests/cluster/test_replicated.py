"""The hub on a replicated Kafka cluster: three KRaft brokers (each a controller too), topics with
three copies and min.insync.replicas 2. Under load a broker is killed (SIGKILL) and brought back,
then the active controller; every record is accounted for exactly.

Its own cluster, in a HUB_HOME of its own on ports 19092 and up (the stack's single broker keeps
running). Behind the `cluster` marker: `make test-cluster` runs it (about 3 minutes); its last
result is in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from hub import principals, topics
from hub.settings import Settings
from tests.conftest import (
    DEFAULT_WORKER_ENV,
    WorkerProcess,
    registry_dir_with_test_demo,
    run_hub,
    run_hub_async,
)
from tests.reliability.workload import Workload, account, two_sites_per_partition
from tests.support import end_offsets, eventually, scratch_database
from tooling.localrun import drop_hub_topics, fresh_hub
from tooling.stack.kafka import Kafka

pytestmark = pytest.mark.cluster

CLUSTER_ENV = {
    "HUB_KAFKA_BROKERS": "3",
    "HUB_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
    "HUB_KAFKA_SASL_BOOTSTRAP": "127.0.0.1:19093",
    "HUB_KAFKA_CONTROLLER_PORT": "19094",
    "HUB_WORKER_WEB_PORT": "16366",
    "HUB_SESSION_TIMEOUT": "8",
}


@pytest.fixture(scope="module")
def cluster(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Three brokers, up for the module and stopped (by pidfile) afterwards."""
    env = {**CLUSTER_ENV, "HUB_HOME": str(tmp_path_factory.mktemp("cluster"))}
    try:
        up = run_hub("stack", "up", "kafka", env=env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        status = run_hub("stack", "status", "kafka", env=env)
        print(status.stdout)
        assert [line.split()[:2] for line in status.stdout.splitlines()[1:]] == [
            ["kafka-1", "running"],
            ["kafka-2", "running"],
            ["kafka-3", "running"],
        ]
        yield Settings.from_env({**os.environ, **env, "HUB_DATABASE_URL": stack.database_url})
    finally:
        down = run_hub("stack", "down", "kafka", env=env, timeout=300)
        assert down.returncode == 0, down.stderr


@pytest.fixture
async def database(cluster: Settings, tmp_path: Path) -> AsyncIterator[str]:
    async with scratch_database(cluster, registry_dir_with_test_demo(tmp_path / "r")) as url:
        yield url


async def replication(settings: Settings, topic: str) -> set[int]:
    admin = AIOKafkaAdminClient(**principals.client(settings))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {len(p["replicas"]) for p in described[0]["partitions"]}


async def all_in_sync(settings: Settings, topic: str) -> bool | None:
    admin = AIOKafkaAdminClient(**principals.client(settings))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return True if all(len(p["isr"]) == 3 for p in described[0]["partitions"]) else None


async def made_more(load: Workload, records: int) -> None:
    """Until the stream has made ``records`` more records than now."""
    target = load.made + records

    async def made() -> bool | None:
        return True if load.made >= target else None

    await eventually(made, f"{records:,} more records made", 120)


async def acknowledged_more(load: Workload, records: int) -> None:
    """Until the brokers have acknowledged ``records`` more records than now."""
    target = load.acknowledged + records

    async def acknowledged() -> bool | None:
        return True if load.acknowledged >= target else None

    await eventually(acknowledged, f"{records:,} more records acknowledged", 120)


async def test_a_broker_then_the_active_controller_killed_under_load_lose_nothing(
    cluster: Settings, database: str, tmp_path: Path
) -> None:
    settings = cluster
    kafka = Kafka(settings)
    app_id = f"cluster-{uuid.uuid4().hex[:8]}"
    env = {
        **DEFAULT_WORKER_ENV,  # a failover delays some sends by seconds: a 5 s lateness in the
        **CLUSTER_ENV,  # tests' fast settings turned 22 of them late in one run of five
        "HUB_HOME": str(settings.home),
        "HUB_APP_ID": app_id,
        "HUB_DATABASE_URL": database,
    }
    await fresh_hub(settings, app_id)
    assert await replication(settings, topics.TELEMETRY) == {3}
    dlq_start = await end_offsets(settings, topics.DLQ)
    workers = [WorkerProcess(i, tmp_path, env).start() for i in (0, 1)]
    try:
        await asyncio.gather(*(asyncio.to_thread(w.wait_ready) for w in workers))
        # Backdated 200 s, so that its windows can be closed at once at the default lateness.
        load = Workload(
            settings,
            "cluster",
            two_sites_per_partition(settings.partitions),
            total=60_000,
            backdate_ms=200_000,
        )
        stream = asyncio.create_task(load.run())
        for victim in ("a broker", "the active controller"):
            await made_more(load, 5_000)  # under load: the stream runs for 60 s
            assert not stream.done(), "the stream ended before the fault"
            leader = await asyncio.to_thread(kafka.active_controller)
            node = next(
                n for n in kafka.nodes if (n.node == leader) == (victim == "the active controller")
            )
            pid = node.pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            print(f"killed {victim}: node {node.node} (pid {pid}), controller was {leader}")
            # The two others carry on: writes are acknowledged (acks=all, 2 in sync) meanwhile.
            await acknowledged_more(load, 3_000)
            up = await run_hub_async("stack", "up", "kafka", env=env, timeout_s=180)
            assert up.returncode == 0, up.stdout + up.stderr
            await eventually(
                lambda: all_in_sync(settings, topics.TELEMETRY), "every replica back in sync", 120
            )
        await asyncio.wait_for(stream, 300)
        await load.close_windows(lateness_ms=int(DEFAULT_WORKER_ENV["HUB_ALLOWED_LATENESS"]) * 1000)
        got = await account(load, database, app_id, dlq_start, timeout_s=180)
        print(f"{load.tag}: sent {load.acknowledged} ({load.made} with retries), {got.summary()}")
        for worker in workers:
            assert worker.proc is not None
            assert worker.proc.poll() is None, "a worker did not survive"
    finally:
        for worker in workers:
            worker.stop()
        await drop_hub_topics(settings, app_id)
