"""``hub stack up | down | status``: the local stack (Kafka, TimescaleDB, Prometheus)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict

from hub.cli.common import EXIT_NOT_RUNNING, Commands, say
from hub.settings import Settings
from tooling.stack.part import PartStatus


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
            help="only these parts (timescaledb, kafka, alertmanager, prometheus; with "
            "HUB_FEDERATION=1 also kafka-jeonnam, mirrormaker); default all",
        )
        sub.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    actions.add_parser(
        "tls",
        help="make the CA and the broker's certificate only (for compose: `up` does it)",
        description="Write $HUB_HOME/tls: a CA (ca.pem, what device and partner clients trust; "
        "its key ca.key) and the broker's key and certificate for its SASL_SSL listener "
        "(kafka.pem, naming HUB_KAFKA_SASL_BOOTSTRAP's host, localhost and kafka). Kept when "
        "they exist.",
    )
    actions.add_parser(
        "principals",
        help="create the hub's own Kafka logins and grants on a running broker (`up` does it)",
        description="Log in to HUB_KAFKA_BOOTSTRAP as hub-broker (PLAIN) and create the SCRAM "
        "logins of hub-admin, hub-worker, hub-notify and hub-api with their grants for "
        "HUB_APP_ID (docs/security.md). Passwords come from HUB_KAFKA_<ROLE>_PASSWORD, or "
        "the local stack's $HUB_HOME/kafka/principals.json. Idempotent.",
    )
    stack.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from tooling.stack import FEDERATION_PARTS, Stack

    if args.action == "tls":
        return _tls(settings)
    if args.action == "principals":
        from tooling.stack import principals

        principals.create_services(settings)
        say(f"kafka: the hub's logins and grants for {settings.app_id} are in place")
        return 0
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
    # The federation's parts, left from an earlier HUB_FEDERATION=1 run, are shown, not awaited.
    expected = [s for s in statuses if settings.federation or s.name not in FEDERATION_PARTS]
    return 0 if all(s.state == "running" for s in expected) else EXIT_NOT_RUNNING


def _tls(settings: Settings) -> int:
    from tooling.stack import tls
    from tooling.stack.kafka import Kafka

    files = tls.TlsFiles.under(settings.home)
    tls.ensure(files, Kafka(settings).tls_hosts())
    say(f"CA {files.ca} (clients trust it), broker key and certificate {files.keystore}")
    return 0


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
