"""``hub demonstrations``: the programme, a demonstration's life from application to archive."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from hub.cli.common import Commands
from hub.settings import Settings

STEPS = "applied -> approved (or rejected) -> active (from starts_on) -> ended -> archived"


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "demonstrations",
        help="the programme: apply, approve, reject, end, archive demonstrations; change a KPI",
        description=f"A demonstration moves {STEPS}. Only active demonstrations' records are "
        "counted and judged (others go to the DLQ as not_active). Nothing touches another "
        "demonstration's devices, keys, rows or verdicts; nothing is deleted. Every step is in "
        "the audit trail (hub audit list).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply = actions.add_parser(
        "apply",
        help="an application from a YAML or JSON file (checked whole, every problem named)",
        description="The file names the demonstration (demonstration_id, company, title, "
        "technology, starts_on, ends_on), its metrics, its KPIs and its sites, each with its "
        "devices (`devices: [ids]`, or `count: N` and `prefix:` for the hub to name them "
        "<site>-<prefix><n>). An example: docs/programme.md.",
    )
    apply.add_argument("file", type=Path, help="the application (.yaml, .yml or .json)")
    apply.add_argument(
        "--dry-run",
        action="store_true",
        help="check it and print what would change; change nothing",
    )
    for action, text in (
        ("approve", "approve an application: its devices are registered"),
        ("reject", "reject an application (it is kept, as rejected)"),
        ("end", "end a demonstration (early): records dated from then on are not counted"),
        ("archive", "archive an ended demonstration"),
        ("show", "one demonstration: its status, period, devices, KPI versions"),
    ):
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument("demonstration_id")
        if action == "reject":
            sub.add_argument("--reason", default="", help="why (kept in the audit trail)")
        if action == "end":
            sub.add_argument(
                "--at", type=_moment, help="when it ends (RFC 3339; default now, at most its end)"
            )
    actions.add_parser("list", help="every demonstration with its status")
    change = actions.add_parser(
        "change-kpi",
        help="a new version of a KPI's threshold, from a stated time",
        description="Windows starting from --from (default now) are judged by the new "
        "threshold; every verdict given keeps the version it was judged by, and the scorecard "
        "shows each version's period.",
    )
    change.add_argument("demonstration_id")
    change.add_argument("kpi_id")
    change.add_argument("--threshold", type=float, required=True, help="the new threshold")
    change.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    change.add_argument("--from", dest="valid_from", type=_moment, help="RFC 3339; default now")
    parser.set_defaults(handler=run)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a UTC offset (Z or +09:00)")
    return moment


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from hub import evidence
    from hub.audit import cli_actor
    from hub.db import connect
    from hub.db.migrate import migrate
    from hub.programme import application, store

    actor = cli_actor()
    conn = await connect(settings)
    try:
        await migrate(conn)
        if args.action == "apply":
            checked = application.check(read_document(args.file), await store.known(conn))
            print(describe(checked))
            if args.dry_run:
                print("dry run: nothing changed")
                return 0
            await store.apply(conn, checked, actor)
            demo_id = checked.demonstration.demonstration_id
            print(f"applied: {demo_id} awaits a decision (hub demonstrations approve {demo_id})")
        elif args.action == "approve":
            devices = await store.approve(conn, args.demonstration_id, actor)
            print(
                f"approved: {args.demonstration_id}, {devices} devices registered; their logins "
                f"and keys: hub access add-devices --demonstration {args.demonstration_id} "
                "--out FILE"
            )
        elif args.action == "reject":
            await store.reject(conn, args.demonstration_id, actor, args.reason)
            print(f"rejected: {args.demonstration_id} (kept, as rejected)")
        elif args.action == "end":
            ended = await store.end(conn, args.demonstration_id, actor, args.at)
            print(f"ended: {args.demonstration_id} at {ended.isoformat()}")
            if ended <= await conn.fetchval("SELECT now()"):
                archive = await evidence.freeze(conn, args.demonstration_id)
                print(
                    f"evidence frozen: {len(archive):,} bytes (hub report {args.demonstration_id} "
                    "--evidence FILE.zip)"
                )
        elif args.action == "archive":
            await store.archive(conn, args.demonstration_id, actor)
            print(f"archived: {args.demonstration_id}")
        elif args.action == "change-kpi":
            version = await store.change_kpi(
                conn,
                args.demonstration_id,
                args.kpi_id,
                args.threshold,
                args.reason,
                actor,
                args.valid_from,
            )
            print(
                f"{args.demonstration_id} {args.kpi_id}: version {version}, threshold "
                f"{args.threshold:g}, from {(args.valid_from or 'now')}"
            )
        elif args.action == "list":
            rows = await store.listing(conn)
            print(
                f"{'demonstration':14} {'status':9} {'period':23} {'sites':>5} "
                f"{'devices':>7}  company"
            )
            for r in rows:
                period = f"{r['starts_on']} to {r['ends_on']}"
                print(
                    f"{r['demonstration_id']:14} {r['status']:9} {period:23} {r['sites']:5} "
                    f"{r['devices']:7}  {r['company']}"
                )
        else:
            shown = await store.show(conn, args.demonstration_id)
            print(json.dumps(shown, indent=2, default=str, ensure_ascii=False))
    finally:
        await conn.close()
    return 0


def read_document(path: Path) -> Any:
    """An application file: JSON, or YAML (a superset)."""
    import yaml

    from hub.programme.application import ApplicationError

    try:
        text = path.read_text()
    except OSError as error:
        raise ApplicationError([f"{path}: {error.strerror}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ApplicationError([f"{path}: not YAML or JSON ({error})"]) from None


def describe(checked: Any) -> str:
    """What an application asks for, as it would be registered."""
    demo = checked.demonstration
    sites = checked.sites
    lines = [
        f"{demo.demonstration_id} ({demo.company}): {demo.title} [{demo.technology}], "
        f"{demo.starts_on} to {demo.ends_on}",
        f"  {len(checked.devices)} devices at {len(sites)} sites; "
        f"metrics: {', '.join(demo.metrics)}",
    ]
    lines += [
        f"  KPI {k.kpi_id}: {k.aggregation}({k.metric}) {k.op} {k.threshold:g} per {k.window} "
        f"(min {k.min_samples} samples)"
        for k in demo.kpis
    ]
    return "\n".join(lines)
