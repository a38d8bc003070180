"""Write a checked registry into the contract's tables, in one transaction.

The shipped registry is data that is loaded, never a list of what may exist: rows are copied into
temporary tables, then merged, new rows inserted and changed rows updated; a row the files no
longer hold is kept (a demonstration applied through ``hub demonstrations``, a device
registered at its approval), and nothing is deleted. What would change another company's
results is refused, naming each row: a device moved to another site or demonstration, a
demonstration given to another company, a site moved to another region, a KPI whose metric,
aggregation, operator, window or denominator changed (a new KPI id is a new KPI). A KPI's
threshold, minimum samples or title changed in the files becomes a new version from now on
(``kpi_versions``): verdicts keep the version they were judged by. Loading the same files again
changes nothing; ``registry_state.digest`` tells running workers to reload, and every load is in
the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import asyncpg

from hub import audit
from hub.db import Connection, connect
from hub.db.migrate import migrate
from hub.registry.files import DATA_DIR, Problem, RegistryError, read_registry
from hub.registry.model import Registry
from hub.settings import Settings

REGISTRY_LOCK = 0x4855_4231  # "HUB1": one registry load at a time


@dataclass(slots=True)
class TableChange:
    inserted: int = 0
    updated: int = 0

    def __str__(self) -> str:
        return f"+{self.inserted} ~{self.updated}"


@dataclass(slots=True)
class LoadReport:
    digest: str
    counts: dict[str, int] = field(default_factory=dict)
    changes: dict[str, TableChange] = field(default_factory=dict)
    # Rows the files do not hold, kept (applied through `hub demonstrations`, say).
    kept: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(c.inserted or c.updated for c in self.changes.values())


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


# Columns whose change would move another company's devices or results: refused.
FIXED: dict[str, tuple[str, ...]] = {
    "demonstrations": ("company",),
    "sites": ("region",),
    "kpis": ("metric", "aggregation", "op", '"window"', "denominator"),
    "devices": ("site_id", "demonstration_id"),
}
# What a KPI version holds besides its key (the columns kpis and kpi_versions share).
KPI_DEFINITION = (
    "title",
    "metric",
    "aggregation",
    "op",
    "threshold",
    '"window"',
    "window_seconds",
    "min_samples",
    "denominator",
)


async def load_registry(
    conn: asyncpg.Connection, registry: Registry, actor: str = "registry"
) -> LoadReport:
    report = LoadReport(registry.digest)
    data = rows(registry)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", REGISTRY_LOCK)
        for table in TABLES:
            staging = f"incoming_{table}"
            keys, others = TABLES[table]
            columns = [c.strip('"') for c in (*keys, *others)]
            await conn.execute(
                f"CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            await conn.copy_records_to_table(staging, records=data[table], columns=columns)
            report.counts[table] = len(data[table])
        await _refuse_moves(conn)
        await _unknown_regions(conn)
        versioned = await _new_kpi_versions(conn, actor)
        for table, (keys, others) in TABLES.items():
            report.changes[table] = await _merge(conn, table, f"incoming_{table}", keys, others)
            match = " AND ".join(f"i.{k} = t.{k}" for k in keys)
            report.kept[table] = int(
                await conn.fetchval(
                    f"SELECT count(*) FROM {table} t WHERE NOT EXISTS "
                    f"(SELECT 1 FROM incoming_{table} i WHERE {match})"
                )
            )
        await _first_kpi_versions(conn)
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
        if report.changed:
            changes = {table: str(change) for table, change in report.changes.items()}
            await audit.record(
                conn,
                actor,
                "registry.load",
                registry.digest,
                None,
                {"changes": changes, "kpi_versions": versioned},
            )
    return report


async def _refuse_moves(conn: asyncpg.Connection) -> None:
    """Every row whose change would move another company's devices or results, named."""
    problems: list[Problem] = []
    for table, columns in FIXED.items():
        keys, _ = TABLES[table]
        match = " AND ".join(f"i.{k} = t.{k}" for k in keys)
        for column in columns:
            name = column.strip('"')
            rows = await conn.fetch(
                f"SELECT {', '.join(f'i.{k}' for k in keys)}, t.{column}::text AS was, "
                f"i.{column}::text AS now FROM incoming_{table} i JOIN {table} t ON {match} "
                f"WHERE t.{column} IS DISTINCT FROM i.{column} LIMIT 20"
            )
            for row in rows:
                key = "/".join(str(row[k]) for k in keys)
                problems.append(
                    Problem(
                        table,
                        key,
                        f"{name} would change from {row['was']} to {row['now']}: "
                        + MOVE_ADVICE[table],
                    )
                )
    if problems:
        raise RegistryError(problems)


MOVE_ADVICE = {
    "demonstrations": "a demonstration stays its company's",
    "sites": "a site stays in its region",
    "kpis": "a KPI keeps its meaning (give a new KPI a new id; a threshold changes by version)",
    "devices": "a device never moves (register a new device id)",
}


async def _unknown_regions(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "SELECT site_id, region FROM incoming_sites i "
        "WHERE NOT EXISTS (SELECT 1 FROM regions r WHERE r.code = i.region) LIMIT 20"
    )
    if rows:
        raise RegistryError(
            [
                Problem(
                    "sites.csv",
                    f"site {r['site_id']}",
                    f"region {r['region']!r} is not a region of the hub (hub regions add)",
                )
                for r in rows
            ]
        )


async def _new_kpi_versions(conn: asyncpg.Connection, actor: str) -> int:
    """A KPI whose threshold, minimum samples or title the files change: its current version
    ends now and a new one starts (before ``kpis`` is updated to it). Returns how many."""
    changed = await conn.fetch(
        """SELECT i.demonstration_id, i.kpi_id FROM incoming_kpis i
             JOIN kpis t USING (demonstration_id, kpi_id)
            WHERE (t.threshold, t.min_samples, t.title)
                  IS DISTINCT FROM (i.threshold, i.min_samples, i.title)"""
    )
    for row in changed:
        await new_kpi_version(
            conn,
            row["demonstration_id"],
            row["kpi_id"],
            "incoming_kpis",
            reason="hub registry load",
            actor=actor,
        )
    return len(changed)


async def new_kpi_version(
    conn: Connection,
    demonstration_id: str,
    kpi_id: str,
    source: str,
    *,
    reason: str,
    actor: str,
    valid_from: datetime | None = None,
) -> int:
    """Close the KPI's open version at ``valid_from`` (now) and open the next with the
    definition ``source`` (a table or subquery with the KPI's row) holds; returns its number."""
    columns = ", ".join(KPI_DEFINITION)
    picked = ", ".join(f"s.{c}" for c in KPI_DEFINITION)
    at = valid_from or await conn.fetchval("SELECT now()")
    await conn.execute(
        """UPDATE kpi_versions SET valid_until = $3
            WHERE demonstration_id = $1 AND kpi_id = $2 AND valid_until IS NULL""",
        demonstration_id,
        kpi_id,
        at,
    )
    version: int = await conn.fetchval(
        f"""INSERT INTO kpi_versions (demonstration_id, kpi_id, version, valid_from, {columns},
                                      reason, changed_by)
            SELECT s.demonstration_id, s.kpi_id,
                   coalesce((SELECT max(v.version) FROM kpi_versions v
                              WHERE v.demonstration_id = $1 AND v.kpi_id = $2), 0) + 1,
                   $3, {picked}, $4, $5
              FROM {source} s WHERE s.demonstration_id = $1 AND s.kpi_id = $2
            RETURNING version""",
        demonstration_id,
        kpi_id,
        at,
        reason,
        actor,
    )
    return version


async def _first_kpi_versions(conn: asyncpg.Connection) -> None:
    """A KPI new to the database gets its first version, valid from the beginning."""
    columns = ", ".join(KPI_DEFINITION)
    await conn.execute(
        f"""INSERT INTO kpi_versions (demonstration_id, kpi_id, version, valid_from, {columns},
                                      reason, changed_by)
            SELECT k.demonstration_id, k.kpi_id, 1, '-infinity', {columns}, 'as loaded',
                   'registry'
              FROM kpis k
             WHERE NOT EXISTS (SELECT 1 FROM kpi_versions v
                                WHERE v.demonstration_id = k.demonstration_id
                                  AND v.kpi_id = k.kpi_id)"""
    )


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


async def load_files(
    settings: Settings, directory: Path = DATA_DIR, actor: str = "registry"
) -> LoadReport:
    """Read and check the files, migrate the database, load: what `hub registry load` does."""
    registry = read_registry(directory)
    conn = await connect(settings)
    try:
        await migrate(conn)
        return await load_registry(conn, registry, actor)
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
