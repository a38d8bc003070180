"""The management API (ASGI, FastAPI): the contract's endpoints, their OpenAPI document, the page.

Assembled here from the routers in ``hub.api.routes``; the SQL is ``hub.management.queries``.
Bad ids answer 404, bad parameters 422, both as JSON; a database that does not answer gives 503
with the reason, never a 500. The pool is opened (and the schema migrated) at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry

from hub.api.deps import only_known_query
from hub.api.limits import BodyGuard
from hub.api.routes import (
    alerts,
    demonstrations,
    devices,
    history,
    operations,
    overview,
    page,
    programme,
    public,
    sites,
)
from hub.db import create_pool
from hub.db.migrate import migrate
from hub.metrics import api_metrics
from hub.settings import Settings
from hub.upkeep import run_upkeep

log = logging.getLogger(__name__)

ROUTERS = (
    overview,
    sites,
    history,
    demonstrations,
    programme,
    devices,
    alerts,
    operations,
    page,
    public,
)


def create_api(settings: Settings, registry: CollectorRegistry | None = None) -> FastAPI:
    registry = registry or CollectorRegistry()
    metrics = api_metrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings, min_size=1, max_size=8)
        async with pool.acquire() as conn:
            for name in await migrate(conn):
                log.info("applied migration %s", name)
        app.state.pool = pool
        # Exports stream for minutes: they get connections of their own, so that however many
        # run, every other caller still finds one in the main pool.
        app.state.export_pool = await create_pool(
            settings, min_size=0, max_size=history.EXPORTS_AT_ONCE
        )
        upkeep = asyncio.create_task(_upkeep_loop(pool, settings))
        try:
            yield
        finally:
            upkeep.cancel()
            with suppress(asyncio.CancelledError):
                await upkeep
            await app.state.export_pool.close()
            await pool.close()

    api = FastAPI(
        title="Testbed Telemetry Hub: management API",
        version="1.0.0",
        description="The super-regional management view of the Gwangju / South Jeolla AI "
        "testbed: overview per region and district, sites, demonstration scorecards and KPI "
        "alerts. Unknown ids answer 404, malformed parameters 422.",
        lifespan=lifespan,
        dependencies=[Depends(only_known_query)],
    )
    api.state.settings = settings
    api.state.metrics = metrics
    api.state.registry = registry
    api.state.health = operations.Health()
    api.state.public = public.PublicSummary()
    api.add_exception_handler(asyncpg.DataError, bad_value)
    for unavailable in (asyncpg.PostgresError, OSError, TimeoutError):
        api.add_exception_handler(unavailable, database_unavailable)
    api.middleware("http")(count_requests)
    api.add_middleware(BodyGuard)
    # Exports and long lists compress well (a demonstration's CSV by a tenth): for clients
    # that ask, with Accept-Encoding: gzip.
    api.add_middleware(GZipMiddleware, minimum_size=4096)
    for module in ROUTERS:
        api.include_router(module.router)
    return api


async def bad_value(request: Request, error: Exception) -> JSONResponse:
    # SQLSTATE class 22: a value the database cannot take (validation should have caught it).
    log.warning("data error on %s: %s", request.url.path, error)
    detail = [
        {
            "loc": ["request"],
            "msg": f"the database cannot take it: {error}",
            "type": "value_error",
        }
    ]
    return JSONResponse({"detail": detail}, 422)


async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("database error on %s: %s", request.url.path, error)
    return JSONResponse(
        {"detail": f"the database did not answer ({type(error).__name__})"}, status_code=503
    )


async def count_requests(request: Request, call_next: Any) -> Response:
    started = asyncio.get_running_loop().time()
    response: Response = await call_next(request)
    # The route template, not the URL: ids must not become label values.
    path = getattr(request.scope.get("route"), "path", "unmatched")
    metrics = request.app.state.metrics
    metrics.requests.labels(path, str(response.status_code)).inc()
    metrics.seconds.labels(path).observe(asyncio.get_running_loop().time() - started)
    return response


async def _upkeep_loop(pool: asyncpg.Pool, settings: Settings) -> None:
    """Roll-up and retention on a schedule (TimescaleDB's Apache build has no policy jobs)."""
    while True:
        try:
            async with pool.acquire() as conn:
                report = await run_upkeep(conn, settings)
            log.info(report.summary())
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            log.warning("upkeep failed (%s); next try in %.0f s", error, settings.upkeep_interval_s)
        await asyncio.sleep(settings.upkeep_interval_s)
