"""A hub of its own for a test: its consumer group and state topics (HUB_APP_ID), its own
database (so no other worker's rows can mask a loss), and workers started and killed by pid. It
reads the telemetry topic from where it stood when the test began."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import TopicPartition

from hub import topics
from hub.settings import Settings
from tests.conftest import WorkerProcess
from tests.support import end_offsets
from tooling.localrun import drop_hub_topics, ensure_hub_topics, fresh_hub

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
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            **RELIABILITY_ENV,
            **self.extra_env,
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


async def start_hub(
    stack: Settings,
    database_url: str,
    logs: Path,
    starts: dict[TopicPartition, int] | None,
    env: dict[str, str] | None = None,
) -> IsolatedHub:
    app_id = f"rel-{uuid.uuid4().hex[:8]}"
    await ensure_hub_topics(stack)  # a fresh broker has none: their end offsets are wanted
    telemetry = starts or await end_offsets(stack, topics.TELEMETRY)
    await fresh_hub(stack, app_id, telemetry)
    dlq = await end_offsets(stack, topics.DLQ)
    return IsolatedHub(stack, app_id, database_url, logs, telemetry, dlq, extra_env=env or {})


async def stop_hub(hub: IsolatedHub) -> None:
    for process in hub.workers:
        process.stop()
    await drop_hub_topics(hub.settings, hub.app_id)
