"""What probes and Prometheus read: ``/healthz`` and ``/metrics`` (open, no token)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Final

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import generate_latest

from hub import principals
from hub.api import models
from hub.settings import Settings

router = APIRouter()
# How long /healthz answers from its last check.
HEALTH_FRESH_S: Final = 5.0


@router.get(
    "/healthz",
    response_model=models.Health,
    tags=["operations"],
    responses={503: {"model": models.Health, "description": "a dependency is down"}},
)
async def healthz(request: Request) -> JSONResponse:
    """200 when Kafka and the database answer, 503 otherwise, saying which failed. Open to
    probes without a token, so its answer is checked at most every few seconds, by one check
    at a time: any rate of calls costs the database and the broker the same."""
    state = request.app.state
    health: Health = state.health
    checks = await health.checks(state.pool, state.settings, state.metrics.health_checks.inc)
    state.metrics.db_up.set(1 if checks["database"] == "ok" else 0)
    ok = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)


class Health:
    """The last answer of the dependencies, kept ``fresh_s``; a check runs alone."""

    def __init__(self, fresh_s: float = HEALTH_FRESH_S) -> None:
        self.fresh_s = fresh_s
        self.answer: dict[str, str] = {}
        self.at = -float("inf")
        self.lock = asyncio.Lock()

    async def checks(
        self, pool: asyncpg.Pool, settings: Settings, counted: Callable[[], None]
    ) -> dict[str, str]:
        async with self.lock:
            if time.monotonic() - self.at >= self.fresh_s:
                counted()
                self.answer = {
                    "database": await _check_database(pool),
                    "kafka": await _check_kafka(settings),
                }
                self.at = time.monotonic()
            return dict(self.answer)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    state = request.app.state
    with suppress(OSError, asyncpg.PostgresError, TimeoutError):
        async with state.pool.acquire(timeout=2) as conn:
            rows = await conn.fetch(
                "SELECT s.region, count(a.alert_id) AS n FROM sites s "
                "LEFT JOIN kpi_alerts a ON a.site_id = s.site_id AND a.status = 'open' "
                "GROUP BY 1"
            )
        for row in rows:
            state.metrics.open_alerts.labels(row["region"]).set(row["n"])
    return Response(generate_latest(state.registry), media_type="text/plain; version=0.0.4")


async def _check_database(pool: asyncpg.Pool) -> str:
    try:
        async with pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
        return f"error: {type(error).__name__}: {error}"
    return "ok"


async def _check_kafka(settings: Settings) -> str:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(**principals.client(settings), request_timeout_ms=2000)
    try:
        async with asyncio.timeout(3):
            await client.bootstrap()
    except Exception as error:  # any failure to talk to the broker is what health reports
        return f"error: {type(error).__name__}: {error}"
    finally:
        await client.close()
    return "ok"
