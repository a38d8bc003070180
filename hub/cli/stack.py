"""``hub stack up | down | status``: the local stack (Kafka, TimescaleDB, Prometheus)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict

from hub.cli.common import EXIT_NOT_RUNNING, Commands, say
from hub.settings import Settings
from hub.stack.part import PartStatus


def add(commands: Commands) -> None:
    stack = commands.add_parser(
        "stack",
        help="the local stack: Kafka, TimescaleDB, Prometheus",
        description="Run the real Kafka 4.1 (KRaft), TimescaleDB (PostgreSQL 15) and Prometheus "
        "natively from $HUB_HOME, installing what is missing. Idempotent.",
    )
    actions = stack.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("up", "install what is missing, start what is stopped, wait until each part serves"),
        ("down", "stop the parts `up` started (by pidfile), nothing else"),
        ("status", "each part's state, pid, address and version; exit 3 if one is stopped"),
    ):
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument(
            "parts",
            nargs="*",
            metavar="PART",
            help="only these parts (timescaledb, kafka, alertmanager, prometheus); default all",
        )
        sub.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    stack.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub.stack import Stack

    stack = Stack(settings)
    if args.action == "up":
        stack.up(say, args.parts)
    elif args.action == "down":
        stack.down(say, args.parts)
    statuses = stack.status(args.parts)  # a row per part, and per broker of a cluster
    if getattr(args, "json", False):
        print(json.dumps([asdict(s) for s in statuses]))
    else:
        print(stack_table(statuses))
    if args.action == "down":
        return 0
    return 0 if all(s.state == "running" for s in statuses) else EXIT_NOT_RUNNING


def stack_table(statuses: Sequence[PartStatus]) -> str:
    rows = [("part", "state", "pid", "address", "version")]
    for status in statuses:
        rows.append(
            (status.name, status.state, str(status.pid or "-"), status.address, status.version)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip()
        for row in rows
    )
