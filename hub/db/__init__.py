"""TimescaleDB access: connections with errors that name the service, and versioned migrations."""

from __future__ import annotations

import asyncpg

from hub.errors import HubError
from hub.settings import Settings

# A connection of its own or one borrowed from a pool: every query helper takes either.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class DatabaseUnavailable(HubError):
    """TimescaleDB did not answer; the message says where and how to start it."""


async def connect(settings: Settings, *, timeout_s: float = 10.0) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(settings.database_url, timeout=timeout_s)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        raise unavailable(settings, error) from None


async def create_pool(
    settings: Settings, *, min_size: int = 1, max_size: int = 4, timeout_s: float = 10.0
) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            settings.database_url, min_size=min_size, max_size=max_size, timeout=timeout_s
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        raise unavailable(settings, error) from None
    assert pool is not None
    return pool


def unavailable(settings: Settings, error: BaseException) -> DatabaseUnavailable:
    target = settings.database
    return DatabaseUnavailable(
        f"TimescaleDB at {target.host}:{target.port}/{target.dbname} did not answer "
        f"({type(error).__name__}: {error}); start the local stack with `hub stack up` "
        "or set HUB_DATABASE_URL"
    )
