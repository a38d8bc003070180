"""``hub registry load``: the registry files into the database, idempotently."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from hub.cli.common import Commands
from hub.registry.files import DATA_DIR as REGISTRY_DIR
from hub.settings import Settings


def add(commands: Commands) -> None:
    registry = commands.add_parser(
        "registry",
        help="the testbed registry: sites, devices, demonstrations and their KPIs",
        description="Load the registry files into the database (migrating it first): new rows "
        "are added, changed ones updated, and nothing is deleted (demonstrations applied "
        "through `hub demonstrations` stay). A device moved to another site or demonstration, "
        "or a KPI given another meaning, is refused; a changed threshold becomes a new KPI "
        "version from now. Idempotent: loading the same files again changes nothing; a broken "
        "entry stops the load with its file, entry and reason, and changes nothing.",
    )
    registry_actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = registry_actions.add_parser("load", help="load (or update) the registry")
    load.add_argument(
        "--dir",
        type=Path,
        default=REGISTRY_DIR,
        help=f"directory with sites.csv, devices.csv, demonstrations.yaml (default {REGISTRY_DIR})",
    )
    registry.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub.audit import cli_actor
    from hub.registry.load import load_files

    report = asyncio.run(load_files(settings, args.dir, cli_actor()))
    changes = ", ".join(
        f"{table} {n} ({report.changes[table]})" for table, n in report.counts.items()
    )
    verdict = "changed" if report.changed else "unchanged"
    print(f"registry {report.digest} loaded, {verdict}: {changes}")
    kept = {table: n for table, n in report.kept.items() if n}
    if kept:
        shown = ", ".join(f"{table} {n}" for table, n in kept.items())
        print(f"kept, not in the files (applied through hub demonstrations, say): {shown}")
    return 0
