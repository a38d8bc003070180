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


# A worker's session must not hold a transaction (and the locks fencing relies on) for ever
# when its connection hangs half-way: the server ends it, and the worker retries.
WORKER_SESSION = {"idle_in_transaction_session_timeout": "30000", "statement_timeout": "60000"}


async def create_pool(
    settings: Settings,
    *,
    min_size: int = 1,
    max_size: int = 4,
    timeout_s: float = 10.0,
    server_settings: dict[str, str] | None = None,
) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            server_settings=server_settings,
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
