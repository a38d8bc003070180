"""The TimescaleDB sink: closed windows, KPI results and alerts, written in one transaction a batch.

A batch's rows are merged with ``INSERT ... ON CONFLICT DO UPDATE``, every table in one statement
that also checks the partition's fence: writing the same batch twice (a replay after a crash)
leaves the same rows. The caller awaits ``write``
before the partition's offset may advance; while the database is down ``write`` retries with
backoff, logging its backlog, and loses nothing.

A database that refuses the *data* (SQLSTATE classes 22 and 23: a value it cannot store) is not
an outage: retrying would refuse it for ever and hold the partition. The batch is then written a
row at a time, each in a savepoint, and the rows refused are kept in ``sink_quarantine`` with the
error (counted by the caller's ``on_quarantine``), the others written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from hub.db import Connection
from streams.rows import (
    AggregateRow,
    AlertRow,
    DeviceMinuteRow,
    Fence,
    KpiRow,
    LastSeenRow,
    RejectionRow,
)

log = logging.getLogger(__name__)


MERGE_AGGREGATES = """
INSERT INTO site_aggregates AS t (bucket, site_id, demonstration_id, metric, count, sum, min, max,
                                  p50, p95, p99)
SELECT bucket, site_id, demonstration_id, metric, count, sum, min, max, p50, p95, p99
  FROM incoming_aggregates
ON CONFLICT (site_id, demonstration_id, metric, bucket) DO UPDATE SET
  count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max,
  p50 = excluded.p50, p95 = excluded.p95, p99 = excluded.p99, closed_at = now()
"""
# The hours written, for the hourly roll-up (hub.upkeep): in the same transaction as the rows.
MARK_ROLLUP = """
INSERT INTO rollup_pending (hour)
SELECT DISTINCT time_bucket('1 hour', bucket) FROM incoming_aggregates
ON CONFLICT (hour) DO NOTHING
"""
MERGE_KPI_RESULTS = """
INSERT INTO kpi_results AS t (window_start, window_end, demonstration_id, site_id, kpi_id, value,
                              threshold, status, samples, kpi_version)
SELECT window_start, window_end, demonstration_id, site_id, kpi_id, value, threshold, status,
       samples, kpi_version FROM incoming_kpi_results
ON CONFLICT (demonstration_id, kpi_id, site_id, window_start) DO UPDATE SET
  window_end = excluded.window_end, value = excluded.value, threshold = excluded.threshold,
  status = excluded.status, samples = excluded.samples, kpi_version = excluded.kpi_version,
  judged_at = now()
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
# A device's minute is written with its windows: a replay writes the same values again.
MERGE_DEVICE_MINUTES = """
INSERT INTO device_minutes AS t (bucket, device_id, site_id, demonstration_id, records,
                                 last_event_at)
SELECT bucket, device_id, site_id, demonstration_id, records, last_event_at
  FROM incoming_device_minutes
ON CONFLICT (device_id, bucket) DO UPDATE SET
  records = excluded.records, last_event_at = excluded.last_event_at
"""
# A rejection is where the broker put the record: rejected again (a replay), it is the same row.
MERGE_REJECTIONS = """
INSERT INTO rejections (at, partition, "offset", device_id, site_id, event_ts, reason, detail)
SELECT at, partition, "offset", device_id, site_id, event_ts, reason, detail
  FROM incoming_rejections
ON CONFLICT DO NOTHING
"""
# A recovery resolves the alerts it ends: breaches and no-data alerts of that KPI at that site.
RESOLVE_ALERTS = """
UPDATE kpi_alerts a SET status = 'resolved', resolved_at = r.ts
  FROM (SELECT demonstration_id, kpi_id, site_id, ts, transition FROM incoming_alerts
       ) r
 WHERE r.transition = 'recovered'
   AND a.demonstration_id = r.demonstration_id AND a.kpi_id = r.kpi_id
   AND a.site_id = r.site_id AND a.ts < r.ts
   AND a.transition IN ('breach', 'no_data') AND a.status <> 'resolved'
"""


class Fenced(Exception):
    """The partition's rows belong to another worker now: this batch must not be written."""

    def __init__(self, fence: Fence, current: int | None) -> None:
        super().__init__(
            f"partition {fence.partition} of {fence.hub} is at epoch {current}, this worker "
            f"claimed epoch {fence.epoch}: another worker owns it now"
        )
        self.fence = fence


@dataclass(slots=True)
class SinkBatch:
    aggregates: Sequence[AggregateRow]
    kpi_results: Sequence[KpiRow]
    alerts: Sequence[AlertRow]
    last_seen: Sequence[LastSeenRow] = ()
    device_minutes: Sequence[DeviceMinuteRow] = ()
    rejections: Sequence[RejectionRow] = ()
    fence: Fence | None = None

    def __len__(self) -> int:
        return sum(len(getattr(self, part)) for part, _, _, _ in _TABLES)


# What a database outage or restart raises: worth waiting out, never worth crashing for. (asyncpg
# raises InternalClientError when the server drops a connection in the middle of an operation.)
DATABASE_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions._base.InternalClientError,
    TimeoutError,
)


# What the database refuses because of the data: retrying cannot help.
DATA_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)

# Merges that must see the rows merged before them (a recovery resolves the breach raised in
# its own batch): after the one statement, in its transaction.
_AFTER_MERGES = (RESOLVE_ALERTS,)

# (batch part, table, staging table, merge statements) in the order a batch is written.
_Entry = tuple[str, str, str, tuple[str, ...]]
_TABLES: tuple[_Entry, ...] = (
    ("aggregates", "site_aggregates", "incoming_aggregates", (MERGE_AGGREGATES, MARK_ROLLUP)),
    ("kpi_results", "kpi_results", "incoming_kpi_results", (MERGE_KPI_RESULTS,)),
    ("alerts", "kpi_alerts", "incoming_alerts", (MERGE_ALERTS, RESOLVE_ALERTS)),
    ("last_seen", "site_last_seen", "incoming_last_seen", (MERGE_LAST_SEEN,)),
    ("device_minutes", "device_minutes", "incoming_device_minutes", (MERGE_DEVICE_MINUTES,)),
    ("rejections", "rejections", "incoming_rejections", (MERGE_REJECTIONS,)),
)


class TimescaleSink:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        on_error: Callable[[BaseException], None] | None = None,
        on_quarantine: Callable[[str, int], None] | None = None,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.pool = pool
        self.on_error = on_error
        self.on_quarantine = on_quarantine
        self.max_backoff_s = max_backoff_s
        self.backlog_rows = 0  # rows waiting for the database, across all callers
        self._types: dict[str, dict[str, str]] | None = None  # the tables' column types

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
                except DATA_ERRORS as error:
                    log.warning("sink: the database refused a row (%r); writing row by row", error)
                    await self._write_salvaging(batch)
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

    async def confirm(self, fence: Fence) -> None:
        """Raise Fenced if the partition is not at this epoch any more (waits out an outage)."""
        backoff = 0.5
        while True:
            try:
                async with self.pool.acquire(timeout=10) as conn, conn.transaction():
                    await check_fence(conn, fence)
                return
            except DATABASE_UNAVAILABLE as error:
                if self.on_error:
                    self.on_error(error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _write_once(self, batch: SinkBatch) -> None:
        present = [entry for entry in _TABLES if getattr(batch, entry[0])]
        async with self.pool.acquire(timeout=10) as conn:
            if self._types is None:
                self._types = await _column_types(conn)
            await _write_statement(conn, batch, present, self._types)

    async def _write_salvaging(self, batch: SinkBatch) -> None:
        """Every row in a savepoint of its own: the refused ones go to sink_quarantine."""
        refused: list[tuple[str, Row, str]] = []
        async with self.pool.acquire(timeout=10) as conn, conn.transaction():
            for part, table, staging, merges in _TABLES:
                for row in getattr(batch, part):
                    try:
                        async with conn.transaction():
                            await _stage(conn, staging, table, [row], fresh=True)
                            for merge in merges:
                                await conn.execute(merge)
                    except DATA_ERRORS as error:
                        refused.append((table, row, f"{type(error).__name__}: {error}"))
            await conn.executemany(
                "INSERT INTO sink_quarantine (table_name, row_data, error) VALUES ($1, $2, $3)",
                [(table, _as_json(row), error) for table, row, error in refused],
            )
            await check_fence(conn, batch.fence)
        for table in {table for table, _, _ in refused}:
            n = sum(1 for t, _, _ in refused if t == table)
            log.error(
                "sink: %d %s row(s) refused by the database, kept in sink_quarantine", n, table
            )
            if self.on_quarantine:
                self.on_quarantine(table, n)


Row = AggregateRow | KpiRow | AlertRow | LastSeenRow | DeviceMinuteRow | RejectionRow


async def claim(conn: Connection, hub: str, partition: int, owner: str) -> int:
    """Take the partition's rows over: the next epoch, which every later write checks. A write
    of the previous owner still in flight fails its check and rolls back (unless it has just
    checked, in the moment before its commit: then this waits for that commit)."""
    epoch = await conn.fetchval(
        """INSERT INTO partition_owners AS o (hub, partition, epoch, owner) VALUES ($1, $2, 1, $3)
           ON CONFLICT (hub, partition) DO UPDATE SET epoch = o.epoch + 1, owner = $3,
                                                      since = now()
           RETURNING epoch""",
        hub,
        partition,
        owner,
    )
    return int(epoch)


# The partition's epoch, share-locked: a claim waits until the write holding it commits.
FENCE = "SELECT epoch FROM partition_owners WHERE hub = $1 AND partition = $2 FOR SHARE"


async def check_fence(conn: Connection, fence: Fence | None) -> None:
    """Last in the write's transaction, just before its commit: the partition is still at the
    writer's epoch. The share lock holds a claim back until the commit, so none slips in between;
    a write that hangs half-way holds nothing, and finds the epoch moved on when it resumes."""
    if fence is None:
        return
    current = await conn.fetchval(FENCE, fence.hub, fence.partition)
    if current != fence.epoch:
        raise Fenced(fence, current)


async def _write_statement(
    conn: Connection,
    batch: SinkBatch,
    present: list[_Entry],
    types: dict[str, dict[str, str]],
) -> None:
    """In one round trip, atomic, unless a recovery is to resolve alerts: each table's rows as
    an array a column, unnested in the merge statements (as data-modifying CTEs), each gated on
    the fence, which the statement locks and returns. A partition's closing write waits for
    its worker's loop at every round trip, and at a close that loop is closing the other
    partitions: the COPY path's thirteen round trips each waited behind them."""
    args: list[object] = []
    ctes: list[str] = []
    after: list[tuple[str, list[list[Any]]]] = []
    gate = ""
    if batch.fence is not None:
        args += [batch.fence.hub, batch.fence.partition, batch.fence.epoch]
        ctes.append(f"fence AS ({FENCE})")
        gate = " WHERE EXISTS (SELECT FROM fence WHERE epoch = $3)"
    for part, table, staging, merges in present:
        rows = getattr(batch, part)
        columns = [name.rstrip("_") for name in rows[0]._fields]
        arrays = [list(values) for values in zip(*rows, strict=True)]
        kinds = [types[table][column] for column in columns]
        source = _unnest(staging, columns, kinds, len(args) + 1)
        args += arrays
        for merge in merges:
            if merge in _AFTER_MERGES:
                after.append((_from(merge, staging, _unnest(staging, columns, kinds, 1)), arrays))
            else:
                ctes.append(f"w{len(ctes)} AS ({_from(merge, staging, source + gate)})")
    result = "(SELECT epoch FROM fence)" if batch.fence is not None else "NULL"
    statement = "WITH " + ",\n".join(ctes) + f"\nSELECT {result}"
    async with conn.transaction() if after else contextlib.nullcontext():
        current = await conn.fetchval(statement, *args)
        if batch.fence is not None and current != batch.fence.epoch:
            raise Fenced(batch.fence, current)
        for sql, values in after:
            await conn.execute(sql, *values)


def _unnest(staging: str, columns: list[str], kinds: list[str], first: int) -> str:
    """FROM the arrays $first... as rows of the staging table's name and columns."""
    arrays = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(kinds))
    names = ", ".join(f'"{column}"' for column in columns)
    return f"FROM unnest({arrays}) AS {staging}({names})"


def _from(merge: str, staging: str, source: str) -> str:
    """The merge statement reading ``source`` (a FROM clause) where it read the staging
    table."""
    target = f"FROM {staging}\n"
    assert merge.count(target) == 1, f"{staging} is not read once: {merge}"
    return merge.replace(target, source + "\n")


async def _column_types(conn: Connection) -> dict[str, dict[str, str]]:
    """Every written table's columns and their SQL types (an array's type for unnest)."""
    types: dict[str, dict[str, str]] = {}
    for r in await conn.fetch(
        """SELECT attrelid::regclass::text AS tbl, attname, format_type(atttypid, atttypmod) AS t
             FROM pg_attribute
            WHERE attrelid = ANY($1::text[]::regclass[]) AND attnum > 0 AND NOT attisdropped""",
        [table for _, table, _, _ in _TABLES],
    ):
        types.setdefault(r["tbl"], {})[r["attname"]] = r["t"]
    return types


def _as_json(row: Row) -> str:
    """A row as JSON text that any row can become (repr, so even a NUL character is kept)."""
    return json.dumps({name.rstrip("_"): repr(value) for name, value in row._asdict().items()})


def _staging_table(staging: str, like: str) -> str:
    return (
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {like} INCLUDING DEFAULTS) "
        "ON COMMIT DELETE ROWS"
    )


async def _copy(conn: Connection, staging: str, rows: Sequence[Row]) -> None:
    columns = [name.rstrip("_") for name in rows[0]._fields]
    await conn.copy_records_to_table(staging, records=rows, columns=columns)


async def _stage(
    conn: Connection, staging: str, like: str, rows: Sequence[Row], *, fresh: bool = False
) -> None:
    await conn.execute(_staging_table(staging, like))
    if fresh:
        await conn.execute(f"DELETE FROM {staging}")
    await _copy(conn, staging, rows)
