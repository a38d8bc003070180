"""The sink on a real TimescaleDB: a row the database refuses as data is kept aside, not retried
for ever; the rest of its batch is written."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from hub.settings import Settings
from streams.rows import AggregateRow
from streams.sink import SinkBatch, TimescaleSink
from tests.support import scratch_database


async def test_a_row_the_database_refuses_is_quarantined_and_the_batch_written(
    stack: Settings,
) -> None:
    bucket = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    good = AggregateRow(bucket, "GJ-BUK-0001", "DEMO-001", "online", 60, 60.0, 1, 1, 1, 1, 1)
    # PostgreSQL text cannot hold a NUL character: SQLSTATE 22021, a data error.
    bad = good._replace(metric="online\x00")
    quarantined: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    async with scratch_database(stack) as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        assert pool is not None
        try:
            sink = TimescaleSink(
                pool,
                on_error=errors.append,
                on_quarantine=lambda table, n: quarantined.append((table, n)),
            )
            await sink.write(SinkBatch([good, bad], [], []))
            rows = await pool.fetch("SELECT site_id, metric, count FROM site_aggregates")
            kept = await pool.fetch("SELECT table_name, row_data, error FROM sink_quarantine")
        finally:
            await pool.close()
    assert [tuple(r) for r in rows] == [("GJ-BUK-0001", "online", 60)]
    assert quarantined == [("site_aggregates", 1)]
    assert errors == []  # not an outage: no retries
    assert [r["table_name"] for r in kept] == ["site_aggregates"]
    assert "online\\\\x00" in kept[0]["row_data"]
    assert "CharacterNotInRepertoire" in kept[0]["error"]
