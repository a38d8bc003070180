"""The management API (ASGI, FastAPI): the contract's endpoints, their OpenAPI document, the page.

Bad ids answer 404, bad parameters 422, both as JSON; a database that does not answer gives 503
with the reason, never a 500. The pool is opened (and the schema migrated) at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from hub.api import models
from hub.api.auth import (
    COOKIE,
    DEMONSTRATION_ROLES,
    OVERVIEW_ROLES,
    forbid_unless,
    identify,
    presented,
)
from hub.api.page import render_login, render_main, render_page
from hub.db import create_pool
from hub.db.migrate import migrate
from hub.management import queries
from hub.management.scorecard import UnknownDemonstration, build_scorecard
from hub.metrics import process_metrics
from hub.settings import Settings
from hub.tokens import Principal
from hub.upkeep import run_upkeep

log = logging.getLogger("hub.api")

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": models.ErrorBody, "description": "unknown id"}
}
Id = Annotated[str, Path(min_length=1, max_length=128, pattern=models.NO_NUL)]
Filter = Annotated[str | None, Query(min_length=1, max_length=128, pattern=models.NO_NUL)]


async def connection(request: Request) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
    """One pooled connection per request (module level: FastAPI resolves it by name)."""
    async with request.app.state.pool.acquire(timeout=10) as conn:
        yield conn


Conn = Annotated[asyncpg.pool.PoolConnectionProxy, Depends(connection)]


# Documents the scheme in the OpenAPI document; the header is read by ``presented``, which also
# takes the web page's cookie.
BEARER = HTTPBearer(auto_error=False, description="a token from `hub access add-token`")


async def principal(
    request: Request, conn: Conn, _: Annotated[object, Depends(BEARER)] = None
) -> Principal:
    """The caller, from its bearer token (401 without a valid one)."""
    return await identify(conn, presented(request))


Who = Annotated[Principal, Depends(principal)]


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def only_known_query(request: Request) -> None:
    """A mistyped filter (``?regoin=``) answers 422 naming it, rather than everything unfiltered;
    so does a filter given twice (which one would count?)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.path.startswith("/api/"):
        return
    known = _query_names(route.dependant)
    expected = ", ".join(sorted(known)) or "none"
    errors = [
        {
            "loc": ["query", name],
            "msg": f"unknown query parameter; expected: {expected}",
            "type": "extra_forbidden",
        }
        for name in sorted(set(request.query_params) - known)
    ]
    errors += [
        {
            "loc": ["query", name],
            "msg": "given more than once; it takes one value",
            "type": "too_long",
        }
        for name in sorted(known)
        if len(request.query_params.getlist(name)) > 1
    ]
    if errors:
        raise RequestValidationError(errors)


UNREADABLE_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": models.ErrorBody, "description": "a body that cannot be read (not UTF-8)"}
}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": models.ErrorBody, "description": "no valid bearer token"},
    403: {"model": models.ErrorBody, "description": "not for this token's role"},
}


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "hub_api_requests", "API requests", ["route", "status"], registry=registry
        )
        self.seconds = Histogram(
            "hub_api_request_seconds", "API request time", ["route"], registry=registry
        )
        self.open_alerts = Gauge(
            "hub_open_alerts", "Open KPI alerts", ["demonstration"], registry=registry
        )
        self.db_up = Gauge("hub_api_database_up", "1 if the database answered", registry=registry)


def create_api(settings: Settings, registry: CollectorRegistry | None = None) -> FastAPI:
    registry = registry or CollectorRegistry()
    process_metrics(registry)
    metrics = ApiMetrics(registry)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings, min_size=1, max_size=8)
        async with pool.acquire() as conn:
            for name in await migrate(conn):
                log.info("applied migration %s", name)
        state["pool"] = app.state.pool = pool
        upkeep = asyncio.create_task(_upkeep_loop(pool, settings))
        try:
            yield
        finally:
            upkeep.cancel()
            with suppress(asyncio.CancelledError):
                await upkeep
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

    @api.exception_handler(asyncpg.DataError)
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

    @api.exception_handler(asyncpg.PostgresError)
    @api.exception_handler(OSError)
    @api.exception_handler(TimeoutError)
    async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
        log.warning("database error on %s: %s", request.url.path, error)
        return JSONResponse(
            {"detail": f"the database did not answer ({type(error).__name__})"}, status_code=503
        )

    @api.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        started = asyncio.get_running_loop().time()
        response: Response = await call_next(request)
        # The route template, not the URL: ids must not become label values.
        path = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.seconds.labels(path).observe(asyncio.get_running_loop().time() - started)
        return response

    @api.get(
        "/api/v1/overview",
        response_model=list[models.OverviewRow],
        responses=UNAUTHORIZED,
        tags=["overview"],
    )
    async def overview(
        conn: Conn, who: Who, region: Literal["gwangju", "jeonnam"] | None = None
    ) -> list[dict[str, Any]]:
        """The management_overview rows, one per region and district (a partner: its region's)."""
        forbid_unless(who, *OVERVIEW_ROLES)
        if who.region and region not in (None, who.region):
            raise HTTPException(403, f"a {who.label} token reads {who.region} only")
        return await queries.overview(conn, who.region or region)

    @api.get(
        "/api/v1/sites/{site_id}",
        response_model=models.Site,
        responses={**NOT_FOUND, **UNAUTHORIZED},
        tags=["sites"],
    )
    async def site(conn: Conn, who: Who, site_id: Id) -> dict[str, Any]:
        """The site, its devices, its newest aggregate per metric and newest status per KPI
        (a company: its own demonstrations' devices and KPIs)."""
        row = await queries.site(conn, site_id)
        company = who.company
        visible = row is not None and (
            who.role == "operator"
            or row["region"] == who.region
            or (company is not None and await queries.site_hosts_company(conn, site_id, company))
        )
        if row is None or not visible:
            # The same answer for a site of someone else as for no site: ids are not revealed.
            raise HTTPException(404, f"site {site_id!r} is not in the registry")
        return {
            **row,
            "devices": await queries.site_devices(conn, site_id, company),
            "latest_aggregates": await queries.latest_aggregates(conn, site_id, company),
            "kpi_statuses": await queries.latest_kpi_statuses(conn, site_id, company),
        }

    @api.get(
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

    @api.get(
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

    @api.get(
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
        return await queries.alerts(
            conn, status, demonstration_id, site_id, limit, region=who.region, company=who.company
        )

    @api.post(
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

    @api.get(
        "/healthz",
        response_model=models.Health,
        tags=["operations"],
        responses={503: {"model": models.Health, "description": "a dependency is down"}},
    )
    async def healthz() -> JSONResponse:
        """200 when Kafka and the database answer, 503 otherwise, saying which failed."""
        checks = {
            "database": await _check_database(state["pool"]),
            "kafka": await _check_kafka(settings),
        }
        metrics.db_up.set(1 if checks["database"] == "ok" else 0)
        ok = all(value == "ok" for value in checks.values())
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @api.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        with suppress(OSError, asyncpg.PostgresError, TimeoutError):
            async with state["pool"].acquire(timeout=2) as conn:
                rows = await conn.fetch(
                    "SELECT d.demonstration_id, count(a.alert_id) AS n FROM demonstrations d "
                    "LEFT JOIN kpi_alerts a ON a.demonstration_id = d.demonstration_id "
                    "AND a.status = 'open' GROUP BY 1"
                )
            for row in rows:
                metrics.open_alerts.labels(row["demonstration_id"]).set(row["n"])
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    @api.post(
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

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(
        conn: Conn, request: Request, part: Literal["main"] | None = None
    ) -> HTMLResponse:
        try:
            who = await identify(conn, presented(request))
        except HTTPException:
            return HTMLResponse(render_login(), status_code=401)
        main = render_main(
            await queries.overview(conn, who.region) if who.role in OVERVIEW_ROLES else [],
            await queries.demonstrations(conn, who.company)
            if who.role in DEMONSTRATION_ROLES
            else [],
            await queries.alerts(
                conn, "open", None, None, 20, region=who.region, company=who.company
            ),
            datetime.now(UTC),
        )
        return HTMLResponse(main if part == "main" else render_page(main))

    del overview, site, demonstrations, scorecard, alerts, acknowledge, healthz
    del prometheus_metrics, page, session, count, database_unavailable, bad_value
    return api


async def _check_database(pool: asyncpg.Pool) -> str:
    try:
        async with pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
        return f"error: {type(error).__name__}: {error}"
    return "ok"


async def _check_kafka(settings: Settings) -> str:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=2000)
    try:
        async with asyncio.timeout(3):
            await client.bootstrap()
    except Exception as error:  # any failure to talk to the broker is what health reports
        return f"error: {type(error).__name__}: {error}"
    finally:
        await client.close()
    return "ok"


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
