"""``hub notify``: where KPI alerts, incidents and platform alerts go, and the notifier itself."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from dataclasses import replace

from hub.cli.common import Commands
from hub.settings import Settings

SCOPE_HELP = "operator (everything), partner:<region> or company:<company>"


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "notify",
        help="alert and incident receivers (webhooks, e-mail); the notifier",
        description="Receivers get what their scope covers: operator every KPI alert, incident, "
        "platform alert (from Alertmanager) and escalation; partner:<region> that region's KPI "
        "alerts and incidents; company:<company> its demonstrations' ones. Each notice reaches "
        "a receiver once, retried with backoff while it is away. `serve` runs the notifier that "
        "delivers them (HUB_NOTIFY_PORT for Alertmanager's webhook and /metrics; e-mail through "
        "HUB_SMTP_URL; breaches open and unacknowledged for HUB_NOTIFY_ESCALATE_AFTER seconds, "
        "default 1800, are sent to operators again).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    webhook = actions.add_parser("add-webhook", help="POST each notice as JSON to a URL")
    webhook.add_argument("name", help="a name for it (unique; adding it again replaces it)")
    webhook.add_argument("url", help="http:// or https:// address")
    webhook.add_argument("--scope", required=True, help=SCOPE_HELP)
    email = actions.add_parser("add-email", help="mail each notice (SMTP from HUB_SMTP_URL)")
    email.add_argument("name", help="a name for it (unique; adding it again replaces it)")
    email.add_argument("address", help="an e-mail address")
    email.add_argument("--scope", required=True, help=SCOPE_HELP)
    actions.add_parser("list", help="the receivers, what each got, what is pending, last error")
    remove = actions.add_parser("remove", help="stop sending to a receiver (drops its pending)")
    remove.add_argument("name")
    actions.add_parser("serve", help="run the notifier (until interrupted)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "serve":
        from hub.notify.service import Notifier

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(Notifier(replace(settings, kafka_role="notify")).run())
        return 0
    return asyncio.run(_manage(settings, args))


async def _manage(settings: Settings, args: argparse.Namespace) -> int:
    from hub import audit
    from hub.db import connect
    from hub.db.migrate import migrate
    from hub.notify import model, store

    conn = await connect(settings)
    try:
        await migrate(conn)
        if args.action in ("add-webhook", "add-email"):
            if args.action == "add-webhook":
                receiver = model.receiver(args.name, "webhook", args.url, args.scope)
            else:
                receiver = model.receiver(args.name, "email", args.address, args.scope)
            kind, target = receiver.kind, receiver.target
            async with conn.transaction():
                new = await store.add_receiver(conn, receiver)
                await audit.record(
                    conn,
                    audit.cli_actor(),
                    "receiver.add" if new else "receiver.replace",
                    receiver.name,
                    None,
                    {"kind": kind, "scope": receiver.label},  # not the target: it may hold secrets
                )
            print(
                f"{'added' if new else 'replaced'} {receiver.name}: {kind} {target}, "
                f"scope {receiver.label}"
            )
            if kind == "email" and not settings.smtp_url:
                print("note: HUB_SMTP_URL is not set; the notifier cannot send e-mail until it is")
        elif args.action == "remove":
            async with conn.transaction():
                if not await store.remove_receiver(conn, args.name):
                    raise model.ReceiverError(f"no receiver named {args.name!r} (hub notify list)")
                await audit.record(
                    conn, audit.cli_actor(), "receiver.remove", args.name, None, None
                )
            print(f"removed {args.name}: nothing more is sent to it")
        else:
            rows = await store.receiver_states(conn)
            if not rows:
                print("no receivers: add one with `hub notify add-webhook` or `add-email`")
            for r in rows:
                scope = f"{r['role']}:{r['scope']}" if r["scope"] else r["role"]
                print(
                    f"{r['name']:<20} {r['kind']:<8} {scope:<24} {r['target']:<40} "
                    f"delivered {r['delivered']:>6}  pending {r['pending']:>4}"
                    + (f"  last error: {r['last_error']}" if r["last_error"] else "")
                )
    finally:
        await conn.close()
    return 0
