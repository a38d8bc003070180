"""The ``hub`` command: one entry point, one sub-command per job of the contract.

Handlers import their machinery lazily so ``hub --help`` and ``hub stack status`` stay fast.
Every failure the user can fix ends as one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from hub.errors import HubError
from hub.registry.files import DATA_DIR as REGISTRY_DIR
from hub.settings import Settings
from hub.stack.part import PartStatus
from hub.telemetry import Reason
from hub.topics import TELEMETRY as TELEMETRY_TOPIC

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
        stack.up(say, args.parts)
    elif args.action == "down":
        stack.down(say, args.parts)
    statuses = stack.status(args.parts)  # a row per part, and per broker of a cluster
    if getattr(args, "json", False):
        print(json.dumps([asdict(s) for s in statuses]))
    else:
        print(_stack_table(statuses))
    if args.action == "down":
        return 0
    return 0 if all(s.state == "running" for s in statuses) else EXIT_NOT_RUNNING


def cmd_registry(args: argparse.Namespace, settings: Settings) -> int:
    from hub.registry.load import load_files

    report = asyncio.run(load_files(settings, args.dir))
    changes = ", ".join(
        f"{table} {n} ({report.changes[table]})" for table, n in report.counts.items()
    )
    verdict = "changed" if report.changed else "unchanged"
    print(f"registry {report.digest} loaded, {verdict}: {changes}")
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from hub.simulate import SimulationOptions, progress_printer, simulate, summary

    options = SimulationOptions(
        sites=args.sites,
        rate_hz=args.rate,
        duration_s=args.duration,
        bad_fraction=args.bad_fraction,
        region=args.region,
        seed=args.seed,
    )
    tally = asyncio.run(simulate(settings, options, progress_printer(options)))
    print(file=sys.stderr)
    if args.json:
        print(json.dumps(tally.as_dict()))
    else:
        print(summary(tally))
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from hub.worker import run_worker
    from streams.app import WorkerOptions

    run_worker(settings, WorkerOptions(index=args.index), loglevel=args.loglevel)
    return 0


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from hub import dlq

    wanted = dlq.DlqFilter(
        reason=args.reason,
        since=dlq.parse_since(args.since) if args.since else None,
        hub=None if args.hub == "any" else (args.hub or settings.app_id),
    )
    entries = [e for e in asyncio.run(dlq.read_dlq(settings)) if wanted.matches(e.record)]
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


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn
    from prometheus_client import disable_created_metrics

    from hub.api.app import create_api

    disable_created_metrics()  # type: ignore[no-untyped-call]
    port = args.port or settings.api_port
    uvicorn.run(create_api(settings), host=args.host, port=port, log_level=args.loglevel)
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from hub import report
    from hub.api.models import Scorecard

    async def build() -> Scorecard:
        from hub.db import connect

        conn = await connect(settings)
        try:
            if args.token is not None:
                await report.check_scope(conn, args.token, args.demonstration_id)
            return await report.build_scorecard(conn, args.demonstration_id)
        finally:
            await conn.close()

    card = asyncio.run(build())
    render = {"text": report.as_text, "csv": report.as_csv, "json": report.as_json}[args.format]
    print(render(card), end="" if args.format == "csv" else "\n")
    return 0


def cmd_upkeep(args: argparse.Namespace, settings: Settings) -> int:
    from hub.upkeep import run_upkeep

    async def run() -> str:
        from hub.db import connect
        from hub.db.migrate import migrate

        conn = await connect(settings)
        try:
            await migrate(conn)
            return (await run_upkeep(conn, settings)).summary()
        finally:
            await conn.close()

    print(asyncio.run(run()))
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from hub.bench.e2e import BenchOptions, as_json, run_bench, table
    from hub.stack import Stack

    Stack(settings).up(lambda line: print(line, file=sys.stderr, flush=True))
    progress = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else say
    if args.soak is not None:
        from hub.bench.soak import as_json as soak_json
        from hub.bench.soak import run_soak

        samples, result = run_soak(settings, args.soak, progress, kill_at_min=args.kill_at)
        verdict = (
            f"memory {result.rss_growth_mb:+.1f} MB, consumer lag lowest (late) "
            f"{result.lag_low_late:,.0f}, highest {result.lag_high_early:,.0f} -> "
            f"{result.lag_high_late:,.0f} records, window close lag "
            f"{result.close_lag_early_s} -> {result.close_lag_late_s} s, acks pending (late) "
            f"at most {result.acks_pending_high_late:,.0f}, uncommitted at the end "
            f"{result.commit_lag_end:,.0f} records: " + ("flat" if result.flat else "NOT flat")
        )
        print(soak_json(samples, result) if args.json else verdict)
        return 0 if result.flat else 1
    options = BenchOptions(
        records=args.records,
        workers=tuple(args.workers),
        latency_rates=tuple(args.latency_rates),
        latency_duration_s=args.latency_duration,
    )
    report = run_bench(settings, options, progress)
    print(as_json(report) if args.json else table(report))
    return 0


async def _tokens(settings: Settings, args: argparse.Namespace) -> int:
    from hub import tokens
    from hub.db import connect
    from hub.db.migrate import migrate

    conn = await connect(settings)
    try:
        await migrate(conn)
        if args.action == "add-token":
            token = await tokens.add_token(conn, args.role, args.name)
            base = f"http://127.0.0.1:{settings.api_port}"
            print(f"token      {token}")
            print(f"role       {args.role} (shown once: only a hash of the token is stored)")
            print(f"API        curl -H 'Authorization: Bearer {token}' {base}/api/v1/overview")
            print(f"web page   {base}/#token={token}")
        elif args.action == "revoke-token":
            if not await tokens.revoke_token(conn, args.name):
                raise tokens.TokenError(f"no token named {args.name!r} (hub access list-tokens)")
            print(f"revoked token {args.name}: requests with it answer 401 from now on")
        else:
            for name, role, issued in await tokens.list_tokens(conn):
                print(f"{name:<24} {role:<32} {issued}")
    finally:
        await conn.close()
    return 0


def cmd_access(args: argparse.Namespace, settings: Settings) -> int:
    from hub import access

    if args.action in ("add-token", "revoke-token", "list-tokens"):
        return asyncio.run(_tokens(settings, args))
    if args.action == "revoke":
        access.revoke(settings, args.username)
        print(f"revoked {args.username}: its password and ACLs are gone, new connections fail")
        return 0
    if args.action == "add-device":
        created = access.add_device(settings, args.device_id)
        allowed = (
            f"produce to {TELEMETRY_TOPIC} (at most {settings.device_byte_rate:,} bytes/s), "
            "as this device only; read nothing"
        )
    else:
        created = access.add_partner(settings, args.region, args.name)
        allowed = f"read partner.{args.region}.* in consumer groups named {args.name}.*"
    print(f"username   {created.username}")
    print(f"password   {created.password}")
    if created.signing_key is not None:
        print(f"signing    {created.signing_key.hex()}")
        print(
            "           (HMAC-SHA256 of each record's value under this key, as header "
            "hub-signature: v1=<hex>; docs/security.md)"
        )
    print(f"bootstrap  {settings.kafka_sasl_bootstrap} (SASL_PLAINTEXT, {access.MECHANISM})")
    print(f"may        {allowed}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from hub.demo import DemoOptions, run_demo

    options = DemoOptions(
        duration_s=args.duration, rate_hz=args.rate, workers=args.workers, keep=args.keep
    )
    run_demo(settings, options, say)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


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

    registry = commands.add_parser(
        "registry",
        help="the testbed registry: sites, devices, demonstrations and their KPIs",
        description="Load the registry files into the database (migrating it first). "
        "Idempotent: loading the same files again changes nothing; a broken entry stops the "
        "load with its file, entry and reason, and changes nothing.",
    )
    registry_actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = registry_actions.add_parser("load", help="load (or update) the registry")
    load.add_argument(
        "--dir",
        type=Path,
        default=REGISTRY_DIR,
        help=f"directory with sites.csv, devices.csv, demonstrations.yaml (default {REGISTRY_DIR})",
    )
    registry.set_defaults(handler=cmd_registry)

    sim = commands.add_parser(
        "simulate",
        help="devices of N registered sites publishing telemetry",
        description="Drive registered devices (from the loaded registry) with per-technology "
        "profiles: latency distributions, detections, outages and reconnects. Ends by printing "
        "how many records were sent, by kind, and the bad ones by reason.",
    )
    sim.add_argument("--sites", type=_positive_int, default=100, help="sites (0: all; default 100)")
    sim.add_argument(
        "--rate", type=_positive_float, default=1.0, help="events per site per second (default 1)"
    )
    sim.add_argument(
        "--duration", type=_positive_float, default=60.0, help="seconds to run (default 60)"
    )
    sim.add_argument(
        "--bad-fraction",
        type=_fraction,
        default=0.0,
        help="share of records made invalid on purpose, one DLQ reason each (default 0)",
    )
    sim.add_argument("--region", choices=("gwangju", "jeonnam"), help="only this region's sites")
    sim.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    sim.add_argument("--json", action="store_true", help="print the tally as one JSON line")
    sim.set_defaults(handler=cmd_simulate)

    worker = commands.add_parser(
        "worker",
        help="a stream-processing worker (run several for more throughput)",
        description="Validate telemetry, window it by event time, judge KPIs and write the "
        "results to TimescaleDB and Kafka. Workers share the partitions of the telemetry topic: "
        "start several (each with its own --index) to spread the load.",
    )
    worker.add_argument(
        "--index",
        type=_positive_int,
        default=0,
        help="this worker's number on the machine: its /metrics port is HUB_WORKER_WEB_PORT + "
        "index and its local state lives in $HUB_HOME/worker/<index> (default 0)",
    )
    worker.add_argument(
        "--loglevel", default="info", choices=("crit", "error", "warn", "info", "debug")
    )
    worker.set_defaults(handler=cmd_worker)

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
                type=_positive_int,
                default=50,
                help="show the newest N (default 50; 0: all)",
            )
            sub.add_argument("--json", action="store_true", help="one JSON record per line")
    dlq_parser.set_defaults(handler=cmd_dlq)

    access_parser = commands.add_parser(
        "access",
        help="broker users for devices and partners; API tokens",
        description="Users of the broker's SASL listener (HUB_KAFKA_SASL_BOOTSTRAP, "
        "SCRAM-SHA-512): a device may only produce telemetry; a partner may only read its "
        "region's partner topics. add-device and add-partner print the username and a new "
        "password (again for an existing user: its password is replaced). Bearer tokens of the "
        "management API and web page: add-token prints a token once (only its hash is kept).",
    )
    access_actions = access_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    device = access_actions.add_parser(
        "add-device", help="a device that may only produce to testbed.telemetry.v1"
    )
    device.add_argument("device_id", help="a registered device, e.g. GJ-BUK-0012-CAM1")
    partner = access_actions.add_parser(
        "add-partner", help="a partner that may only read partner.<region>.* topics"
    )
    partner.add_argument("region", choices=["gwangju", "jeonnam"])
    partner.add_argument("name", help="the partner's name; its consumer groups are NAME.*")
    revoke = access_actions.add_parser("revoke", help="remove a user: new connections fail")
    revoke.add_argument("username", help="as printed by add-device / add-partner")
    token = access_actions.add_parser(
        "add-token",
        help="a bearer token for the management API and its web page (printed once)",
        description="operator sees everything; partner:<region> only that region's sites, "
        "alerts and overview rows; company:<company> only its demonstrations' scorecards, "
        "sites and alerts.",
    )
    token.add_argument(
        "role", help="operator, partner:gwangju, partner:jeonnam or company:<company>"
    )
    token.add_argument("name", help="who holds it, e.g. jeonnam-office (unique)")
    revoke_token = access_actions.add_parser(
        "revoke-token", help="withdraw an API token: its requests answer 401"
    )
    revoke_token.add_argument("name", help="as given to add-token")
    access_actions.add_parser("list-tokens", help="the API tokens issued: name, role, when")
    access_parser.set_defaults(handler=cmd_access)

    api = commands.add_parser(
        "api",
        help="the management API and its web page",
        description="Serve the management API (OpenAPI at /openapi.json, docs at /docs), the web "
        "page at / and /metrics. Runs the scheduled upkeep (hourly roll-up, retention).",
    )
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    api.add_argument("--port", type=_positive_int, default=0, help="default HUB_API_PORT (8000)")
    api.add_argument(
        "--loglevel", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    api.set_defaults(handler=cmd_api)

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
    rep.set_defaults(handler=cmd_report)

    upkeep = commands.add_parser(
        "upkeep",
        help="hourly roll-up and retention, once (hub api also runs it on a schedule)",
        description="Roll site_aggregates up into site_aggregates_hourly and drop chunks older "
        "than HUB_RETENTION_*_DAYS.",
    )
    upkeep.set_defaults(handler=cmd_upkeep)

    bench = commands.add_parser(
        "bench",
        help="the end-to-end benchmark against raw baselines",
        description="Raw ceilings (an aiokafka consumer with no processing; a raw COPY into "
        "TimescaleDB), the hub end to end over pre-loaded records with 1 and 2 workers, and "
        "latency at a fixed offered load (3,375 sites at 1 and 10 Hz). Brings the stack up.",
    )
    bench.add_argument(
        "--records",
        type=_positive_int,
        default=1_000_000,
        help="records pre-loaded for each end-to-end run (default 1,000,000)",
    )
    bench.add_argument(
        "--workers",
        type=_positive_int,
        nargs="+",
        default=[1, 2],
        help="worker counts to run end to end (default 1 2)",
    )
    bench.add_argument(
        "--latency-rates",
        type=_positive_float,
        nargs="*",
        default=[1.0, 10.0],
        help="per-site rates for the latency runs, Hz (default 1 10; none: skip)",
    )
    bench.add_argument(
        "--latency-duration",
        type=_positive_float,
        default=90.0,
        help="seconds of offered load per latency run (default 90)",
    )
    bench.add_argument(
        "--soak",
        type=_positive_float,
        metavar="MINUTES",
        help="instead: every Gwangju site at 1 Hz for MINUTES (30 for the record) with one "
        "worker on the default settings, sampling its memory and window close lag every 30 s "
        "and its consumer lag every second; exits 1 unless they stay flat",
    )
    bench.add_argument(
        "--kill-at",
        type=_positive_float,
        metavar="MINUTES",
        help="with --soak: SIGKILL the worker at this minute and start it again on the same "
        "directory (it drops its local state and restores from the changelog); the verdict "
        "then also requires its commits to keep reaching the log end",
    )
    bench.add_argument("--json", action="store_true", help="one JSON line on stdout")
    bench.set_defaults(handler=cmd_bench)

    demo = commands.add_parser(
        "demo",
        help="the main job end to end on the local stack",
        description="Stack up, registry loaded, workers and API started, every registered site "
        "of Gwangju and South Jeolla simulated with a live progress line; ends with the "
        "accounting check and the management overview. Stops what it started unless --keep.",
    )
    demo.add_argument(
        "--duration",
        type=_positive_float,
        default=120.0,
        help="seconds of simulated telemetry (default 120)",
    )
    demo.add_argument(
        "--rate", type=_positive_float, default=1.0, help="events per site per second (default 1)"
    )
    demo.add_argument("--workers", type=_positive_int, default=2, help="worker processes (2)")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="leave the stack, workers and API running to explore the web page",
    )
    demo.set_defaults(handler=cmd_demo)
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
