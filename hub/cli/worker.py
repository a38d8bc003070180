"""``hub worker``: a stream-processing worker."""

from __future__ import annotations

import argparse
from dataclasses import replace

from hub.cli.common import Commands, positive_int
from hub.settings import Settings


def add(commands: Commands) -> None:
    worker = commands.add_parser(
        "worker",
        help="a stream-processing worker (run several for more throughput)",
        description="Validate telemetry, window it by event time, judge KPIs and write the "
        "results to TimescaleDB and Kafka. Workers share the partitions of the telemetry topic: "
        "start several (each with its own --index) to spread the load.",
    )
    worker.add_argument(
        "--index",
        type=positive_int,
        default=0,
        help="this worker's number on the machine: its /metrics port is HUB_WORKER_WEB_PORT + "
        "index and its local state lives in $HUB_HOME/worker/<index> (default 0)",
    )
    worker.add_argument(
        "--loglevel", default="info", choices=("crit", "error", "warn", "info", "debug")
    )
    worker.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hub.worker import run_worker
    from streams.app import WorkerOptions

    worker = replace(settings, kafka_role="worker")  # hub-worker to the broker
    run_worker(worker, WorkerOptions(index=args.index), loglevel=args.loglevel)
    return 0
