"""Upkeep on a real TimescaleDB: retention drops only old chunks; the hourly roll-up stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from tests.api.conftest import Scratch
from tests.conftest import run_hub

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


async def test_retention_drops_only_chunks_past_it_and_the_hourly_rollup_stays(
    scratch: Scratch,
) -> None:
    minutes = {
        NOW - timedelta(days=30): 4,
        NOW - timedelta(days=20): 5,
        NOW - timedelta(hours=1): 6,
    }
    conn = await asyncpg.connect(scratch.url)
    try:
        for start, n in minutes.items():
            await conn.executemany(
                "INSERT INTO site_aggregates (bucket, site_id, demonstration_id, metric, count,"
                " sum, min, max) VALUES ($1, 'GJ-BUK-0001', 'DEMO-001', 'online', 2, 2, 1, 1)",
                [(start + timedelta(minutes=i),) for i in range(n)],
            )
        chunks_before = await conn.fetchval("SELECT count(*) FROM show_chunks('site_aggregates')")

        result = run_hub("upkeep", env={**scratch.env, "HUB_RETENTION_RAW_DAYS": "7"})
        assert result.returncode == 0, result.stderr
        assert "chunks dropped: site_aggregates 2" in result.stdout

        left = await conn.fetch("SELECT bucket FROM site_aggregates ORDER BY bucket")
        assert [r["bucket"] for r in left] == [
            NOW - timedelta(hours=1, minutes=-i) for i in range(6)
        ]
        chunks_after = await conn.fetchval("SELECT count(*) FROM show_chunks('site_aggregates')")
        assert chunks_after == chunks_before - 2
        hourly = {
            r["bucket"]: r["count"]
            for r in await conn.fetch(
                "SELECT bucket, count FROM site_aggregates_hourly WHERE site_id = 'GJ-BUK-0001'"
            )
        }
        # The old hours were rolled up before their minutes were dropped, and are kept.
        assert hourly == {start: 2 * n for start, n in minutes.items()}

        again = run_hub("upkeep", env={**scratch.env, "HUB_RETENTION_RAW_DAYS": "7"})
        assert "chunks dropped: site_aggregates 0" in again.stdout
    finally:
        await conn.close()
