"""Hub processes run in the background on this machine (by `hub demo` and `hub bench`).

Each runs in its starter's process group (a `kill -- -PGID` of `hub bench` ends them all) and
ends when its starter does, however that ends (``die_with_parent``); its output goes to a log
file; it is watched through its /metrics and stopped by its pid.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from hub import principals, topics, topicsetup
from hub.errors import HubError
from hub.settings import Settings
from tooling.stack import principals as stack_principals
from tooling.stack.process import terminate

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> Callable[[], None]:
    """For ``preexec_fn``: the child is sent SIGTERM when its parent dies, by SIGKILL too, so that
    no worker outlives a benchmark stopped by a timeout (Linux's PR_SET_PDEATHSIG; the parent
    must start children from its main thread, as the bench and the demo do)."""

    def arm() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return arm


class BackgroundProcessFailed(HubError):
    """A background hub process died or did not get ready in time; names it and its log."""


class Process:
    """A hub process the demo runs in the background, stopped by its pid."""

    def __init__(
        self, name: str, argv: list[str], log: Path, env: dict[str, str], module: str = "hub"
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                preexec_fn=die_with_parent(os.getpid()),  # (main thread only)
            )

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:]
            raise BackgroundProcessFailed(
                f"{self.name} exited ({tail[0] if tail else 'no output'}); see {self.log}"
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            terminate(self.proc.pid, timeout_s=30)
            self.proc.wait(timeout=10)


def scrape(port: int, prefixes: tuple[str, ...] = ("hub_",)) -> dict[str, float]:
    """The samples a process serves on /metrics whose names start with one of ``prefixes``
    (labels folded into the name)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefixes):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def total(samples: list[dict[str, float]], prefix: str) -> float:
    return sum(v for s in samples for k, v in s.items() if k.startswith(prefix))


def wait_for(
    check: Callable[[], bool], what: str, timeout_s: float, processes: list[Process]
) -> None:
    """Poll until ``check`` holds; fail early if a process died, late after the deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():
        for process in processes:
            process.check()
        if time.monotonic() > deadline:
            raise BackgroundProcessFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


async def ensure_hub_topics(settings: Settings) -> None:
    """The contract's topics and the clock's: on a fresh broker no worker has created them yet."""
    await topicsetup.ensure_topics(
        settings.kafka_bootstrap,
        settings.partitions,
        topics.hub_topics(),
        replication_factor=settings.replication_factor,
        dlq_retention_days=settings.retention_dlq_days,
        **principals.security(settings),
    )


async def fresh_hub(
    settings: Settings, app_id: str, starts: dict[TopicPartition, int] | None = None
) -> None:
    """A new, independent hub (consumer group ``app_id``) that starts reading the telemetry at
    ``starts`` (else at its end) and the ticks at their end: no state or backlog of earlier runs.
    Its worker and notifier principals are granted what they need for it."""
    await ensure_hub_topics(settings)
    await asyncio.to_thread(stack_principals.grant_hub, settings, app_id)
    consumer = AIOKafkaConsumer(
        **principals.client(settings), group_id=app_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in (topics.TELEMETRY, topics.TICKS)
            for p in range(settings.partitions)
        ]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.commit({tp: (starts or {}).get(tp, end[tp]) for tp in tps})
    finally:
        await consumer.stop()


async def drop_hub_topics(settings: Settings, app_id: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**principals.client(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [t for t in existing if t.startswith(f"{app_id}-")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
    await asyncio.to_thread(stack_principals.revoke_hub, settings, app_id)
