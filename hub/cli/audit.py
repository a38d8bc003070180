"""``hub audit list``: who changed what in the registry, access, tokens, receivers and regions."""

from __future__ import annotations

import argparse
import asyncio
import json

from hub.cli.common import Commands, positive_int
from hub.settings import Settings


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "audit",
        help="the audit trail: who changed what, when, before and after",
        description="Every change to demonstrations, KPIs, devices, keys, tokens, receivers and "
        "regions, with who made it (the token's name, or the CLI user: HUB_ACTOR or the system "
        "user), when, and what it was before and after. Append-only.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the trail, oldest first")
    listing.add_argument(
        "--since", help="only changes since: RFC 3339 time, or 90s, 15m, 2h, 1d ago"
    )
    listing.add_argument("--limit", type=positive_int, default=1000, help="at most N (1000)")
    listing.add_argument("--json", action="store_true", help="one JSON entry per line")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from hub import audit
    from hub.db import connect
    from hub.db.migrate import migrate
    from hub.dlq import parse_since

    since = parse_since(args.since) if args.since else None
    conn = await connect(settings)
    try:
        await migrate(conn)
        entries = await audit.entries(conn, since, args.limit)
    finally:
        await conn.close()
    for entry in entries:
        if args.json:
            print(json.dumps(entry, default=str, ensure_ascii=False))
            continue
        change = json.dumps(
            {"before": entry["before"], "after": entry["after"]}, default=str, ensure_ascii=False
        )
        print(
            f"{entry['at'].isoformat(timespec='seconds')}  {entry['actor']:16}  "
            f"{entry['action']:22}  {entry['subject']}  {change[:300]}"
        )
    return 0
