"""The TimescaleDB sink: closed windows, KPI results and alerts, written in one transaction a batch.

Rows are COPYed into temporary tables and merged with ``INSERT ... ON CONFLICT DO UPDATE``: writing
the same batch twice (a replay after a crash) leaves the same rows. The caller awaits ``write``
before the partition's offset may advance; while the database is down ``write`` retries with
backoff, logging its backlog, and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import asyncpg

from hub.db import Connection

log = logging.getLogger("hub.sink")


class AggregateRow(NamedTuple):
    """One closed window: a ``site_aggregates`` row (field names are the column names)."""

    bucket: datetime
    site_id: str
    metric: str
    count_: int  # the column "count" (a tuple already has a count method)
    sum: float
    min: float
    max: float
    p50: float | None
    p95: float | None
    p99: float | None


class KpiRow(NamedTuple):
    window_start: datetime
    window_end: datetime
    demonstration_id: str
    site_id: str
    kpi_id: str
    value: float | None
    threshold: float
    status: str
    samples: int


class AlertRow(NamedTuple):
    alert_id: str
    ts: datetime
    demonstration_id: str
    site_id: str
    kpi_id: str
    transition: str
    value: float | None
    threshold: float
    status: str  # lifecycle: open, or resolved for a recovery


MERGE_AGGREGATES = """
INSERT INTO site_aggregates AS t (bucket, site_id, metric, count, sum, min, max, p50, p95, p99)
SELECT bucket, site_id, metric, count, sum, min, max, p50, p95, p99 FROM incoming_aggregates
ON CONFLICT (site_id, metric, bucket) DO UPDATE SET
  count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max,
  p50 = excluded.p50, p95 = excluded.p95, p99 = excluded.p99, closed_at = now()
"""
MERGE_KPI_RESULTS = """
INSERT INTO kpi_results AS t (window_start, window_end, demonstration_id, site_id, kpi_id, value,
                              threshold, status, samples)
SELECT window_start, window_end, demonstration_id, site_id, kpi_id, value, threshold, status,
       samples FROM incoming_kpi_results
ON CONFLICT (demonstration_id, kpi_id, site_id, window_start) DO UPDATE SET
  window_end = excluded.window_end, value = excluded.value, threshold = excluded.threshold,
  status = excluded.status, samples = excluded.samples, judged_at = now()
"""
# A replayed alert keeps what operators did to it (acknowledgement, notes).
MERGE_ALERTS = """
INSERT INTO kpi_alerts AS t (alert_id, ts, demonstration_id, site_id, kpi_id, transition, value,
                             threshold, status)
SELECT alert_id, ts, demonstration_id, site_id, kpi_id, transition, value, threshold, status
  FROM incoming_alerts
ON CONFLICT (alert_id, ts) DO UPDATE SET value = excluded.value, threshold = excluded.threshold
"""
MERGE_LAST_SEEN = """
INSERT INTO site_last_seen AS t (site_id, last_event_at)
SELECT site_id, last_event_at FROM incoming_last_seen
ON CONFLICT (site_id) DO UPDATE SET
  last_event_at = greatest(t.last_event_at, excluded.last_event_at), updated_at = now()
"""
# A recovery resolves the alerts it ends: breaches and no-data alerts of that KPI at that site.
RESOLVE_ALERTS = """
UPDATE kpi_alerts a SET status = 'resolved', resolved_at = r.ts
  FROM incoming_alerts r
 WHERE r.transition = 'recovered'
   AND a.demonstration_id = r.demonstration_id AND a.kpi_id = r.kpi_id
   AND a.site_id = r.site_id AND a.ts < r.ts
   AND a.transition IN ('breach', 'no_data') AND a.status <> 'resolved'
"""


class LastSeenRow(NamedTuple):
    site_id: str
    last_event_at: datetime


@dataclass(slots=True)
class SinkBatch:
    aggregates: Sequence[AggregateRow]
    kpi_results: Sequence[KpiRow]
    alerts: Sequence[AlertRow]
    last_seen: Sequence[LastSeenRow] = ()

    def __len__(self) -> int:
        return len(self.aggregates) + len(self.kpi_results) + len(self.alerts) + len(self.last_seen)


# What a database outage or restart raises: worth waiting out, never worth crashing for. (asyncpg
# raises InternalClientError when the server drops a connection in the middle of an operation.)
DATABASE_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions._base.InternalClientError,
    TimeoutError,
)


class TimescaleSink:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        on_error: Callable[[BaseException], None] | None = None,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.pool = pool
        self.on_error = on_error
        self.max_backoff_s = max_backoff_s
        self.backlog_rows = 0  # rows waiting for the database, across all callers

    async def write(self, batch: SinkBatch) -> float:
        """Write the batch, retrying until it is committed; returns the seconds it took."""
        if not len(batch):
            return 0.0
        started = time.monotonic()
        backoff = 0.5
        self.backlog_rows += len(batch)
        try:
            while True:
                try:
                    await self._write_once(batch)
                    return time.monotonic() - started
                except DATABASE_UNAVAILABLE as error:
                    if self.on_error:
                        self.on_error(error)
                    log.warning(
                        "sink: database write failed (%s: %s); retrying in %.1f s, backlog %d rows",
                        type(error).__name__,
                        error,
                        backoff,
                        self.backlog_rows,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
        finally:
            self.backlog_rows -= len(batch)

    async def _write_once(self, batch: SinkBatch) -> None:
        async with self.pool.acquire(timeout=10) as conn, conn.transaction():
            if batch.aggregates:
                await _stage(conn, "incoming_aggregates", "site_aggregates", batch.aggregates)
                await conn.execute(MERGE_AGGREGATES)
            if batch.kpi_results:
                await _stage(conn, "incoming_kpi_results", "kpi_results", batch.kpi_results)
                await conn.execute(MERGE_KPI_RESULTS)
            if batch.alerts:
                await _stage(conn, "incoming_alerts", "kpi_alerts", batch.alerts)
                await conn.execute(MERGE_ALERTS)
                await conn.execute(RESOLVE_ALERTS)
            if batch.last_seen:
                await _stage(conn, "incoming_last_seen", "site_last_seen", batch.last_seen)
                await conn.execute(MERGE_LAST_SEEN)


async def _stage(
    conn: Connection,
    staging: str,
    like: str,
    rows: Sequence[AggregateRow | KpiRow | AlertRow | LastSeenRow],
) -> None:
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {like} INCLUDING DEFAULTS) "
        "ON COMMIT DELETE ROWS"
    )
    columns = [name.rstrip("_") for name in rows[0]._fields]
    await conn.copy_records_to_table(staging, records=rows, columns=columns)
