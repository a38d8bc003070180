"""Demonstrations, their KPI scorecards, and products of one technology side by side."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from hub.api import models
from hub.api.auth import COMPARE_ROLES, DEMONSTRATION_ROLES, forbid_unless
from hub.api.deps import NOT_FOUND, UNAUTHORIZED, Conn, Id, Who
from hub.db import Connection
from hub.management import queries, scope
from hub.management.scorecard import UnknownDemonstration, build_scorecard
from hub.tokens import Principal

router = APIRouter()


async def visible_demonstration(
    conn: Connection, who: Principal, demonstration_id: str
) -> dict[str, Any]:
    """The demonstration if the caller may read it (``hub.management.scope``), else 404, as for
    no such demonstration."""
    forbid_unless(who, *DEMONSTRATION_ROLES)
    demo = await scope.visible_demonstration(conn, who, demonstration_id)
    if demo is None:
        raise HTTPException(404, f"no demonstration {demonstration_id!r}")
    return demo


@router.get(
    "/api/v1/demonstrations",
    response_model=list[models.DemonstrationSummary],
    responses=UNAUTHORIZED,
    tags=["demonstrations"],
)
async def demonstrations(conn: Conn, who: Who) -> list[dict[str, Any]]:
    """Every demonstration with its KPI windows of the last 24 hours, most failing first (a
    company: its own; a partner: those running in its region, counted over its sites)."""
    forbid_unless(who, *DEMONSTRATION_ROLES)
    return await queries.demonstrations(conn, who.company, who.region)


@router.get(
    "/api/v1/demonstrations/{demonstration_id}/scorecard",
    response_model=models.Scorecard,
    responses={**NOT_FOUND, **UNAUTHORIZED},
    tags=["demonstrations"],
)
async def scorecard(conn: Conn, who: Who, demonstration_id: Id) -> models.Scorecard:
    """Per KPI: windows judged, passed, failed, pass rate and the latest status (a partner:
    over its region's sites only, and `region` says so)."""
    await visible_demonstration(conn, who, demonstration_id)
    try:
        return await build_scorecard(conn, demonstration_id, who.region)
    except UnknownDemonstration as error:
        raise HTTPException(404, str(error)) from None


@router.get(
    "/api/v1/compare",
    response_model=models.Comparison,
    responses={**NOT_FOUND, **UNAUTHORIZED},
    tags=["demonstrations"],
)
async def compare(
    conn: Conn,
    who: Who,
    technology: Annotated[
        str,
        Query(
            min_length=1,
            max_length=128,
            pattern=models.NO_NUL,
            description="a technology of the registry, e.g. traffic_hazard_detection",
        ),
    ],
) -> dict[str, Any]:
    """The demonstrations of one technology side by side: period, sites, each KPI's definition
    and pass rate, and the evidence pack's SHA-256 once it has ended (procurement, operators)."""
    forbid_unless(who, *COMPARE_ROLES)
    rows = await queries.comparison(conn, technology)
    if not rows:
        known = ", ".join(await queries.technologies(conn))
        raise HTTPException(404, f"no demonstration of technology {technology!r}; known: {known}")
    return {"technology": technology, "demonstrations": rows}
