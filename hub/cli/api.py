"""``hub api``: the management API and its web page."""

from __future__ import annotations

import argparse
from dataclasses import replace

from hub.cli.common import Commands, positive_int
from hub.settings import Settings


def add(commands: Commands) -> None:
    api = commands.add_parser(
        "api",
        help="the management API and its web page",
        description="Serve the management API (OpenAPI at /openapi.json, docs at /docs), the web "
        "page at / and /metrics. Runs the scheduled upkeep (hourly roll-up, retention).",
    )
    api.add_argument(
        "--host", default="", help="address to bind (default HUB_BIND_HOST, else 127.0.0.1)"
    )
    api.add_argument("--port", type=positive_int, default=0, help="default HUB_API_PORT (8000)")
    api.add_argument(
        "--loglevel", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    api.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn
    from prometheus_client import disable_created_metrics

    from hub.api.app import create_api

    disable_created_metrics()  # type: ignore[no-untyped-call]
    port = args.port or settings.api_port
    host = args.host or settings.bind_host
    api = create_api(replace(settings, kafka_role="api"))  # hub-api to the broker
    uvicorn.run(api, host=host, port=port, log_level=args.loglevel)
    return 0
