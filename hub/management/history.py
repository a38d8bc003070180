"""Looking back: a site's aggregates and a demonstration's judged KPI windows over a time range,
and the same aggregates as rows for a CSV export.

Ranges are bounded per resolution (``LIMITS``) so that one request never reads more than a
few tens of thousands of rows; the bounds and their check are pure. ``step=1h`` reads the hourly
roll-up only where the minute rows are gone (past their retention): within it the hour is summed
from the minute rows, so an hour not rolled up yet is complete too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from hub.db import Connection
from hub.management import queries

Step = Literal["1m", "1h"]
Row = dict[str, Any]

DEFAULT_SPAN: Final = timedelta(hours=24)
# The longest range a request may ask for: a week of minutes (10,080 rows a metric), the hourly
# roll-up's retention in hours, a month of judged KPI windows (capped in rows besides).
LIMITS: Final[dict[str, timedelta]] = {
    "1m": timedelta(days=7),
    "1h": timedelta(days=400),
    "kpi-results": timedelta(days=31),
    "rejections": timedelta(days=31),
    "export-1m": timedelta(days=31),
    "export-1h": timedelta(days=400),
    # A whole demonstration: DEMO-001's 596 sites make ~5 million minute rows a day.
    "export-demonstration-1m": timedelta(days=7),
    "export-demonstration-1h": timedelta(days=400),
}
KPI_RESULTS_LIMIT: Final = 10_000
# Answered as one JSON list: larger ranges are narrowed (or exported), not built in memory.
KPI_RESULTS_MAX_LIMIT: Final = 10_000
EXPORT_COLUMNS: Final = (
    "site_id",
    "demonstration_id",
    "metric",
    "bucket",
    "count",
    "sum",
    "min",
    "max",
    "mean",
    "p50",
    "p95",
    "p99",
)


class RangeError(ValueError):
    """A range the API refuses (422), naming the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime


def resolve_range(
    start: datetime | None, end: datetime | None, limit: str, now: datetime
) -> TimeRange:
    """``from``/``to`` as given, or the last 24 hours up to ``to`` (or now); both must carry a
    time zone, ``from`` must come first, and the span may not exceed ``LIMITS[limit]``."""
    for field, value in (("from", start), ("to", end)):
        if value is not None and value.utcoffset() is None:
            raise RangeError(field, "give a time zone (e.g. 2026-11-30T09:00:00+09:00 or ...Z)")
    end = end or now
    if start is None:
        try:
            start = end - DEFAULT_SPAN
        except OverflowError:  # 'to' within a day of year 1
            raise RangeError("to", "'to' is before the first day there can be data") from None
    if start >= end:
        raise RangeError("from", "'from' must be before 'to'")
    longest = LIMITS[limit]
    if end - start > longest:
        raise RangeError(
            "from",
            f"at most {_days(longest)} at a time here ({end - start} asked): narrow from/to"
            + (" or use step=1h" if limit == "1m" else ""),
        )
    return TimeRange(start, end)


def _days(span: timedelta) -> str:
    return f"{span.days} days" if span.days != 1 else "1 day"


_COMPANY = (
    "($5::text IS NULL OR demonstration_id IN "
    "(SELECT demonstration_id FROM demonstrations WHERE company = $5))"
)
# A site's rows (a company: its demonstrations'), or a demonstration's (a partner: at its
# region's sites): $1 the site or demonstration, $5 the company or region.
_OF_SITE = f"site_id = $1 AND {_COMPANY}"
_OF_DEMONSTRATION = f"demonstration_id = $1 AND {queries.in_region('site_id', '$5')}"


def _minutes(scope: str, order: str) -> str:
    return f"""
SELECT site_id, demonstration_id, metric, bucket, count, sum, min, max, sum / count AS mean,
       p50, p95, p99
  FROM site_aggregates
 WHERE {scope} AND ($2::text IS NULL OR metric = $2) AND bucket >= $3 AND bucket < $4
 ORDER BY {order}"""


def _hours(key: str, scope: str, order: str) -> str:
    """Hours from the minute rows where they still exist, from the roll-up before the first of
    them (whose p95 is its highest minute's)."""
    return f"""
WITH cut AS (
    SELECT coalesce(time_bucket('1 hour', min(bucket)), 'infinity') AS at
      FROM site_aggregates WHERE {key} = $1
)
SELECT site_id, demonstration_id, metric, bucket, count, sum, min, max, sum / count AS mean,
       NULL::float8 AS p50, p95_max AS p95, NULL::float8 AS p99
  FROM site_aggregates_hourly, cut
 WHERE {scope} AND ($2::text IS NULL OR metric = $2) AND bucket >= $3 AND bucket < $4
   AND bucket < cut.at
UNION ALL
SELECT site_id, demonstration_id, metric, time_bucket('1 hour', bucket) AS bucket,
       sum(count)::bigint, sum(sum), min(min), max(max), sum(sum) / sum(count),
       NULL::float8, max(p95), NULL::float8
  FROM site_aggregates
 WHERE {scope} AND ($2::text IS NULL OR metric = $2) AND bucket >= $3 AND bucket < $4
 GROUP BY site_id, demonstration_id, metric, time_bucket('1 hour', bucket)
 ORDER BY {order}"""


_SITE_ORDER = "demonstration_id, metric, bucket"
_DEMONSTRATION_ORDER = "bucket, site_id, metric"
_SQL: Final[dict[tuple[bool, Step], str]] = {
    (False, "1m"): _minutes(_OF_SITE, _SITE_ORDER),
    (False, "1h"): _hours("site_id", _OF_SITE, _SITE_ORDER),
    (True, "1m"): _minutes(_OF_DEMONSTRATION, _DEMONSTRATION_ORDER),
    (True, "1h"): _hours("demonstration_id", _OF_DEMONSTRATION, _DEMONSTRATION_ORDER),
}


@dataclass(frozen=True, slots=True)
class AggregatesQuery:
    """One site's aggregates over a range (a company: its demonstrations' rows): what the
    history endpoint and the site export read."""

    site_id: str
    metric: str | None  # None: every metric
    span: TimeRange
    step: Step
    company: str | None  # a company token's company: its demonstrations' rows only

    def sql(self) -> tuple[str, tuple[object, ...]]:
        return _SQL[(False, self.step)], (
            self.site_id,
            self.metric,
            self.span.start,
            self.span.end,
            self.company,
        )


@dataclass(frozen=True, slots=True)
class DemonstrationAggregatesQuery:
    """A whole demonstration's aggregates over a range, oldest first (a partner: at its region's
    sites): the demonstration export."""

    demonstration_id: str
    metric: str | None
    span: TimeRange
    step: Step
    region: str | None

    def sql(self) -> tuple[str, tuple[object, ...]]:
        return _SQL[(True, self.step)], (
            self.demonstration_id,
            self.metric,
            self.span.start,
            self.span.end,
            self.region,
        )


Query = AggregatesQuery | DemonstrationAggregatesQuery


async def site_aggregates(conn: Connection, query: Query) -> list[Row]:
    text, args = query.sql()
    return [dict(r) for r in await conn.fetch(text, *args)]


async def stream_site_aggregates(
    conn: Connection, query: Query, prefetch: int = 2000
) -> AsyncIterator[Row]:
    """The same rows through a server-side cursor: an export of any length in bounded memory.
    The caller holds ``conn`` in a transaction (cursors need one)."""
    text, args = query.sql()
    async for record in conn.cursor(text, *args, prefetch=prefetch):
        yield dict(record)


async def site_metrics(conn: Connection, site_id: str, company: str | None) -> list[str]:
    """The metrics the site's demonstrations (a company: its own) declare: the only ones intake
    accepts, so the only ones a history can hold."""
    rows = await conn.fetch(
        """SELECT DISTINCT unnest(d.metrics) AS metric
             FROM devices v JOIN demonstrations d USING (demonstration_id)
            WHERE v.site_id = $1 AND ($2::text IS NULL OR d.company = $2)
            ORDER BY 1""",
        site_id,
        company,
    )
    return [r["metric"] for r in rows]


async def kpi_results(
    conn: Connection,
    demonstration_id: str,
    span: TimeRange,
    site_id: str | None,
    kpi_id: str | None,
    limit: int,
    *,
    region: str | None = None,
) -> list[Row]:
    """Judged windows that started in the range (at the region's sites, when given), oldest
    first; ``limit + 1`` rows at most, so the caller can tell a full answer from a cut one."""
    rows = await conn.fetch(
        f"""SELECT window_start, window_end, site_id, kpi_id, value, threshold, status, samples,
                  attributable
             FROM kpi_results
            WHERE demonstration_id = $1 AND window_start >= $2 AND window_start < $3
              AND ($4::text IS NULL OR site_id = $4) AND ($5::text IS NULL OR kpi_id = $5)
              AND {queries.in_region("site_id", "$7")}
            ORDER BY window_start, site_id, kpi_id
            LIMIT $6""",
        demonstration_id,
        span.start,
        span.end,
        site_id,
        kpi_id,
        limit + 1,
        region,
    )
    return [dict(r) for r in rows]
