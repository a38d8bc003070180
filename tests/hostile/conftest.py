"""One bad device harms only itself: a hub of its own at the hub's defaults (120 s lateness, 5 s
clock tolerance, 600 s de-duplication horizon), shared by this package's tests. Each test works
on partitions of its own: event time is per partition."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from hub import principals, topics
from hub.registry.files import read_registry
from hub.settings import Settings
from tests.conftest import (
    DEFAULT_WORKER_ENV,
    WorkerProcess,
    registry_dir_with_test_demo,
    run_hub_async,
    t01_sites,
)
from tests.isolated import IsolatedHub, start_hub, stop_hub
from tests.support import (
    eventually,
    install_test_keys,
    partition_of,
    read_since,
    scratch_database,
    signed,
)

HOSTILE_ENV = {**DEFAULT_WORKER_ENV, "HUB_WORKER_WEB_PORT": "16266"}


@dataclass
class HostileHub:
    hub: IsolatedHub
    worker: WorkerProcess

    @property
    def settings(self) -> Settings:
        return self.hub.settings

    def counter(self, prefix: str) -> float:
        return sum(v for k, v in self.worker.metrics().items() if k.startswith(prefix))

    def settled(self) -> float:
        """Records the worker has finished with: accepted, rejected (the DLQ copy acknowledged)
        or recognised as repeats."""
        return sum(
            self.counter(f"hub_records_{name}_total")
            for name in ("accepted", "rejected", "duplicate")
        )

    async def settle(self, before: float, records: int, timeout_s: float = 120) -> None:
        """Until the worker has finished with ``records`` more records than ``before``."""

        async def done() -> bool | None:
            return True if self.settled() >= before + records else None

        await eventually(done, f"the worker to finish with {records} records", timeout_s)

    async def rejected(self, since: dict[TopicPartition, int]) -> list[dict[str, object]]:
        """This hub's DLQ records written since ``since``."""
        return [
            r for r in await read_since(self.settings, since) if r.get("hub") == self.hub.app_id
        ]


@pytest.fixture(scope="package")
async def hostile(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[HostileHub]:
    registry = registry_dir_with_test_demo(tmp_path_factory.mktemp("hostile-registry"))
    logs = tmp_path_factory.mktemp("hostile-logs")
    async with scratch_database(stack, registry) as url:
        hub = await start_hub(stack, url, logs, None, HOSTILE_ENV)
        try:
            worker = hub.worker()
            await asyncio.to_thread(worker.wait_ready)
            yield HostileHub(hub, worker)
        finally:
            await stop_hub(hub)


def sites_on(partition: int, partitions: int) -> list[str]:
    """The sites with a DEMO-T01 test device whose records belong to ``partition``, in id
    order."""
    return sorted(s for s in t01_sites(partitions) if partition_of(s, partitions) == partition)


async def publish(
    settings: Settings, records: list[tuple[str, bytes]], **producer: object
) -> list[BaseException | None]:
    """Each (site, value) signed by the device it names; what the broker said of each."""
    client = AIOKafkaProducer(**principals.client(settings), acks="all", **producer)
    await client.start()
    outcomes: list[BaseException | None] = []
    try:
        for site, value in records:
            try:
                await client.send_and_wait(
                    topics.TELEMETRY, value=value, key=site.encode(), headers=signed(value)
                )
                outcomes.append(None)
            except Exception as error:  # the broker's refusal is what some tests look for
                outcomes.append(error)
    finally:
        await client.stop()
    return outcomes


def now_ms() -> int:
    return int(time.time() * 1000)


def decoded(record: dict[str, object]) -> dict[str, object]:
    import base64

    return dict(json.loads(base64.b64decode(str(record["value_b64"]))))


@dataclass(frozen=True)
class Issued:
    username: str
    password: str
    key: bytes


@pytest.fixture
async def access(hostile: HostileHub) -> AsyncIterator[HostileHub]:
    """Keys `hub access` issues or revokes here replace the devices' test keys: put back."""
    yield hostile
    await install_test_keys(hostile.hub.database_url)


async def hub_access(hostile: HostileHub, *args: str) -> str:
    env = {"HUB_DATABASE_URL": hostile.hub.database_url}
    result = await run_hub_async("access", *args, env=env, timeout_s=180)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def add_device(hostile: HostileHub, device_id: str) -> Issued:
    out = await hub_access(hostile, "add-device", device_id)
    fields = dict(line.split(None, 1) for line in out.splitlines() if line[:1].isalpha())
    return Issued(fields["username"], fields["password"], bytes.fromhex(fields["signing"]))


def shared_site() -> tuple[str, str, str]:
    """A site where two companies' devices report, and a device of each."""
    by_site: dict[str, dict[str, str]] = {}
    for device in read_registry().devices:
        by_site.setdefault(device.site_id, {})[device.demonstration_id] = device.device_id
    site, demos = next((s, d) for s, d in sorted(by_site.items()) if len(d) >= 2)
    first, second = sorted(demos)[:2]
    return site, demos[first], demos[second]
