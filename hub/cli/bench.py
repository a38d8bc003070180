"""``hub bench``: the end-to-end benchmark, or a soak."""

from __future__ import annotations

import argparse
import sys

from hub.cli.common import Commands, positive_float, positive_int, say
from hub.settings import Settings


def add(commands: Commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="the end-to-end benchmark against raw baselines",
        description="Raw ceilings (an aiokafka consumer with no processing; a raw COPY into "
        "TimescaleDB), the hub end to end over pre-loaded records with 1 and 2 workers, and "
        "latency at a fixed offered load (3,375 sites at 1 and 10 Hz). Brings the stack up.",
    )
    bench.add_argument(
        "--records",
        type=positive_int,
        default=1_000_000,
        help="records pre-loaded for each end-to-end run (default 1,000,000)",
    )
    bench.add_argument(
        "--workers",
        type=positive_int,
        nargs="+",
        default=[1, 2],
        help="worker counts to run end to end (default 1 2)",
    )
    bench.add_argument(
        "--latency-rates",
        type=positive_float,
        nargs="*",
        default=[1.0, 10.0],
        help="per-site rates for the latency runs, Hz (default 1 10; none: skip)",
    )
    bench.add_argument(
        "--latency-duration",
        type=positive_float,
        default=90.0,
        help="seconds of offered load per latency run (default 90)",
    )
    bench.add_argument(
        "--soak",
        type=positive_float,
        metavar="MINUTES",
        help="instead: every Gwangju site at 1 Hz for MINUTES (30 for the record) with one "
        "worker on the default settings, sampling its memory and window close lag every 30 s "
        "and its consumer lag every second; exits 1 unless they stay flat",
    )
    bench.add_argument(
        "--kill-at",
        type=positive_float,
        metavar="MINUTES",
        help="with --soak: SIGKILL the worker at this minute and start it again on the same "
        "directory (it drops its local state and restores from the changelog); the verdict "
        "then also requires its commits to keep reaching the log end",
    )
    bench.add_argument("--json", action="store_true", help="one JSON line on stdout")
    bench.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
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
