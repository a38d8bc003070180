"""``hub simulate``: registered devices of N sites publishing telemetry."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from hub.cli.common import Commands, fraction, positive_float, positive_int
from hub.settings import Settings


def add(commands: Commands) -> None:
    sim = commands.add_parser(
        "simulate",
        help="devices of N registered sites publishing telemetry",
        description="Drive registered devices (from the loaded registry) with per-technology "
        "profiles: latency distributions, detections, outages and reconnects. Ends by printing "
        "how many records were sent, by kind, and the bad ones by reason.",
    )
    sim.add_argument("--sites", type=positive_int, default=100, help="sites (0: all; default 100)")
    sim.add_argument(
        "--rate", type=positive_float, default=1.0, help="events per site per second (default 1)"
    )
    sim.add_argument(
        "--duration", type=positive_float, default=60.0, help="seconds to run (default 60)"
    )
    sim.add_argument(
        "--bad-fraction",
        type=fraction,
        default=0.0,
        help="share of records made invalid on purpose, one DLQ reason each (default 0)",
    )
    sim.add_argument("--region", help="only this region's sites (gwangju, jeonnam, or one added)")
    sim.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    sim.add_argument("--json", action="store_true", help="print the tally as one JSON line")
    sim.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from tooling.simulate import SimulationOptions, progress_printer, simulate, summary

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
