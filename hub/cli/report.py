"""``hub report``: a demonstration's KPI scorecard, its evidence pack, and a pack's check."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from hub.cli.common import EXIT_FAILED, Commands
from hub.settings import Settings


def add(commands: Commands) -> None:
    rep = commands.add_parser(
        "report",
        help="a demonstration's KPI scorecard; its evidence pack; a pack's check",
        description="Company, technology, period, sites and, per KPI: windows judged, passed, "
        "failed, pass rate, latest status and each version of its definition. --evidence "
        "writes the pack frozen when the demonstration ended (scorecard, KPI versions, per-site "
        "results, minute aggregates over its whole period, registry rows, a manifest of SHA-256 "
        "digests signed with the hub's Ed25519 key); --verify checks one and names the first "
        "file that does not match.",
    )
    rep.add_argument("demonstration_id", nargs="?", help="e.g. DEMO-001")
    rep.add_argument("--format", choices=("text", "csv", "json"), default="text")
    rep.add_argument(
        "--token",
        help="answer as this API token would be answered: a company token gets its own "
        "demonstrations' scorecards only (default: the database's view, an operator's)",
    )
    rep.add_argument(
        "--evidence", type=Path, metavar="FILE.zip", help="write the demonstration's evidence pack"
    )
    rep.add_argument("--verify", type=Path, metavar="FILE.zip", help="check an evidence pack")
    rep.add_argument(
        "--public-key",
        type=Path,
        metavar="PEM",
        help="with --verify: the hub's public key (GET /api/v1/evidence/public-key); default: "
        "read from the hub's database",
    )
    rep.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.verify is not None:
        return _verify(args, settings)
    if args.demonstration_id is None:
        raise SystemExit("hub report: error: DEMONSTRATION_ID is required (or --verify FILE.zip)")
    if args.evidence is not None:
        return _evidence(args, settings)
    from hub import report
    from hub.management.scorecard import Scorecard, build_scorecard

    async def build() -> Scorecard:
        from hub.db import connect

        conn = await connect(settings)
        try:
            region = None
            if args.token is not None:
                who = await report.check_scope(conn, args.token, args.demonstration_id)
                region = who.region  # a partner's scorecard covers its region's sites
            return await build_scorecard(conn, args.demonstration_id, region)
        finally:
            await conn.close()

    card = asyncio.run(build())
    render = {"text": report.as_text, "csv": report.as_csv, "json": report.as_json}[args.format]
    print(render(card), end="" if args.format == "csv" else "\n")
    return 0


def _evidence(args: argparse.Namespace, settings: Settings) -> int:
    from hub import evidence, report
    from hub.db import connect
    from hub.db.migrate import migrate
    from hub.management import scope

    async def frozen() -> bytes:
        conn = await connect(settings)
        try:
            await migrate(conn)
            if args.token is not None:
                await report.check_scope(
                    conn, args.token, args.demonstration_id, scope.EVIDENCE_ROLES
                )
            return await evidence.freeze(conn, args.demonstration_id)
        finally:
            await conn.close()

    archive = asyncio.run(frozen())
    fd = os.open(args.evidence, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(archive)
    print(f"evidence pack of {args.demonstration_id}: {args.evidence} ({len(archive):,} bytes)")
    return 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from hub import evidence

    if args.public_key is not None:
        key = evidence.load_public(args.public_key.read_bytes())
    else:
        from hub.db import connect

        async def hubs() -> Any:
            conn = await connect(settings)
            try:
                return (await evidence.signing_key(conn)).public_key()
            finally:
                await conn.close()

        key = asyncio.run(hubs())
    try:
        archive = args.verify.read_bytes()
    except OSError as error:
        raise evidence.EvidenceError(f"{args.verify}: {error.strerror}") from None
    verdict = evidence.verify(archive, key)
    print(f"{args.verify}: {verdict.detail}")
    return 0 if verdict.sound else EXIT_FAILED
