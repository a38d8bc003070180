"""A site: its devices, newest aggregates and KPI statuses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from hub.api import models
from hub.api.deps import NOT_FOUND, UNAUTHORIZED, Conn, Id, Who
from hub.db import Connection
from hub.management import queries
from hub.tokens import Principal

router = APIRouter()


@router.get(
    "/api/v1/sites/{site_id}",
    response_model=models.Site,
    responses={**NOT_FOUND, **UNAUTHORIZED},
    tags=["sites"],
)
async def site(conn: Conn, who: Who, site_id: Id) -> dict[str, Any]:
    """The site, its devices, its newest aggregate per metric and newest status per KPI
    (a company: its own demonstrations' devices and KPIs)."""
    row = await visible_site(conn, who, site_id)
    company = who.company
    return {
        **row,
        "devices": await queries.site_devices(conn, site_id, company),
        "latest_aggregates": await queries.latest_aggregates(conn, site_id, company),
        "kpi_statuses": await queries.latest_kpi_statuses(conn, site_id, company),
    }


async def visible_site(conn: Connection, who: Principal, site_id: str) -> dict[str, Any]:
    """The site, if the caller may see it: an operator any, a partner its region's, a company
    those hosting one of its devices. Otherwise 404, the same answer as for no such site, so
    that ids are not revealed."""
    row = await queries.site(conn, site_id)
    company = who.company
    visible = row is not None and (
        who.role == "operator"
        or row["region"] == who.region
        or (company is not None and await queries.site_hosts_company(conn, site_id, company))
    )
    if row is None or not visible:
        raise HTTPException(404, f"site {site_id!r} is not in the registry")
    return row
