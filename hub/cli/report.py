"""``hub report``: a demonstration's KPI scorecard."""

from __future__ import annotations

import argparse
import asyncio

from hub.cli.common import Commands
from hub.settings import Settings


def add(commands: Commands) -> None:
    rep = commands.add_parser(
        "report",
        help="a demonstration's KPI scorecard",
        description="Company, technology, period, sites and, per KPI: windows judged, passed, "
        "failed, pass rate and latest status.",
    )
    rep.add_argument("demonstration_id", help="e.g. DEMO-001")
    rep.add_argument("--format", choices=("text", "csv", "json"), default="text")
    rep.add_argument(
        "--token",
        help="answer as this API token would be answered: a company token gets its own "
        "demonstrations' scorecards only (default: the database's view, an operator's)",
    )
    rep.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub import report
    from hub.management.scorecard import Scorecard, build_scorecard

    async def build() -> Scorecard:
        from hub.db import connect

        conn = await connect(settings)
        try:
            if args.token is not None:
                await report.check_scope(conn, args.token, args.demonstration_id)
            return await build_scorecard(conn, args.demonstration_id)
        finally:
            await conn.close()

    card = asyncio.run(build())
    render = {"text": report.as_text, "csv": report.as_csv, "json": report.as_json}[args.format]
    print(render(card), end="" if args.format == "csv" else "\n")
    return 0
