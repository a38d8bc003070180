"""A full replay: a second hub reads the first one's input again from the offsets the first one
started from, into the emptied database, and must write the very same tables."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from hub.settings import Settings
from tests.isolated import IsolatedHub, start_hub, stop_hub
from tests.reliability.workload import (
    LATENESS_MS,
    Workload,
    account,
    two_sites_per_partition,
)
from tests.support import eventually, fetch

# What the hub writes, without the column that says when it wrote it; only the rows of the
# stream's own windows (a hub left running idle goes on judging later windows as no data).
TABLES = {
    "site_aggregates": ("closed_at", "bucket <= $1", "site_id, demonstration_id, metric, bucket"),
    "kpi_results": (
        "judged_at",
        "window_end <= $1",
        "demonstration_id, kpi_id, site_id, window_start",
    ),
    "kpi_alerts": ("", "ts <= $1", "alert_id, ts"),
    "site_last_seen": ("updated_at", "", "site_id"),  # every site: the closing records
}


async def tables(database_url: str, through_ms: int) -> dict[str, list[str]]:
    """Every row of the stream's windows (up to the end of its last minute), as text."""
    through = datetime.fromtimestamp(through_ms / 1000, UTC)
    out: dict[str, list[str]] = {}
    for table, (written, where, order) in TABLES.items():
        query = f"SELECT (to_jsonb(t) - '{written}')::text AS row FROM {table} t"
        query += f" WHERE {where} ORDER BY {order}" if where else f" ORDER BY {order}"
        rows = await fetch(database_url, query, *([through] if where else []))
        out[table] = [r["row"] for r in rows]
    return out


async def test_a_full_replay_into_an_emptied_database_yields_identical_tables(
    hub: IsolatedHub, stack: Settings, tmp_path: Path
) -> None:
    worker = hub.worker()
    await asyncio.to_thread(worker.wait_ready)
    # No fault to land mid-stream: the records as fast as the producer sends them (to 2,000/s).
    load = Workload(
        hub.settings, "replay", two_sites_per_partition(hub.settings.partitions), rate=2000.0
    )
    await load.run()
    await load.close_windows()
    await account(load, hub.database_url, hub.app_id, hub.dlq_start)
    through = load.data_through_ms

    async def judged() -> dict[str, list[str]] | None:
        got = await tables(hub.database_url, through)
        return got if got["kpi_results"] else None

    await eventually(judged, "the stream's KPI results")
    closing = datetime.fromtimestamp((through + LATENESS_MS + 1000) / 1000, UTC)

    async def closed_seen() -> bool | None:
        # Each site's closing record processed: stopped earlier, the worker never reads the
        # last ones (the counts are complete once the first of a partition's arrived).
        rows = await fetch(
            hub.database_url,
            "SELECT count(*) AS n FROM site_last_seen WHERE last_event_at >= $1",
            closing,
        )
        return True if rows[0]["n"] == len(load.sites) else None

    await eventually(closed_seen, "every site's closing record in site_last_seen")
    worker.stop()  # a graceful stop writes what the worker held back (site_last_seen)
    original = await tables(hub.database_url, through)
    print("replay: original rows", {t: len(rows) for t, rows in original.items()})
    assert all(original.values()), "the stream left a table empty"

    await fetch(hub.database_url, f"TRUNCATE {', '.join(TABLES)}, site_aggregates_hourly")
    replay = await start_hub(stack, hub.database_url, tmp_path, hub.telemetry_start)
    try:
        await asyncio.to_thread(replay.worker().wait_ready)
        await account(load, hub.database_url, replay.app_id, replay.dlq_start)

        async def identical() -> bool | None:
            return True if await tables(hub.database_url, through) == original else None

        try:
            await eventually(identical, "the replay's tables to match the original's", 60)
        except AssertionError:
            replayed = await tables(hub.database_url, through)
            diff = {
                t: (
                    sorted(set(original[t]) - set(replayed[t]))[:3],
                    sorted(set(replayed[t]) - set(original[t]))[:3],
                )
                for t in TABLES
                if original[t] != replayed[t]
            }
            raise AssertionError(f"replay differs (original only, replay only): {diff}") from None
    finally:
        await stop_hub(replay)
