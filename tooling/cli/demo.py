"""``hub demo``: the main job end to end on the local stack."""

from __future__ import annotations

import argparse
import logging

from hub.cli.common import Commands, positive_float, positive_int, say
from hub.settings import Settings


def add(commands: Commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="the main job end to end on the local stack",
        description="Stack up, registry loaded, workers and API started, every registered site "
        "of Gwangju and South Jeolla simulated with a live progress line; ends with the "
        "accounting check and the management overview. Stops what it started unless --keep.",
    )
    demo.add_argument(
        "--duration",
        type=positive_float,
        default=120.0,
        help="seconds of simulated telemetry (default 120)",
    )
    demo.add_argument(
        "--rate", type=positive_float, default=1.0, help="events per site per second (default 1)"
    )
    demo.add_argument("--workers", type=positive_int, default=2, help="worker processes (2)")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="leave the stack, workers and API running to explore the web page",
    )
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from tooling.demo import DemoOptions, run_demo

    # The client libraries' own messages (aiokafka logs "Group Coordinator Request failed" over
    # and over while a fresh broker creates its offsets topic) go to a file, not between the
    # demo's lines; the demo reports what matters itself.
    logs = settings.home / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=logs / "clients.log",
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )

    options = DemoOptions(
        duration_s=args.duration, rate_hz=args.rate, workers=args.workers, keep=args.keep
    )
    run_demo(settings, options, say)
    return 0
