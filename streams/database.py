"""The worker's database: one pool for the sink, the registry snapshot and partition claims,
opened on first use (a worker starts while the database is away, and waits it out)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import replace

import asyncpg

from hub.db import WORKER_SESSION, create_pool
from hub.settings import Settings
from streams.registry import Snapshot, current_digest, load_snapshot
from streams.sink import TimescaleSink, claim


class WorkerDatabase:
    def __init__(
        self,
        settings: Settings,
        hub: str,
        *,
        on_error: Callable[[BaseException], None] | None = None,
        on_quarantine: Callable[[str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.on_error = on_error
        self.on_quarantine = on_quarantine
        # Who claims partitions (partition_owners.owner): host and process.
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._pool: asyncpg.Pool | None = None
        self._sink: TimescaleSink | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await create_pool(
                    self.settings, min_size=1, max_size=4, server_settings=WORKER_SESSION
                )
            return self._pool

    async def sink(self) -> TimescaleSink:
        if self._sink is None:
            self._sink = TimescaleSink(
                await self.pool(), on_error=self.on_error, on_quarantine=self.on_quarantine
            )
        return self._sink

    async def claim(self, partition: int) -> int:
        """This worker's claim on the partition's rows: the epoch its writes carry."""
        async with (await self.pool()).acquire(timeout=10) as conn:
            return await claim(conn, self.hub, partition, self.owner)

    async def snapshot_if_changed(self, current: Snapshot) -> Snapshot:
        """The registry, read again if its digest is no longer ``current``'s; otherwise
        ``current`` as of now (nothing newer existed when the database was asked)."""
        async with (await self.pool()).acquire(timeout=10) as conn:
            digest, now = await current_digest(conn)
            if current.digest and digest == current.digest:
                return replace(current, as_of_ms=now)
            return await load_snapshot(conn)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
