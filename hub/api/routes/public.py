"""The public page and its data, open to anyone: what is demonstrated where, by whom, and how
it is doing day by day. Answered from one query at most every 30 s, whatever the request rate:
an open page must not let anyone load the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from hub.api import models
from hub.api.public import Lang, localise, render_public
from hub.management.public import PUBLIC_DAYS, public_summary

router = APIRouter()
# How long the public answer is served from its last query.
PUBLIC_FRESH_S: Final = 30.0
LangParam = Annotated[Lang, Query(description="ko (default) or en")]


class PublicSummary:
    """The summary's rows, fetched by one request at a time and kept ``fresh_s``."""

    def __init__(self, fresh_s: float = PUBLIC_FRESH_S) -> None:
        self.fresh_s = fresh_s
        self.rows: list[dict[str, Any]] = []
        self.at = -float("inf")
        self.fetched = datetime.now(UTC)
        self.lock = asyncio.Lock()

    async def get(
        self, pool: asyncpg.Pool, counted: Callable[[], None]
    ) -> tuple[list[dict[str, Any]], datetime]:
        async with self.lock:
            if time.monotonic() - self.at >= self.fresh_s:
                counted()
                async with pool.acquire(timeout=10) as conn:
                    self.rows = await public_summary(conn)
                self.at = time.monotonic()
                self.fetched = datetime.now(UTC)
            return self.rows, self.fetched


async def summary_of(request: Request, lang: Lang) -> dict[str, Any]:
    state = request.app.state
    rows, fetched = await state.public.get(state.pool, state.metrics.public_queries.inc)
    return localise(rows, lang, fetched, PUBLIC_DAYS)


@router.get(
    "/api/v1/public/summary",
    response_model=models.PublicSummary,
    tags=["public"],
)
async def public_summary_route(request: Request, lang: LangParam = "ko") -> dict[str, Any]:
    """No token: every approved demonstration (company, title, technology, districts, period,
    status, sites) and its daily share of KPI windows passed over the last 7 Korean days. No
    raw value, site id or alert. Korean by default, `?lang=en` for English; times in KST."""
    return await summary_of(request, lang)


@router.get("/public", response_class=HTMLResponse, include_in_schema=False)
async def public_page(request: Request, lang: LangParam = "ko") -> HTMLResponse:
    return HTMLResponse(render_public(await summary_of(request, lang)))
