"""``hub bench``: the end-to-end benchmark, or a soak."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from hub.cli.common import Commands, positive_float, positive_int, say
from hub.settings import Settings


def add(commands: Commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="the hub against floor pipelines and idiomatic Faust, then the rate it sustains",
        description="Pre-loads every registered site at --rate Hz for --minutes minutes of event "
        "time, then runs on exactly those records, with --workers processes each: the hub end "
        "to end (default settings), a floor pipeline (consume, decode, per-minute sums, COPY, "
        "commit), the floor with the hub's checks (decode, registry, signature, de-duplication) "
        "and the same job in idiomatic Faust (an agent per record, a tumbling table) on a "
        "sample. Then every registered site against the hub at stepped rates (--latency-rates, "
        "--latency-minutes each) until a step's close-lag p99 exceeds 1 s: close lag (row "
        "visible - (window end + lateness)), queryable (row visible - broker time of the "
        "window's last record) and the rate sustained. Brings the stack up; progress on stderr. "
        "Every process it starts is in its process group and ends with it.",
    )
    bench.add_argument(
        "--minutes",
        type=positive_int,
        default=5,
        help="minutes of event time pre-loaded (default 5)",
    )
    bench.add_argument(
        "--rate",
        type=positive_float,
        default=1.0,
        help="records per site per second of event time pre-loaded (default 1)",
    )
    bench.add_argument(
        "--workers",
        type=positive_int,
        default=2,
        help="processes of each pipeline (default 2)",
    )
    bench.add_argument(
        "--latency-minutes",
        type=int,
        default=3,
        help="minutes of windows judged at each rate (default 3; 0 skips the latency phase)",
    )
    bench.add_argument(
        "--latency-rates",
        type=rates,
        default=(1.0, 10.0),
        metavar="HZ,HZ,...",
        help="records per site per second, stepped up in this order (default 1,10: the "
        "programme's load, then ten times it; 1,2.5,5,10 finds the rate between when 10 does "
        "not hold, three minutes more a step)",
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
    bench.add_argument(
        "--no-faust",
        action="store_true",
        help="skip idiomatic Faust (about 15 minutes here): its ratio is then null; for trying "
        "a change, not for the record",
    )
    bench.add_argument(
        "--no-quix",
        action="store_true",
        help="skip Quix Streams (the peer): its ratio is then null; for trying a change",
    )
    bench.add_argument(
        "--faust-sample",
        type=positive_int,
        default=96_000,
        metavar="RECORDS",
        help="idiomatic Faust reads the first RECORDS of the workload, spread over the "
        "partitions (default 96,000: about two minutes here; 0 reads it all, about 15 minutes)",
    )
    bench.add_argument("--json", action="store_true", help="one JSON line on stdout")
    bench.set_defaults(handler=run)


def rates(text: str) -> tuple[float, ...]:
    """``1,2.5,5``: positive rates, rising."""
    values = tuple(positive_float(part.strip()) for part in text.split(",") if part.strip())
    if not values or list(values) != sorted(set(values)):
        raise argparse.ArgumentTypeError(f"{text!r}: positive rates, rising, e.g. 1,2.5,5,10")
    return values


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub.registry.load import ensure_loaded
    from tooling.bench.e2e import BenchOptions, as_json, run_bench, table
    from tooling.stack import Stack

    Stack(settings).up(lambda line: print(line, file=sys.stderr, flush=True))
    loaded = asyncio.run(ensure_loaded(settings))
    if loaded is not None:
        print(
            f"no registry was loaded: loaded the shipped one ({loaded.counts['sites']:,} sites, "
            f"{loaded.counts['devices']:,} devices)",
            file=sys.stderr,
            flush=True,
        )
    progress = (
        (lambda line: print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True))
        if args.json
        else say
    )
    if args.soak is not None:
        from tooling.bench.soak import as_json as soak_json
        from tooling.bench.soak import run_soak

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
        minutes=args.minutes,
        rate_hz=args.rate,
        workers=args.workers,
        latency_minutes=max(0, args.latency_minutes),
        latency_rates_hz=args.latency_rates,
        faust=not args.no_faust,
        faust_sample=args.faust_sample,
        quix=not args.no_quix,
    )
    report = run_bench(settings, options, progress)
    print(as_json(report) if args.json else table(report))
    return 0
