"""The worker's database: one pool for the sink, the registry snapshot and partition claims,
opened on first use (a worker starts while the database is away, and waits it out); and the
registry snapshot's loader (the pure ``streams.snapshot`` from the registry's tables)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

import asyncpg

from hub.db import WORKER_SESSION, Connection, create_pool
from hub.registry.model import Demonstration, Device, Kpi, Registry, Site
from hub.settings import Settings
from streams.sink import TimescaleSink, claim
from streams.snapshot import FOREVER_MS, KeySpan, KpiVersion, Programme, Snapshot, build_snapshot


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


async def current_digest(conn: Connection) -> tuple[str, int]:
    """The loaded registry's digest, and when device keys last changed (a snapshot is reloaded
    when either changes); and the database's clock now, in epoch milliseconds."""
    row = await conn.fetchrow(
        "SELECT (SELECT digest || coalesce('+' || extract(epoch FROM keys_changed_at)::text, '')"
        "               || coalesce('+' || extract(epoch FROM changed_at)::text, '')"
        "          FROM registry_state) AS digest,"
        "       (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms"
    )
    assert row is not None
    return (str(row["digest"]) if row["digest"] is not None else ""), int(row["now_ms"])


async def load_snapshot(conn: Connection) -> Snapshot:
    """The registry as the database holds it, with the devices' signing keys over time."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # Read first: the transaction's view of the data is taken at its first statement.
        digest, as_of_ms = await current_digest(conn)
        sites = [
            Site(r["site_id"], r["region"], r["district"], r["place_type"], "", 0.0, 0.0)
            for r in await conn.fetch("SELECT site_id, region, district, place_type FROM sites")
        ]
        devices = [
            Device(r["device_id"], r["site_id"], r["demonstration_id"], "")
            for r in await conn.fetch("SELECT device_id, site_id, demonstration_id FROM devices")
        ]
        kpis: dict[str, list[Kpi]] = defaultdict(list)
        for r in await conn.fetch(
            """SELECT k.demonstration_id, k.kpi_id, k.title, k.metric, k.aggregation, k.op,
                      k.threshold, k."window", k.min_samples, k.denominator,
                      coalesce((SELECT max(v.version) FROM kpi_versions v
                                 WHERE v.demonstration_id = k.demonstration_id
                                   AND v.kpi_id = k.kpi_id), 1) AS version
                 FROM kpis k ORDER BY k.demonstration_id, k.kpi_id"""
        ):
            kpis[r["demonstration_id"]].append(
                Kpi(
                    r["kpi_id"],
                    r["title"],
                    r["metric"],
                    r["aggregation"],
                    r["op"],
                    r["threshold"],
                    r["window"],
                    r["min_samples"],
                    tuple(r["denominator"]),
                    r["version"],
                )
            )
        demonstrations = [
            Demonstration(
                r["demonstration_id"],
                r["company"],
                r["title"],
                r["technology"],
                r["starts_on"].isoformat(),
                r["ends_on"].isoformat(),
                tuple(kpis.get(r["demonstration_id"], ())),
                tuple(r["metrics"]),
            )
            for r in await conn.fetch(
                "SELECT demonstration_id, company, title, technology, starts_on, ends_on, metrics "
                "FROM demonstrations ORDER BY demonstration_id"
            )
        ]
        keys = await _device_keys(conn)
        replay_key = await conn.fetchval("SELECT secret FROM hub_keys WHERE name = 'replay'")
        programme = await _programme(conn)
    registry = Registry(tuple(sites), tuple(devices), tuple(demonstrations), digest)
    return build_snapshot(
        registry,
        keys,
        as_of_ms=as_of_ms,
        replay_key=None if replay_key is None else bytes(replay_key),
        programme=programme,
    )


async def _programme(conn: Connection) -> dict[str, Programme]:
    """Each demonstration's status, early end and KPI versions."""
    versions: dict[str, dict[str, list[KpiVersion]]] = defaultdict(lambda: defaultdict(list))
    for r in await conn.fetch(
        """SELECT demonstration_id, kpi_id, version, threshold, min_samples,
                  CASE WHEN valid_from = '-infinity' THEN NULL
                       ELSE (extract(epoch FROM valid_from) * 1000)::bigint END AS from_ms,
                  (extract(epoch FROM valid_until) * 1000)::bigint AS until_ms
             FROM kpi_versions ORDER BY demonstration_id, kpi_id, version"""
    ):
        versions[r["demonstration_id"]][r["kpi_id"]].append(
            KpiVersion(
                r["version"],
                r["from_ms"] if r["from_ms"] is not None else -FOREVER_MS,
                r["until_ms"] if r["until_ms"] is not None else FOREVER_MS,
                r["threshold"],
                r["min_samples"],
            )
        )
    return {
        r["demonstration_id"]: Programme(
            r["status"],
            r["ended_ms"],
            {kpi: tuple(v) for kpi, v in versions.get(r["demonstration_id"], {}).items()},
        )
        for r in await conn.fetch(
            """SELECT demonstration_id, status,
                      (extract(epoch FROM ended_at) * 1000)::bigint AS ended_ms
                 FROM demonstrations"""
        )
    }


async def _device_keys(conn: Connection) -> dict[str, list[KeySpan]]:
    """Every key each device held, revoked ones too: a record is judged by the key valid when
    the broker appended it, however long ago."""
    rows = await conn.fetch(
        """SELECT device_id, secret,
                  (extract(epoch FROM issued_at) * 1000)::bigint AS from_ms,
                  (extract(epoch FROM revoked_at) * 1000)::bigint AS until_ms
             FROM device_keys ORDER BY device_id, issued_at"""
    )
    keys: dict[str, list[KeySpan]] = defaultdict(list)
    for r in rows:
        until = r["until_ms"] if r["until_ms"] is not None else FOREVER_MS
        keys[r["device_id"]].append(KeySpan(r["from_ms"], until, bytes(r["secret"])))
    return keys
