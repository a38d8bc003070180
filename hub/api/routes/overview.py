"""The overview per region and district."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from hub import regions
from hub.api import models
from hub.api.auth import (
    OVERVIEW_ROLES,
    forbid_unless,
)
from hub.api.deps import NOT_FOUND, UNAUTHORIZED, Conn, Who
from hub.management import queries

router = APIRouter()


@router.get(
    "/api/v1/overview",
    response_model=list[models.OverviewRow],
    responses={**UNAUTHORIZED, **NOT_FOUND},
    tags=["overview"],
)
async def overview(
    conn: Conn,
    who: Who,
    region: Annotated[
        str | None,
        Query(pattern=r"^[a-z][a-z0-9]{1,31}$", description="a region's code (hub regions list)"),
    ] = None,
) -> list[dict[str, Any]]:
    """The management_overview rows, one per region and district (a partner: its region's)."""
    forbid_unless(who, *OVERVIEW_ROLES)
    if who.region and region not in (None, who.region):
        raise HTTPException(403, f"a {who.label} token reads {who.region} only")
    if region is not None and not await regions.exists(conn, region):
        known = ", ".join(await regions.codes(conn))
        raise HTTPException(404, f"no region {region!r}; regions: {known}")
    return await queries.overview(conn, who.region or region)
