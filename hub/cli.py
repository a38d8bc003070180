"""The ``hub`` command: one entry point, one sub-command per job of the contract.

Handlers import their machinery lazily so ``hub --help`` and ``hub stack status`` stay fast.
Every failure the user can fix ends as one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict

from hub.settings import Settings, SettingsError
from hub.stack.part import PartStatus

EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3

Handler = Callable[[argparse.Namespace, Settings], int]


def say(line: str) -> None:
    print(line, flush=True)


def _stack_table(statuses: Sequence[PartStatus]) -> str:
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


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from hub.stack import Stack

    stack = Stack(settings)
    if args.action == "up":
        statuses = stack.up(say, args.parts)
    elif args.action == "down":
        statuses = stack.down(say, args.parts)
    else:
        statuses = stack.status(args.parts)
    if getattr(args, "json", False):
        print(json.dumps([asdict(s) for s in statuses]))
    else:
        print(_stack_table(statuses))
    if args.action == "down":
        return 0
    return 0 if all(s.state == "running" for s in statuses) else EXIT_NOT_RUNNING


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Until the stream processors land, the demo brings up the stack and shows its state."""
    from hub.stack import Stack

    statuses = Stack(settings).up(say)
    print(_stack_table(statuses))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hub",
        description="Telemetry hub of the Gwangju / South Jeolla AI testbed.",
        epilog="Configuration comes from HUB_* environment variables (see README.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
            help="only these parts (timescaledb, kafka, prometheus); default all",
        )
        sub.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    stack.set_defaults(handler=cmd_stack)

    demo = commands.add_parser("demo", help="the main job end to end on the local stack")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hub.stack.errors import StackError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        handler: Handler = args.handler
        return handler(args, settings)
    except (SettingsError, StackError) as error:
        print(f"hub {args.command}: error: {error}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
