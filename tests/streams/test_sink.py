"""The sink on a real TimescaleDB: a batch of every table is written in one statement, the same
rows however often it is written, and nothing when its fence is stale; a row the database refuses
as data is kept aside, not retried for ever; the rest of its batch is written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from hub.settings import Settings
from streams.rows import (
    AggregateRow,
    AlertRow,
    DeviceMinuteRow,
    Fence,
    KpiRow,
    LastSeenRow,
    RejectionRow,
)
from streams.sink import Fenced, SinkBatch, TimescaleSink, claim
from tests.support import scratch_database

BUCKET = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
AT = BUCKET + timedelta(seconds=20)
SITE, DEMO = "GJ-BUK-0001", "DEMO-001"
# What each written table holds after the batch below, as (query, rows).
READ_BACK = {
    "site_aggregates": "SELECT site_id, demonstration_id, metric, count, sum, min, max, p50, p95, "
    "p99 FROM site_aggregates ORDER BY metric",
    "kpi_results": "SELECT kpi_id, value, threshold, status, samples, kpi_version FROM kpi_results",
    "site_last_seen": "SELECT site_id, last_event_at FROM site_last_seen",
    "device_minutes": "SELECT device_id, records, last_event_at FROM device_minutes",
    "rejections": 'SELECT partition, "offset", device_id, event_ts, reason, detail FROM rejections',
    "rollup_pending": "SELECT hour FROM rollup_pending",
}


def every_table(fence: Fence | None, count: int = 60) -> SinkBatch:
    """A closing partition's batch: a row for every table but alerts (NULLs and a quote too)."""
    end = BUCKET + timedelta(minutes=1)
    return SinkBatch(
        aggregates=[
            AggregateRow(BUCKET, SITE, DEMO, "online", count, 60.0, 1, 1, 1.0, 1.0, 1.0),
            AggregateRow(BUCKET, SITE, DEMO, "latency_ms", 3, 9.5, 2.5, 4.0, None, None, None),
        ],
        kpi_results=[KpiRow(BUCKET, end, DEMO, SITE, "latency_p50", 3.0, 250.0, "pass", 3, 2)],
        alerts=[],
        last_seen=[LastSeenRow(SITE, AT)],
        device_minutes=[DeviceMinuteRow(BUCKET, "DEV-1", SITE, DEMO, count, AT)],
        rejections=[RejectionRow(AT, 4, 1234, "DEV-1", SITE, None, "bad_signature", "it's 'x'")],
        fence=fence,
    )


@asynccontextmanager
async def scratch_pool(stack: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh database with the schema and registry, dropped after the test."""
    async with (
        scratch_database(stack) as url,
        asyncpg.create_pool(url, min_size=1, max_size=2) as pool,
    ):
        yield pool


async def claimed(pool: asyncpg.Pool, partition: int, owner: str) -> int:
    async with pool.acquire() as conn:
        return await claim(conn, "hub-a", partition, owner)


async def read_back(pool: asyncpg.Pool) -> dict[str, list[tuple[object, ...]]]:
    return {table: [tuple(r) for r in await pool.fetch(q)] for table, q in READ_BACK.items()}


async def test_a_batch_of_every_table_is_the_same_rows_however_often_it_is_written(
    stack: Settings,
) -> None:
    async with scratch_pool(stack) as pool:
        epoch = await claimed(pool, 4, "test")
        sink = TimescaleSink(pool)
        await sink.write(every_table(Fence("hub-a", 4, epoch), count=59))
        await sink.write(every_table(Fence("hub-a", 4, epoch)))  # a replay, a late record
        await sink.write(every_table(Fence("hub-a", 4, epoch)))
        rows = await read_back(pool)
    assert rows == {
        "site_aggregates": [
            (SITE, DEMO, "latency_ms", 3, 9.5, 2.5, 4.0, None, None, None),
            (SITE, DEMO, "online", 60, 60.0, 1.0, 1.0, 1.0, 1.0, 1.0),
        ],
        "kpi_results": [("latency_p50", 3.0, 250.0, "pass", 3, 2)],
        "site_last_seen": [(SITE, AT)],
        "device_minutes": [("DEV-1", 60, AT)],
        "rejections": [(4, 1234, "DEV-1", None, "bad_signature", "it's 'x'")],
        "rollup_pending": [(BUCKET,)],
    }


def alert(alert_id: str, minute: int, transition: str) -> AlertRow:
    status = "resolved" if transition == "recovered" else "open"
    at = BUCKET + timedelta(minutes=minute)
    return AlertRow(alert_id, at, DEMO, SITE, "latency_p50", transition, 300.0, 250.0, status)


async def test_a_recovery_resolves_the_breaches_before_it_in_its_own_batch_and_earlier(
    stack: Settings,
) -> None:
    async with scratch_pool(stack) as pool:
        fence = Fence("hub-a", 4, await claimed(pool, 4, "test"))
        sink = TimescaleSink(pool)
        await sink.write(SinkBatch([], [], [alert("b1", 1, "breach")], fence=fence))
        later = [alert("n2", 2, "no_data"), alert("r3", 3, "recovered")]
        await sink.write(SinkBatch([], [], later, fence=fence))
        await sink.write(SinkBatch([], [], [alert("b4", 4, "breach")], fence=fence))
        rows = await pool.fetch(
            "SELECT alert_id, status, resolved_at FROM kpi_alerts ORDER BY alert_id"
        )
    resolved = BUCKET + timedelta(minutes=3)
    assert [tuple(r) for r in rows] == [
        ("b1", "resolved", resolved),
        ("b4", "open", None),  # after the recovery: still open
        ("n2", "resolved", resolved),
        ("r3", "resolved", None),
    ]


async def test_a_batch_whose_fence_is_stale_writes_nothing(stack: Settings) -> None:
    async with scratch_pool(stack) as pool:
        stale = await claimed(pool, 4, "worker-a")
        current = await claimed(pool, 4, "worker-b")
        sink = TimescaleSink(pool)
        with pytest.raises(Fenced, match=f"at epoch {current}, this worker claimed epoch 1"):
            await sink.write(every_table(Fence("hub-a", 4, stale)))
        nothing = await read_back(pool)
        with pytest.raises(Fenced, match="at epoch None"):  # a partition nobody claimed
            await sink.write(every_table(Fence("hub-a", 5, 1)))
        await sink.write(every_table(Fence("hub-a", 4, current)))
        written = await read_back(pool)
    assert nothing == {table: [] for table in READ_BACK}
    assert all(written.values()), written


async def test_a_row_the_database_refuses_is_quarantined_and_the_batch_written(
    stack: Settings,
) -> None:
    good = AggregateRow(BUCKET, SITE, DEMO, "online", 60, 60.0, 1, 1, 1, 1, 1)
    # PostgreSQL text cannot hold a NUL character: SQLSTATE 22021, a data error.
    bad = good._replace(metric="online\x00")
    quarantined: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    async with scratch_pool(stack) as pool:
        sink = TimescaleSink(
            pool,
            on_error=errors.append,
            on_quarantine=lambda table, n: quarantined.append((table, n)),
        )
        await sink.write(SinkBatch([good, bad], [], []))
        rows = await pool.fetch("SELECT site_id, metric, count FROM site_aggregates")
        kept = await pool.fetch("SELECT table_name, row_data, error FROM sink_quarantine")
    assert [tuple(r) for r in rows] == [("GJ-BUK-0001", "online", 60)]
    assert quarantined == [("site_aggregates", 1)]
    assert errors == []  # not an outage: no retries
    assert [r["table_name"] for r in kept] == ["site_aggregates"]
    assert "online\\\\x00" in kept[0]["row_data"]
    assert "CharacterNotInRepertoire" in kept[0]["error"]
