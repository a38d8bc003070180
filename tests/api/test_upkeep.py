"""Upkeep on a real TimescaleDB: retention drops only old chunks; the hourly roll-up stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from streams.rows import AggregateRow
from streams.sink import SinkBatch, TimescaleSink
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


async def test_minutes_written_long_after_their_hour_are_rolled_up(scratch: Scratch) -> None:
    """A worker catching up writes minutes five hours old after the roll-up ran past them:
    the sink marks their hour, and the next run rolls it up (a fixed re-read window missed
    them). Expired outbox and quarantine rows go at the same time."""
    conn = await asyncpg.connect(scratch.url)
    pool = await asyncpg.create_pool(scratch.url, min_size=1, max_size=2)
    try:
        first = run_hub("upkeep", env=scratch.env)
        assert first.returncode == 0, first.stderr
        hour = NOW - timedelta(hours=5)
        rows = [
            AggregateRow(
                hour + timedelta(minutes=i),
                "GJ-BUK-0002",
                "DEMO-001",
                "late_metric",
                3,
                3.0,
                1.0,
                1.0,
                None,
                None,
                None,
            )
            for i in range(4)
        ]
        await TimescaleSink(pool).write(SinkBatch(rows, (), ()))
        await conn.execute(
            "INSERT INTO notify_receivers (name, kind, target, role) "
            "VALUES ('old-ops', 'webhook', 'https://example.com/x', 'operator')"
        )
        await conn.execute(
            "INSERT INTO notify_outbox (notice_id, receiver, kind, subject, body, created_at) "
            "VALUES ('old', 'old-ops', 'platform', 's', '{}', now() - interval '31 days'), "
            "('new', 'old-ops', 'platform', 's', '{}', now())"
        )
        await conn.execute(
            "INSERT INTO sink_quarantine (at, table_name, row_data, error) VALUES "
            "(now() - interval '31 days', 'kpi_results', '{}', 'e'), "
            "(now(), 'kpi_results', '{}', 'e')"
        )

        second = run_hub("upkeep", env=scratch.env)
        assert second.returncode == 0, second.stderr
        assert "rows deleted: notify_outbox 1, sink_quarantine 1" in second.stdout
        count = await conn.fetchval(
            "SELECT count FROM site_aggregates_hourly WHERE site_id = 'GJ-BUK-0002' "
            "AND metric = 'late_metric' AND bucket = $1",
            hour,
        )
        assert count == 12
        assert await conn.fetchval("SELECT count(*) FROM rollup_pending") == 0
        left = await conn.fetch("SELECT notice_id FROM notify_outbox WHERE receiver = 'old-ops'")
        assert [r["notice_id"] for r in left] == ["new"]
    finally:
        await pool.close()
        await conn.close()
