"""The database the migrations build, read from its catalog, against the contract's table of
tables and views: kinds, the columns it names, keys and hypertables."""

from __future__ import annotations

import asyncpg

from hub.settings import Settings
from tests.support import scratch_database

# The contract's "Database" table: name -> (kind, columns at least).
CONTRACT = {
    "sites": ("table", {"site_id", "region", "district", "place_type", "lat", "lon"}),
    "devices": ("table", {"device_id", "site_id", "demonstration_id"}),
    "demonstrations": (
        "table",
        {"demonstration_id", "company", "title", "technology", "starts_on", "ends_on"},
    ),
    "kpis": (
        "table",
        {
            "demonstration_id",
            "kpi_id",
            "metric",
            "aggregation",
            "op",
            "threshold",
            "window",
            "min_samples",
        },
    ),
    "site_aggregates": (
        "hypertable",
        {"bucket", "site_id", "demonstration_id", "metric", "count", "sum", "min", "max"},
    ),
    "kpi_results": (
        "hypertable",
        {
            "window_start",
            "window_end",
            "demonstration_id",
            "site_id",
            "kpi_id",
            "value",
            "threshold",
            "status",
        },
    ),
    "kpi_alerts": (
        "hypertable",
        {
            "alert_id",
            "ts",
            "demonstration_id",
            "site_id",
            "kpi_id",
            "transition",
            "value",
            "threshold",
            "status",
            "acknowledged_by",
        },
    ),
    "management_overview": (
        "view",
        {
            "region",
            "district",
            "sites",
            "sites_reporting",
            "kpi_pass",
            "kpi_fail",
            "compliance_pct",
            "last_event_at",
        },
    ),
}
# Keys: one row per what the contract says a row is (a replay replaces it).
KEYS = {
    "sites": ["site_id"],
    "devices": ["device_id"],
    "demonstrations": ["demonstration_id"],
    "kpis": ["demonstration_id", "kpi_id"],
    "site_aggregates": ["site_id", "demonstration_id", "metric", "bucket"],
    "kpi_results": ["demonstration_id", "kpi_id", "site_id", "window_start"],
    "kpi_alerts": ["alert_id", "ts"],
}


async def test_the_schema_is_the_contracts(stack: Settings) -> None:
    async with scratch_database(stack) as url:
        conn = await asyncpg.connect(url)
        try:
            kinds = {
                r["relname"]: r["relkind"].decode()
                for r in await conn.fetch(
                    "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                )
            }
            hypertables = {
                r["hypertable_name"]
                for r in await conn.fetch(
                    "SELECT hypertable_name FROM timescaledb_information.hypertables"
                )
            }
            columns: dict[str, set[str]] = {}
            for r in await conn.fetch(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public'"
            ):
                columns.setdefault(r["table_name"], set()).add(r["column_name"])
            keys = {
                r["table"]: list(r["columns"])
                for r in await conn.fetch(
                    """SELECT c.conrelid::regclass::text AS table,
                              array_agg(a.attname ORDER BY k.ord) AS columns
                         FROM pg_constraint c
                         CROSS JOIN unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                        WHERE c.contype = 'p' AND c.connamespace = 'public'::regnamespace
                        GROUP BY c.conrelid"""
                )
            }
        finally:
            await conn.close()
    for name, (kind, wanted) in CONTRACT.items():
        assert kinds.get(name) == ("v" if kind == "view" else "r"), name
        assert (name in hypertables) == (kind == "hypertable"), name
        assert wanted <= columns[name], (name, wanted - columns[name])
    for table, key in KEYS.items():
        assert keys[table] == key, table
