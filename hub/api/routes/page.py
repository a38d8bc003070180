"""The web page at ``/``, and the session cookie it signs in with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from hub.api import models
from hub.api.auth import (
    ALERT_ROLES,
    COMPARE_ROLES,
    COOKIE,
    OVERVIEW_ROLES,
    identify,
    presented,
)
from hub.api.deps import UNAUTHORIZED, UNREADABLE_BODY, Conn
from hub.api.page import View, render_login, render_main, render_page
from hub.db import Connection
from hub.management import devices, queries
from hub.tokens import Principal

router = APIRouter()


@router.post(
    "/api/v1/session",
    status_code=204,
    responses={**UNAUTHORIZED, **UNREADABLE_BODY},
    tags=["access"],
)
async def session(conn: Conn, request: Request, body: models.SessionRequest) -> Response:
    """Trade a token for the web page's cookie (HTTP-only, same-site, 12 hours)."""
    await identify(conn, body.token)
    response = Response(status_code=204)
    response.set_cookie(
        COOKIE,
        body.token,
        max_age=12 * 3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(conn: Conn, request: Request, part: Literal["main"] | None = None) -> HTMLResponse:
    try:
        who = await identify(conn, presented(request))
    except HTTPException:
        return HTMLResponse(render_login(), status_code=401)
    main = render_main(await view_of(conn, who))
    return HTMLResponse(main if part == "main" else render_page(main))


async def view_of(conn: Connection, who: Principal) -> View:
    """What this caller's page shows, read with the same scoping as the API's routes."""
    alerts = who.role in ALERT_ROLES
    now = datetime.now(UTC)
    today = devices.today_kst(now)
    return View(
        label=who.label,
        overview=await queries.overview(conn, who.region) if who.role in OVERVIEW_ROLES else None,
        demonstrations=await queries.demonstrations(conn, who.company, who.region),
        alerts=(
            await queries.alerts(
                conn, "open", None, None, 20, region=who.region, company=who.company
            )
            if alerts
            else None
        ),
        open_alerts=(
            await queries.open_alert_count(conn, region=who.region, company=who.company)
            if alerts
            else 0
        ),
        generated_at=now,
        devices=(await devices.devices(conn, who.company, None, today) if who.company else None),
        rejected=(
            await devices.rejected_by_reason(conn, who.company, today) if who.company else None
        ),
        compare=await queries.by_technology(conn) if who.role in COMPARE_ROLES else None,
    )
