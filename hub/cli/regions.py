"""``hub regions add | list``: regions are data, a province joins with no release."""

from __future__ import annotations

import argparse
import asyncio

from hub.cli.common import Commands
from hub.settings import Settings


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "regions",
        help="the regions of the programme: add one (its partner topics, roles and views)",
        description="A region is data: `add` creates it with its partner topics "
        "(partner.<code>.kpi-results.v1, partner.<code>.kpi-alerts.v1), so that `hub access "
        "add-partner <code> NAME`, tokens and receivers of scope partner:<code> and the "
        "management views cover it at once. Its sites join through the registry files.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    adding = actions.add_parser("add", help="a new region")
    adding.add_argument("code", help="its code: a-z, 0-9, 2-32, e.g. jeonbuk")
    adding.add_argument("name", help="its name, e.g. 'North Jeolla Province'")
    actions.add_parser("list", help="the regions")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from hub import regions
    from hub.audit import cli_actor
    from hub.db import connect
    from hub.db.migrate import migrate

    conn = await connect(settings)
    try:
        await migrate(conn)
        if args.action == "add":
            created = await regions.add(conn, settings, args.code, args.name, cli_actor())
            shown = ", ".join(created) or "existing already"
            print(f"region {args.code} ({args.name}) added; partner topics: {shown}")
        else:
            for region in await regions.listing(conn):
                print(f"{region.code:12} {region.name}")
    finally:
        await conn.close()
    return 0
