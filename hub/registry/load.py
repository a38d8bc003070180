"""Write a checked registry into the contract's tables, in one transaction.

Rows are copied into temporary tables, then merged: new rows inserted, changed rows updated,
rows no longer in the files deleted. Loading the same files again changes nothing; an edit
changes exactly the edited rows. ``registry_state.digest`` tells running workers to reload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import asyncpg

from hub.db import connect
from hub.db.migrate import migrate
from hub.registry.files import DATA_DIR, read_registry
from hub.registry.model import Registry
from hub.settings import Settings

REGISTRY_LOCK = 0x4855_4231  # "HUB1": one registry load at a time


@dataclass(slots=True)
class TableChange:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    def __str__(self) -> str:
        return f"+{self.inserted} ~{self.updated} -{self.deleted}"


@dataclass(slots=True)
class LoadReport:
    digest: str
    counts: dict[str, int] = field(default_factory=dict)
    changes: dict[str, TableChange] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(c.inserted or c.updated or c.deleted for c in self.changes.values())


# table -> (key columns, other columns); merged in this order, deleted in reverse.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "demonstrations": (
        ("demonstration_id",),
        ("company", "title", "technology", "starts_on", "ends_on", "metrics"),
    ),
    "sites": (("site_id",), ("region", "district", "place_type", "name", "lat", "lon")),
    "kpis": (
        ("demonstration_id", "kpi_id"),
        (
            "title",
            "metric",
            "aggregation",
            "op",
            "threshold",
            '"window"',
            "window_seconds",
            "min_samples",
            "denominator",
        ),
    ),
    "devices": (("device_id",), ("site_id", "demonstration_id", "model")),
}


def rows(registry: Registry) -> dict[str, list[tuple[object, ...]]]:
    return {
        "demonstrations": [
            (
                d.demonstration_id,
                d.company,
                d.title,
                d.technology,
                date.fromisoformat(d.starts_on),
                date.fromisoformat(d.ends_on),
                list(d.metrics),
            )
            for d in registry.demonstrations
        ],
        "sites": [
            (s.site_id, s.region, s.district, s.place_type, s.name, s.lat, s.lon)
            for s in registry.sites
        ],
        "kpis": [
            (
                d.demonstration_id,
                k.kpi_id,
                k.title,
                k.metric,
                k.aggregation,
                k.op,
                k.threshold,
                k.window,
                k.window_s,
                k.min_samples,
                list(k.denominator),
            )
            for d in registry.demonstrations
            for k in d.kpis
        ],
        "devices": [
            (v.device_id, v.site_id, v.demonstration_id, v.model) for v in registry.devices
        ],
    }


async def load_registry(conn: asyncpg.Connection, registry: Registry) -> LoadReport:
    report = LoadReport(registry.digest)
    data = rows(registry)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", REGISTRY_LOCK)
        for table, (keys, others) in TABLES.items():
            staging = f"incoming_{table}"
            columns = [c.strip('"') for c in (*keys, *others)]
            await conn.execute(
                f"CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            await conn.copy_records_to_table(staging, records=data[table], columns=columns)
            report.counts[table] = len(data[table])
            report.changes[table] = await _merge(conn, table, staging, keys, others)
        for table, (keys, _) in reversed(TABLES.items()):
            match = " AND ".join(f"i.{k} = t.{k}" for k in keys)
            status = await conn.execute(
                f"DELETE FROM {table} t WHERE NOT EXISTS "
                f"(SELECT 1 FROM incoming_{table} i WHERE {match})"
            )
            report.changes[table].deleted = int(status.split()[-1])
        await conn.execute(
            """INSERT INTO registry_state (singleton, digest, loaded_at, sites, devices,
                                           demonstrations, kpis)
               VALUES (true, $1, now(), $2, $3, $4, $5)
               ON CONFLICT (singleton) DO UPDATE SET
                 digest = excluded.digest, sites = excluded.sites, devices = excluded.devices,
                 demonstrations = excluded.demonstrations, kpis = excluded.kpis,
                 loaded_at = CASE WHEN registry_state.digest = excluded.digest
                                  THEN registry_state.loaded_at ELSE excluded.loaded_at END""",
            registry.digest,
            report.counts["sites"],
            report.counts["devices"],
            report.counts["demonstrations"],
            report.counts["kpis"],
        )
    return report


async def _merge(
    conn: asyncpg.Connection,
    table: str,
    staging: str,
    keys: tuple[str, ...],
    others: tuple[str, ...],
) -> TableChange:
    columns = ", ".join((*keys, *others))
    updates = ", ".join(f"{c} = excluded.{c}" for c in others)
    changed = " OR ".join(f"t.{c} IS DISTINCT FROM excluded.{c}" for c in others)
    inserted = await conn.fetch(
        f"INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM {staging} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates} WHERE {changed} "
        "RETURNING (xmax = 0) AS inserted"
    )
    new = sum(1 for row in inserted if row["inserted"])
    return TableChange(inserted=new, updated=len(inserted) - new)


async def load_files(settings: Settings, directory: Path = DATA_DIR) -> LoadReport:
    """Read and check the files, migrate the database, load: what `hub registry load` does."""
    registry = read_registry(directory)
    conn = await connect(settings)
    try:
        await migrate(conn)
        return await load_registry(conn, registry)
    finally:
        await conn.close()


async def ensure_loaded(settings: Settings, directory: Path = DATA_DIR) -> LoadReport | None:
    """Migrate, and load the shipped registry only when none is loaded (a fresh stack): a
    benchmark needs registered sites, but must not replace a registry someone loaded."""
    conn = await connect(settings)
    try:
        await migrate(conn)
        if await conn.fetchval("SELECT count(*) FROM sites"):
            return None
    finally:
        await conn.close()
    return await load_files(settings, directory)
