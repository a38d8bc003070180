"""The web page at ``/``, and the session cookie it signs in with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from hub.api import models
from hub.api.auth import (
    COOKIE,
    DEMONSTRATION_ROLES,
    OVERVIEW_ROLES,
    identify,
    presented,
)
from hub.api.deps import UNAUTHORIZED, UNREADABLE_BODY, Conn
from hub.api.page import render_login, render_main, render_page
from hub.management import queries

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
    main = render_main(
        await queries.overview(conn, who.region) if who.role in OVERVIEW_ROLES else [],
        await queries.demonstrations(conn, who.company) if who.role in DEMONSTRATION_ROLES else [],
        await queries.alerts(conn, "open", None, None, 20, region=who.region, company=who.company),
        datetime.now(UTC),
    )
    return HTMLResponse(main if part == "main" else render_page(main))
