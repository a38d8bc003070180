"""Scheduled upkeep the Apache build of TimescaleDB has no policy jobs for: the hourly roll-up of
``site_aggregates`` and retention by ``drop_chunks``.

Run every ``HUB_UPKEEP_INTERVAL`` seconds by `hub api`, or once by `hub upkeep` (from cron, say).
An advisory lock makes concurrent runs skip rather than collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hub.db import Connection
from hub.settings import Settings

UPKEEP_LOCK = 0x4855_4232  # "HUB2"
# Minutes can still arrive this long after their hour (allowed lateness, idle partitions,
# a worker catching up): the roll-up re-reads them.
ROLLUP_OVERLAP = timedelta(hours=3)

ROLLUP_SQL = """
INSERT INTO site_aggregates_hourly AS h (bucket, site_id, demonstration_id, metric, count, sum, min,
                                         max)
SELECT time_bucket('1 hour', bucket), site_id, demonstration_id, metric, sum(count), sum(sum),
       min(min), max(max)
  FROM site_aggregates
 WHERE bucket >= $1 AND bucket < $2
 GROUP BY 1, 2, 3, 4
ON CONFLICT (site_id, demonstration_id, metric, bucket) DO UPDATE SET
  count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max
"""


@dataclass(slots=True)
class UpkeepReport:
    ran: bool = True
    rolled_up_rows: int = 0
    rolled_up_from: datetime | None = None
    dropped: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        if not self.ran:
            return "upkeep: another process is running it; skipped"
        dropped = ", ".join(f"{t} {len(c)}" for t, c in self.dropped.items())
        since = self.rolled_up_from.isoformat() if self.rolled_up_from else "-"
        rolled = f"hourly roll-up {self.rolled_up_rows} rows since {since}"
        return f"upkeep: {rolled}; chunks dropped: {dropped}"


def retention(settings: Settings) -> dict[str, timedelta]:
    return {
        "site_aggregates": timedelta(days=settings.retention_raw_days),
        "site_aggregates_hourly": timedelta(days=settings.retention_hourly_days),
        "kpi_results": timedelta(days=settings.retention_kpi_days),
        "kpi_alerts": timedelta(days=settings.retention_alert_days),
    }


async def roll_up_hourly(conn: Connection, now: datetime) -> tuple[int, datetime]:
    """Re-aggregate every hour since the last run (minus the overlap) up to now."""
    last = await conn.fetchval("SELECT value FROM upkeep_state WHERE name = 'hourly_rollup'")
    earliest = await conn.fetchval("SELECT min(bucket) FROM site_aggregates")
    start = (last - ROLLUP_OVERLAP) if last is not None else (earliest or now)
    start = start.replace(minute=0, second=0, microsecond=0)
    status = await conn.execute(ROLLUP_SQL, start, now)
    await conn.execute(
        "INSERT INTO upkeep_state (name, value) VALUES ('hourly_rollup', $1) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        now,
    )
    return int(status.split()[-1]), start


async def apply_retention(
    conn: Connection, settings: Settings, now: datetime
) -> dict[str, list[str]]:
    """Drop whole chunks older than each table's retention: never a row of a newer chunk."""
    dropped: dict[str, list[str]] = {}
    for table, keep in retention(settings).items():
        rows = await conn.fetch(
            "SELECT drop_chunks($1::regclass, older_than => $2::timestamptz)", table, now - keep
        )
        dropped[table] = [row[0] for row in rows]
    return dropped


async def run_upkeep(
    conn: Connection, settings: Settings, now: datetime | None = None
) -> UpkeepReport:
    now = now or datetime.now(UTC)
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", UPKEEP_LOCK):
        return UpkeepReport(ran=False)
    try:
        rows, start = await roll_up_hourly(conn, now)
        dropped = await apply_retention(conn, settings, now)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", UPKEEP_LOCK)
    return UpkeepReport(True, rows, start, dropped)
