"""Looking back: a site's aggregates and a demonstration's judged KPI windows over a time range,
and the aggregates as a streamed CSV export. Scoped like every other endpoint; ranges bounded
(``hub.management.history.LIMITS``), with a 422 naming the parameter beyond them."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from hub.api import models
from hub.api.deps import NOT_FOUND, UNAUTHORIZED, Conn, Filter, Id, Who
from hub.api.routes.demonstrations import visible_demonstration
from hub.api.routes.sites import visible_site
from hub.db import Connection
from hub.management import history
from hub.management.history import RangeError, Step, TimeRange
from hub.tokens import Principal

router = APIRouter()
# CSV exports streaming at once (each holds a connection of the export pool while it streams);
# one more answers 429 with Retry-After.
EXPORTS_AT_ONCE: Final = 2

From = Annotated[
    datetime | None,
    Query(alias="from", description="start, ISO 8601 with a time zone (default: `to` - 24 h)"),
]
To = Annotated[
    datetime | None, Query(alias="to", description="end, exclusive, ISO 8601 (default: now)")
]
StepParam = Annotated[Step, Query(description="`1m` (minute windows) or `1h` (hours)")]
BAD_RANGE: dict[int | str, dict[str, Any]] = {
    422: {"description": "a malformed parameter, or a range longer than allowed"}
}


def bad_query(field: str, message: str) -> RequestValidationError:
    """A 422 naming the query parameter, shaped like FastAPI's own."""
    return RequestValidationError(
        [{"loc": ["query", field], "msg": message, "type": "value_error"}]
    )


def span_of(start: datetime | None, end: datetime | None, limit: str) -> TimeRange:
    try:
        return history.resolve_range(start, end, limit, datetime.now(UTC))
    except RangeError as error:
        raise bad_query(error.field, str(error)) from None


async def checked_metric(
    conn: Connection, who: Principal, site_id: str, metric: str | None
) -> None:
    """A metric none of the site's demonstrations reports answers 422 naming those it has: a
    typo would otherwise read as a silent site."""
    if metric is None:
        return
    known = await history.site_metrics(conn, site_id, who.company)
    if metric not in known:
        raise bad_query(
            "metric",
            f"site {site_id} reports no metric {metric!r}; "
            f"it reports: {', '.join(known) or 'none'}",
        )


@router.get(
    "/api/v1/sites/{site_id}/aggregates",
    response_model=list[models.Aggregate],
    responses={**NOT_FOUND, **UNAUTHORIZED, **BAD_RANGE},
    tags=["history"],
)
async def site_aggregates(
    conn: Conn,
    who: Who,
    site_id: Id,
    metric: Filter = None,
    start: From = None,
    end: To = None,
    step: StepParam = "1m",
) -> list[dict[str, Any]]:
    """A site's windows over a time range, per demonstration (a company: its own), oldest
    first: minute windows for up to 7 days, hours (no percentiles) for up to 400."""
    await visible_site(conn, who, site_id)
    span = span_of(start, end, step)
    await checked_metric(conn, who, site_id, metric)
    query = history.AggregatesQuery(site_id, metric, span, step, who.company)
    return await history.site_aggregates(conn, query)


@router.get(
    "/api/v1/demonstrations/{demonstration_id}/kpi-results",
    response_model=list[models.KpiResult],
    responses={**NOT_FOUND, **UNAUTHORIZED, **BAD_RANGE},
    tags=["history"],
)
async def kpi_results(
    conn: Conn,
    who: Who,
    demonstration_id: Id,
    start: From = None,
    end: To = None,
    site_id: Filter = None,
    kpi_id: Filter = None,
    limit: Annotated[
        int, Query(ge=1, le=history.KPI_RESULTS_MAX_LIMIT, description="most rows answered")
    ] = history.KPI_RESULTS_LIMIT,
) -> list[dict[str, Any]]:
    """A demonstration's judged KPI windows that started in the range (at most 31 days), oldest
    first (a partner: at its region's sites). More than ``limit`` answers 422 rather than a
    silently cut list."""
    await visible_demonstration(conn, who, demonstration_id)
    span = span_of(start, end, "kpi-results")
    rows = await history.kpi_results(
        conn, demonstration_id, span, site_id, kpi_id, limit, region=who.region
    )
    if len(rows) > limit:
        raise bad_query(
            "limit",
            f"more than {limit} judged windows in this range: narrow from/to, filter by site_id "
            f"or kpi_id, or raise limit (at most {history.KPI_RESULTS_MAX_LIMIT})",
        )
    return rows


@router.get(
    "/api/v1/export/site-aggregates",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "one line a window, with a header"},
        **NOT_FOUND,
        **UNAUTHORIZED,
        **BAD_RANGE,
        429: {"description": "as many exports are streaming as the hub runs at once"},
    },
    tags=["history"],
)
async def export_site_aggregates(
    request: Request,
    conn: Conn,
    who: Who,
    site_id: Annotated[str, Query(min_length=1, max_length=128, pattern=models.NO_NUL)],
    metric: Filter = None,
    start: From = None,
    end: To = None,
    step: StepParam = "1m",
    format: Literal["csv"] = "csv",  # the only one; the contract names it
) -> StreamingResponse:
    """The rows of `/api/v1/sites/{site_id}/aggregates` as CSV, streamed (minutes for up to 31
    days, hours for up to 400), for spreadsheets and procurement files."""
    await visible_site(conn, who, site_id)
    span = span_of(start, end, f"export-{step}")
    await checked_metric(conn, who, site_id, metric)
    busy(request)
    rows = csv_lines(request, history.AggregatesQuery(site_id, metric, span, step, who.company))
    name = f"{site_id}-{metric or 'all'}-{span.start:%Y%m%dT%H%M}-{span.end:%Y%m%dT%H%M}.csv"
    return StreamingResponse(
        rows,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/api/v1/export/demonstrations/{demonstration_id}/aggregates",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "one line a window, with a header"},
        **NOT_FOUND,
        **UNAUTHORIZED,
        **BAD_RANGE,
        429: {"description": "as many exports are streaming as the hub runs at once"},
    },
    tags=["history"],
)
async def export_demonstration_aggregates(
    request: Request,
    conn: Conn,
    who: Who,
    demonstration_id: Id,
    metric: Filter = None,
    start: From = None,
    end: To = None,
    step: StepParam = "1m",
) -> StreamingResponse:
    """A whole demonstration's windows as one CSV, streamed oldest first (minutes for up to 7
    days, hours for up to 400; a partner: at its region's sites). Ask with `Accept-Encoding:
    gzip` for it compressed."""
    await visible_demonstration(conn, who, demonstration_id)
    span = span_of(start, end, f"export-demonstration-{step}")
    busy(request)
    query = history.DemonstrationAggregatesQuery(demonstration_id, metric, span, step, who.region)
    name = (
        f"{demonstration_id}-{metric or 'all'}-{span.start:%Y%m%dT%H%M}-{span.end:%Y%m%dT%H%M}.csv"
    )
    return StreamingResponse(
        csv_lines(request, query),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def busy(request: Request) -> None:
    """429 when every connection of the export pool is streaming an export."""
    pool = request.app.state.export_pool
    if pool.get_size() >= EXPORTS_AT_ONCE and pool.get_idle_size() == 0:
        raise HTTPException(
            429,
            f"{EXPORTS_AT_ONCE} exports are streaming already; try again in a minute",
            headers={"Retry-After": "60"},
        )


async def csv_lines(request: Request, query: history.Query) -> AsyncIterator[str]:
    """A header, then the rows in chunks, from a connection of the export pool: the request's
    goes back to the main pool when the handler returns, before the body is sent, and however
    many exports stream, they never hold the main pool's connections."""
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(history.EXPORT_COLUMNS)
    pool = request.app.state.export_pool
    async with pool.acquire(timeout=30) as conn, conn.transaction():
        n = 0
        async for row in history.stream_site_aggregates(conn, query):
            out.writerow(
                [
                    row["bucket"].isoformat() if k == "bucket" else _cell(row[k])
                    for k in history.EXPORT_COLUMNS
                ]
            )
            n += 1
            if n % 1000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


def _cell(value: object) -> object:
    return "" if value is None else value
