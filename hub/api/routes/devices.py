"""A company's own devices and its rejected records: why its records are refused, without
asking an operator. Operators read every company's; partners and procurement neither."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from hub.api import models
from hub.api.auth import forbid_unless
from hub.api.deps import NOT_FOUND, UNAUTHORIZED, Conn, Filter, Who
from hub.api.routes.demonstrations import visible_demonstration
from hub.api.routes.history import BAD_RANGE, From, To, bad_query, span_of
from hub.management import devices
from hub.management.scope import SELF_SERVICE_ROLES
from hub.telemetry import Reason

router = APIRouter()


@router.get(
    "/api/v1/devices",
    response_model=list[models.DeviceActivity],
    responses={**NOT_FOUND, **UNAUTHORIZED},
    tags=["self-service"],
)
async def device_activity(
    conn: Conn, who: Who, demonstration_id: Filter = None
) -> list[dict[str, Any]]:
    """Each device (a company: its own), its site, when its newest counted record was made, and
    its records accepted and rejected today (Korean day), by reason. A record is counted when
    its minute's windows close, the allowed lateness after the minute."""
    forbid_unless(who, *SELF_SERVICE_ROLES)
    if demonstration_id is not None:
        await visible_demonstration(conn, who, demonstration_id)
    since = devices.today_kst(datetime.now(UTC))
    return await devices.devices(conn, who.company, demonstration_id, since)


@router.get(
    "/api/v1/rejections",
    response_model=list[models.Rejection],
    responses={**UNAUTHORIZED, **BAD_RANGE},
    tags=["self-service"],
)
async def rejections(
    conn: Conn,
    who: Who,
    start: From = None,
    end: To = None,
    reason: Annotated[
        Reason | None, Query(description="one of the DLQ's reasons (the DLQ record schema)")
    ] = None,
    device_id: Filter = None,
    limit: Annotated[
        int, Query(ge=1, le=devices.REJECTIONS_MAX_LIMIT, description="most rows answered")
    ] = devices.REJECTIONS_LIMIT,
) -> list[dict[str, Any]]:
    """Rejected records naming the caller's devices (a company sees its own only; an operator
    every one), newest first, over at most 31 days: when, which device, the reason and its
    detail. The records' bytes stay in the DLQ. More than ``limit`` answers 422."""
    forbid_unless(who, *SELF_SERVICE_ROLES)
    span = span_of(start, end, "rejections")
    rows = await devices.rejections(
        conn, who.company, span, None if reason is None else reason.value, device_id, limit
    )
    if len(rows) > limit:
        raise bad_query(
            "limit",
            f"more than {limit} rejections in this range: narrow from/to, filter by reason or "
            f"device_id, or raise limit (at most {devices.REJECTIONS_MAX_LIMIT})",
        )
    return rows
