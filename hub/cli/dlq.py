"""``hub dlq list | replay``: rejected records, and sending them through intake again."""

from __future__ import annotations

import argparse
import asyncio
import json

from hub.cli.common import Commands, positive_int
from hub.settings import Settings
from hub.telemetry import Reason
from hub.topics import TELEMETRY as TELEMETRY_TOPIC


def add(commands: Commands) -> None:
    dlq_parser = commands.add_parser(
        "dlq",
        help="inspect rejected telemetry; send it through intake again",
        description="Rejected records live in testbed.telemetry.dlq.v1 with their original "
        "bytes. `list` shows them (reason, detail, when, source offset); `replay` publishes the "
        "original bytes and headers to testbed.telemetry.v1 again, e.g. after a registry fix. A "
        "replayed record that is accepted is counted once; one rejected again keeps its identity, "
        "so replaying twice never multiplies it; one whose window closed more than the allowed "
        "lateness ago is rejected again as late.",
    )
    dlq_actions = dlq_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("list", "show rejected records"), ("replay", "send them again")):
        sub = dlq_actions.add_parser(action, help=text, description=text)
        sub.add_argument(
            "--reason",
            choices=[r.value for r in Reason],
            help="only records rejected for this reason",
        )
        sub.add_argument(
            "--since", help="only records rejected since: RFC 3339 time, or 90s, 15m, 2h, 1d ago"
        )
        sub.add_argument(
            "--hub",
            metavar="APP_ID",
            help="only records this hub rejected (hubs sharing a broker share the DLQ; default "
            "HUB_APP_ID; 'any': every hub's)",
        )
        if action == "list":
            sub.add_argument(
                "--limit",
                type=positive_int,
                default=50,
                help="show the newest N (default 50; 0: all)",
            )
            sub.add_argument("--json", action="store_true", help="one JSON record per line")
    dlq_parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub import dlq

    wanted = dlq.DlqFilter(
        reason=args.reason,
        since=dlq.parse_since(args.since) if args.since else None,
        hub=None if args.hub == "any" else (args.hub or settings.app_id),
    )
    read = dlq.read_dlq(settings, wanted.since)
    entries = [e for e in asyncio.run(read) if wanted.matches(e.record)]
    if args.action == "list":
        shown = entries[-args.limit :] if args.limit else entries
        if args.json:
            for entry in shown:
                print(json.dumps(msgspec_to_builtins(entry.record)))
        else:
            for line in dlq.table(shown):
                print(line)
            print(
                f"{len(entries)} rejected record(s)"
                + (f", last {len(shown)} shown" if len(shown) < len(entries) else "")
            )
        return 0
    sent = asyncio.run(dlq.replay(settings, entries))
    by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(sent.items())) or "nothing"
    print(f"replayed {sum(sent.values())} record(s) into {TELEMETRY_TOPIC}: {by_reason}")
    return 0


def msgspec_to_builtins(value: object) -> object:
    import msgspec

    return msgspec.to_builtins(value)
