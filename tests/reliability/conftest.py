"""A hub of its own for each reliability test: its consumer group and state topics (HUB_APP_ID),
its own database (so no other worker's rows can mask a loss), and workers started and killed by
pid. It reads the telemetry topic from where it stood when the test began."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from hub import topics
from hub.localrun import drop_hub_topics, fresh_hub
from hub.settings import Settings
from tests.conftest import WorkerProcess, registry_dir_with_test_demo
from tests.support import end_offsets, scratch_database

# Apart from the session worker's ports; a killed worker's partitions move after 8 s.
RELIABILITY_ENV = {"HUB_WORKER_WEB_PORT": "16166", "HUB_SESSION_TIMEOUT": "8"}


@dataclass
class IsolatedHub:
    settings: Settings
    app_id: str
    database_url: str
    logs: Path
    telemetry_start: dict[TopicPartition, int]
    dlq_start: dict[TopicPartition, int]
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            **RELIABILITY_ENV,
            "HUB_APP_ID": self.app_id,
            "HUB_DATABASE_URL": self.database_url,
        }

    def worker(self, index: int = 0) -> WorkerProcess:
        """A worker of this hub, started; the fixture stops it in the end."""
        process = WorkerProcess(index, self.logs, self.env).start()
        self.workers.append(process)
        return process

    def datadir(self, index: int) -> Path:
        return self.settings.home / "worker" / self.app_id / str(index)


@pytest.fixture
async def registry_dir(tmp_path: Path) -> Path:
    return registry_dir_with_test_demo(tmp_path / "registry")


async def start_hub(
    stack: Settings, database_url: str, logs: Path, starts: dict[TopicPartition, int] | None
) -> IsolatedHub:
    app_id = f"rel-{uuid.uuid4().hex[:8]}"
    telemetry = starts or await end_offsets(stack, topics.TELEMETRY)
    await fresh_hub(stack, app_id, telemetry)
    return IsolatedHub(
        stack, app_id, database_url, logs, telemetry, await end_offsets(stack, topics.DLQ)
    )


async def stop_hub(hub: IsolatedHub) -> None:
    for process in hub.workers:
        process.stop()
    await drop_hub_topics(hub.settings, hub.app_id)


@pytest.fixture
async def database(stack: Settings, registry_dir: Path) -> AsyncIterator[str]:
    """An empty database with the schema and the test registry."""
    async with scratch_database(stack, registry_dir) as url:
        yield url


@pytest.fixture
async def hub(stack: Settings, database: str, tmp_path: Path) -> AsyncIterator[IsolatedHub]:
    isolated = await start_hub(stack, database, tmp_path, None)
    try:
        yield isolated
    finally:
        await stop_hub(isolated)
