"""Demonstrations and their KPI scorecards."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from hub.api import models
from hub.api.auth import (
    DEMONSTRATION_ROLES,
    forbid_unless,
)
from hub.api.deps import NOT_FOUND, UNAUTHORIZED, Conn, Id, Who
from hub.management import queries
from hub.management.scorecard import UnknownDemonstration, build_scorecard

router = APIRouter()


@router.get(
    "/api/v1/demonstrations",
    response_model=list[models.DemonstrationSummary],
    responses=UNAUTHORIZED,
    tags=["demonstrations"],
)
async def demonstrations(conn: Conn, who: Who) -> list[dict[str, Any]]:
    """Every demonstration (a company: its own) with its KPI windows of the last 24 hours,
    most failing first."""
    forbid_unless(who, *DEMONSTRATION_ROLES)
    return await queries.demonstrations(conn, who.company)


@router.get(
    "/api/v1/demonstrations/{demonstration_id}/scorecard",
    response_model=models.Scorecard,
    responses={**NOT_FOUND, **UNAUTHORIZED},
    tags=["demonstrations"],
)
async def scorecard(conn: Conn, who: Who, demonstration_id: Id) -> models.Scorecard:
    """Per KPI: windows judged, passed, failed, pass rate and the latest status."""
    forbid_unless(who, *DEMONSTRATION_ROLES)
    if who.company is not None:
        demo = await queries.demonstration(conn, demonstration_id)
        if demo is None or demo["company"] != who.company:
            raise HTTPException(404, f"no demonstration {demonstration_id!r}")
    try:
        return await build_scorecard(conn, demonstration_id)
    except UnknownDemonstration as error:
        raise HTTPException(404, str(error)) from None
