"""The ``hub`` command: one entry point, one sub-command per job of the contract, a module each.

Handlers import their machinery lazily so ``hub --help`` and ``hub stack status`` stay fast.
Every failure the user can fix ends as one line on stderr and a non-zero exit code. The
tooling's commands (``stack``, ``simulate``, ``bench``, ``demo``: the ``tooling`` package, which
the product never imports) join through the ``hub.commands`` entry points.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from types import ModuleType

from hub.cli import (
    access,
    api,
    audit,
    demonstrations,
    dlq,
    notify,
    regions,
    registry,
    report,
    upkeep,
    worker,
)
from hub.cli.common import EXIT_FAILED, Handler
from hub.errors import HubError
from hub.settings import Settings

PRODUCT = {
    "registry": registry,
    "regions": regions,
    "demonstrations": demonstrations,
    "worker": worker,
    "dlq": dlq,
    "access": access,
    "audit": audit,
    "api": api,
    "report": report,
    "notify": notify,
    "upkeep": upkeep,
}
# In the order `hub --help` lists them.
ORDER = (
    "stack",
    "registry",
    "regions",
    "demonstrations",
    "simulate",
    "worker",
    "dlq",
    "access",
    "audit",
    "api",
    "report",
    "notify",
    "upkeep",
    "bench",
    "demo",
)


def commands() -> list[ModuleType]:
    """The product's commands and those the ``hub.commands`` entry points add."""
    found = dict(PRODUCT)
    for point in entry_points(group="hub.commands"):
        found.setdefault(point.name, point.load())
    return sorted(found.values(), key=lambda m: _rank(m, found))


def _rank(module: ModuleType, found: dict[str, ModuleType]) -> tuple[int, str]:
    name = next(n for n, m in found.items() if m is module)
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hub",
        description="Telemetry hub of the Gwangju / South Jeolla AI testbed.",
        epilog="Configuration comes from HUB_* environment variables (see README.md).",
    )
    parsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands():
        command.add(parsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from aiokafka.errors import KafkaConnectionError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        handler: Handler = args.handler
        return handler(args, settings)
    except HubError as error:
        print(f"hub {args.command}: error: {error}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except KafkaConnectionError as error:
        print(
            f"hub {args.command}: error: Kafka did not answer ({error}); start the local stack "
            "with `hub stack up` or set HUB_KAFKA_BOOTSTRAP",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `hub dlq list | head`: the reader left; say nothing more.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
