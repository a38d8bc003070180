"""Scheduled upkeep the Apache build of TimescaleDB has no policy jobs for: the hourly roll-up of
``site_aggregates``, retention by ``drop_chunks``, and the retention of the notifier's outbox and
the sink's quarantine.

Run every ``HUB_UPKEEP_INTERVAL`` seconds by `hub api`, or once by `hub upkeep` (from cron, say).
An advisory lock makes concurrent runs skip rather than collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hub import evidence
from hub.db import Connection
from hub.settings import Settings

UPKEEP_LOCK = 0x4855_4232  # "HUB2"
HOUR = timedelta(hours=1)

ROLLUP_SQL = """
INSERT INTO site_aggregates_hourly AS h (bucket, site_id, demonstration_id, metric, count, sum, min,
                                         max, p95_max)
SELECT time_bucket('1 hour', bucket), site_id, demonstration_id, metric, sum(count), sum(sum),
       min(min), max(max), max(p95)
  FROM site_aggregates
 WHERE bucket >= $1 AND bucket < $2
 GROUP BY 1, 2, 3, 4
ON CONFLICT (site_id, demonstration_id, metric, bucket) DO UPDATE SET
  count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max,
  p95_max = excluded.p95_max
"""


@dataclass(slots=True)
class UpkeepReport:
    ran: bool = True
    rolled_up_rows: int = 0
    rolled_up_from: datetime | None = None
    dropped: dict[str, list[str]] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    kept_as_evidence: int = 0
    frozen: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.ran:
            return "upkeep: another process is running it; skipped"
        dropped = ", ".join(f"{t} {len(c)}" for t, c in self.dropped.items())
        deleted = ", ".join(f"{t} {n}" for t, n in self.deleted.items())
        since = self.rolled_up_from.isoformat() if self.rolled_up_from else "-"
        rolled = f"hourly roll-up {self.rolled_up_rows} rows since {since}"
        evidence = f"minutes kept as evidence {self.kept_as_evidence}"
        if self.frozen:
            evidence += f", evidence frozen: {', '.join(self.frozen)}"
        return f"upkeep: {rolled}; chunks dropped: {dropped}; rows deleted: {deleted}; {evidence}"


def retention(settings: Settings) -> dict[str, timedelta]:
    return {
        "site_aggregates": timedelta(days=settings.retention_raw_days),
        "site_aggregates_hourly": timedelta(days=settings.retention_hourly_days),
        "kpi_results": timedelta(days=settings.retention_kpi_days),
        "kpi_alerts": timedelta(days=settings.retention_alert_days),
        "device_minutes": timedelta(days=settings.retention_raw_days),
        "rejections": timedelta(days=settings.retention_dlq_days),
    }


async def roll_up_hourly(conn: Connection, now: datetime) -> tuple[int, datetime | None]:
    """Re-aggregate every hour the sink wrote since the last run (``rollup_pending``), however
    old; on the first run ever, every hour there is. Returns the rows written and the first
    hour rolled up."""
    first_run = (
        await conn.fetchval("SELECT value FROM upkeep_state WHERE name = 'hourly_rollup'") is None
    )
    rows, spans = 0, []
    async with conn.transaction():
        # Taken and rolled up in one transaction: a write marking an hour meanwhile waits, and
        # marks it again for the next run.
        hours = sorted(
            r["hour"] for r in await conn.fetch("DELETE FROM rollup_pending RETURNING hour")
        )
        earliest = await conn.fetchval("SELECT min(bucket) FROM site_aggregates")
        if first_run and earliest is not None:
            spans.append((earliest.replace(minute=0, second=0, microsecond=0), now))
        spans += [(hour, hour + HOUR) for hour in hours]
        for start, end in spans:
            rows += _count(await conn.execute(ROLLUP_SQL, start, end))
        await conn.execute(
            "INSERT INTO upkeep_state (name, value) VALUES ('hourly_rollup', $1) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            now,
        )
    return rows, min((start for start, _ in spans), default=None)


def _count(status: str) -> int:
    return int(status.split()[-1])


async def delete_expired(conn: Connection, settings: Settings, now: datetime) -> dict[str, int]:
    """The notifier's outbox rows (delivered or not: a notice that old is news to no one) and
    the quarantined rows past their retention."""
    deleted = {}
    for table, column, days in (
        ("notify_outbox", "created_at", settings.retention_notify_days),
        ("sink_quarantine", "at", settings.retention_quarantine_days),
    ):
        status = await conn.execute(
            f"DELETE FROM {table} WHERE {column} < $1", now - timedelta(days=days)
        )
        deleted[table] = _count(status)
    return deleted


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
        # Minutes about to go past their retention stay, as evidence (hub.evidence).
        kept = await evidence.keep_for_evidence(
            conn, now - timedelta(days=settings.retention_raw_days)
        )
        dropped = await apply_retention(conn, settings, now)
        deleted = await delete_expired(conn, settings, now)
        frozen = await evidence.freeze_ended(conn)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", UPKEEP_LOCK)
    return UpkeepReport(True, rows, start, dropped, deleted, kept, frozen)
