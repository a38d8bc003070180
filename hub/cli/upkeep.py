"""``hub upkeep``: the hourly roll-up and retention, once."""

from __future__ import annotations

import argparse
import asyncio

from hub.cli.common import Commands
from hub.settings import Settings


def add(commands: Commands) -> None:
    upkeep = commands.add_parser(
        "upkeep",
        help="hourly roll-up and retention, once (hub api also runs it on a schedule)",
        description="Roll site_aggregates up into site_aggregates_hourly and drop chunks older "
        "than HUB_RETENTION_*_DAYS.",
    )
    upkeep.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub.upkeep import run_upkeep

    async def run() -> str:
        from hub.db import connect
        from hub.db.migrate import migrate

        conn = await connect(settings)
        try:
            await migrate(conn)
            return (await run_upkeep(conn, settings)).summary()
        finally:
            await conn.close()

    print(asyncio.run(run()))
    return 0
