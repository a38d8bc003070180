"""KPI alerts and their lifecycle: open, acknowledged, resolved."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from hub.api import models
from hub.api.auth import (
    ALERT_ROLES,
    forbid_unless,
)
from hub.api.deps import NOT_FOUND, UNAUTHORIZED, UNREADABLE_BODY, Conn, Filter, Id, Who
from hub.management import queries

router = APIRouter()


@router.get(
    "/api/v1/alerts", response_model=list[models.Alert], responses=UNAUTHORIZED, tags=["alerts"]
)
async def alerts(
    conn: Conn,
    who: Who,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    demonstration_id: Filter = None,
    site_id: Filter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """KPI alerts, newest first: open -> acknowledged -> resolved (a recovery resolves).
    A partner sees its region's sites' alerts, a company its demonstrations'."""
    forbid_unless(who, *ALERT_ROLES)
    return await queries.alerts(
        conn, status, demonstration_id, site_id, limit, region=who.region, company=who.company
    )


@router.post(
    "/api/v1/alerts/{alert_id}/ack",
    response_model=models.Alert,
    responses={
        **NOT_FOUND,
        **UNAUTHORIZED,
        **UNREADABLE_BODY,
        409: {"model": models.ErrorBody, "description": "already resolved"},
    },
    tags=["alerts"],
)
async def acknowledge(
    conn: Conn, who: Who, alert_id: Id, body: models.AckRequest
) -> dict[str, Any]:
    """Acknowledge an open alert: who, and a note. Acknowledging twice is harmless.
    Operators only."""
    forbid_unless(who, "operator")
    row = await queries.acknowledge(conn, alert_id, body.by, body.note)
    if row is not None:
        return row
    current = await queries.alert(conn, alert_id)
    if current is None:
        raise HTTPException(404, f"alert {alert_id!r} does not exist")
    if current["status"] == "resolved":
        raise HTTPException(409, f"alert {alert_id!r} is already resolved")
    return current  # already acknowledged
