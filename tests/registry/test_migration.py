"""Migration 0005 on a database written before aggregates were per demonstration: rows at a site
with one demonstration become that demonstration's; rows at a shared site are never attributed
to anyone, and their verdicts leave the scorecard. Then the registry loads, and migrating or
loading again changes nothing."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from hub.db.migrate import MIGRATIONS_DIR, migrate
from hub.settings import Settings
from tests.conftest import run_hub_async
from tests.support import scratch_database

BUCKET = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)  # inside DEMO-005's and DEMO-008's periods
SINGLE = "GJ-DONG-0001"
SHARED = "GJ-DONG-0016"  # ParkEye (DEMO-005) and Firewatch (DEMO-008)


@pytest.fixture
async def old_database(stack: Settings, tmp_path: Path) -> AsyncIterator[str]:
    """A database at migration 0004 with the registry's rows for two sites and a window, a KPI
    result and an alert at each, as the hub wrote them before 0005."""
    async with scratch_database(stack, load=False) as url:
        await _at_0004(url, tmp_path)
        yield url


async def _at_0004(url: str, tmp_path: Path) -> None:
    """Migrations 0001-0004 only, then the rows as the hub wrote them then."""
    old = tmp_path / "migrations"
    old.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("000[1-4]_*.sql")):
        shutil.copy(path, old / path.name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, old)
        await conn.execute(
            """
            INSERT INTO sites (site_id, region, district, place_type, name, lat, lon) VALUES
              ('GJ-DONG-0001', 'gwangju', 'dong', 'bus_stop', 'Dong-gu bus stop 1',
               35.133578, 126.909835),
              ('GJ-DONG-0016', 'gwangju', 'dong', 'market', 'Dong-gu market 16',
               35.146787, 126.916139);
            INSERT INTO demonstrations VALUES
              ('DEMO-003', 'Mobility Lab Gwangju', 'AI Bus Arrival Prediction',
               'transit_prediction', '2026-01-05', '2026-12-31'),
              ('DEMO-005', 'ParkEye', 'Illegal Parking Detection', 'license_plate_recognition',
               '2026-02-02', '2027-01-29'),
              ('DEMO-008', 'Firewatch', 'Traditional Market Fire Early Warning',
               'fire_detection', '2026-03-16', '2027-03-15');
            INSERT INTO kpis (demonstration_id, kpi_id, metric, aggregation, op, threshold,
                              "window", window_seconds) VALUES
              ('DEMO-005', 'KPI-1', 'online', 'sum', '>=', 55, '1h', 3600),
              ('DEMO-008', 'KPI-1', 'online', 'sum', '>=', 55, '1h', 3600);
            INSERT INTO devices (device_id, site_id, demonstration_id, model) VALUES
              ('GJ-DONG-0001-SEN1', 'GJ-DONG-0001', 'DEMO-003', 'MLG Stop Sensor'),
              ('GJ-DONG-0016-CAM1', 'GJ-DONG-0016', 'DEMO-005', 'ParkEye LPR'),
              ('GJ-DONG-0016-SEN1', 'GJ-DONG-0016', 'DEMO-008', 'Firewatch Smoke AI');
            """
        )
        for site in (SINGLE, SHARED):
            await conn.execute(
                "INSERT INTO site_aggregates (bucket, site_id, metric, count, sum, min, max) "
                "VALUES ($1, $2, 'online', 60, 60, 1, 1)",
                BUCKET,
                site,
            )
        await conn.execute(
            """
            INSERT INTO kpi_results (window_start, window_end, demonstration_id, site_id, kpi_id,
                                     value, threshold, status, samples)
            VALUES ($1::timestamptz, $1::timestamptz + INTERVAL '1 hour', 'DEMO-008', $2, 'KPI-1',
                    120, 55, 'pass', 120);
            """,
            BUCKET,
            SHARED,
        )
        await conn.execute(
            """
            INSERT INTO kpi_alerts (alert_id, ts, demonstration_id, site_id, kpi_id, transition,
                                    threshold)
            VALUES ('a1', $1, 'DEMO-005', $2, 'KPI-1', 'breach', 55)
            """,
            BUCKET,
            SHARED,
        )
    finally:
        await conn.close()


async def test_old_rows_are_attributed_only_where_one_demonstration_ran(old_database: str) -> None:
    conn = await asyncpg.connect(old_database)
    try:
        applied = await migrate(conn)
        assert applied[0].startswith("0005"), applied
        rows = await conn.fetch(
            "SELECT site_id, demonstration_id, count FROM site_aggregates ORDER BY site_id"
        )
        assert [tuple(r) for r in rows] == [(SINGLE, "DEMO-003", 60), (SHARED, "", 60)]
        assert await conn.fetchval("SELECT bool_or(attributable) FROM kpi_results") is False
        assert await conn.fetchval("SELECT bool_or(attributable) FROM kpi_alerts") is False
        card = await conn.fetchrow(
            "SELECT windows_judged, not_attributable FROM demonstration_scorecard "
            "WHERE demonstration_id = 'DEMO-008' AND kpi_id = 'KPI-1'"
        )
        assert card is not None
        assert tuple(card) == (0, 1)  # the mixed verdict is left out, and says so
        assert await migrate(conn) == []  # again: nothing to do
    finally:
        await conn.close()
    for _ in range(2):  # the registry loads over it, twice alike; the old rows stay as they were
        loaded = await run_hub_async("registry", "load", env={"HUB_DATABASE_URL": old_database})
        assert loaded.returncode == 0, loaded.stderr
    conn = await asyncpg.connect(old_database)
    try:
        rows = await conn.fetch(
            "SELECT site_id, demonstration_id FROM site_aggregates WHERE bucket = $1 "
            "ORDER BY site_id",
            BUCKET,
        )
        assert [tuple(r) for r in rows] == [(SINGLE, "DEMO-003"), (SHARED, "")]
    finally:
        await conn.close()
