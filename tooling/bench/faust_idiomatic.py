"""The hub's job written as Faust's documentation teaches it, for ``hub bench`` to hold against.

A ``faust.Record`` model, an agent that sees one event at a time, a tumbling table of one-minute
windows relative to the event's time with ``on_window_close`` writing the closed windows (as
Faust's ``examples/windowed_aggregation.py``), its changelog in Kafka, an in-memory store. No
signatures, dedupe, quantiles or KPIs: it does less than the hub, so it flatters Faust.

Faust closes windowed keys by the wall clock (``expires`` after the window's end), calls
``on_window_close`` only for windows starting after the last one it closed on any partition
(faust-streaming/faust#172), and counts every set of a key as a new expiry entry; the bench
reports what it wrote next to what it read rather than hiding it.

    python -m tooling.bench.faust_idiomatic --spec SPEC.json --status STATUS.json --index I
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import StreamT

from hub import topics
from hub.db import connect
from hub.registry.files import read_registry
from hub.settings import Settings
from streams.app import broker_credentials

COLUMNS = ("bucket", "site_id", "demonstration_id", "metric", "count", "sum", "min", "max")


class Telemetry(faust.Record, isodates=True, serializer="json"):
    event_id: str
    device_id: str
    site_id: str
    ts: datetime
    kind: str
    metrics: dict[str, float]


def create_app(settings: Settings, spec: dict[str, Any], status: Path, index: int) -> faust.App:
    ends = {int(p): int(r[1]) for p, r in spec["partitions"].items()}
    demonstration = {d.device_id: d.demonstration_id for d in read_registry().devices}
    app = faust.App(
        spec["group"],
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=str(settings.home / "bench" / f"{spec['group']}-{index}"),
        topic_partitions=settings.partitions,
        table_cleanup_interval=1.0,
        web_enabled=False,
    )
    source = app.topic(topics.TELEMETRY, value_type=Telemetry)
    closed: list[tuple[Any, ...]] = []

    def window_closed(key: Any, value: Any) -> None:
        name, (start, _) = key
        site, demo, metric = name.split("|")
        n, total, low, high = value
        closed.append((datetime.fromtimestamp(start, UTC), site, demo, metric, n, total, low, high))

    aggregates = (
        app.Table("aggregates", default=list, on_window_close=window_closed)
        .tumbling(60, expires=timedelta(seconds=spec["lateness_s"]))
        .relative_to_field(Telemetry.ts)  # type: ignore[arg-type]  # a field descriptor
    )
    progress: dict[str, Any] = {"first": 0.0, "reached": {}, "rows": 0, "records": 0}

    @app.agent(source)
    async def aggregate(stream: StreamT[Telemetry]) -> None:
        async for event in stream.events():
            message = event.message
            if message.offset >= ends.get(message.partition, 0):
                continue
            if not progress["first"]:
                progress["first"] = time.time()
            value = cast(Telemetry, event.value)
            demo = demonstration.get(value.device_id, "")
            for metric, number in value.metrics.items():
                key = f"{value.site_id}|{demo}|{metric}"
                acc = aggregates[key].value()
                if acc:
                    aggregates[key] = [
                        acc[0] + 1,
                        acc[1] + number,
                        min(acc[2], number),
                        max(acc[3], number),
                    ]
                else:
                    aggregates[key] = [1, number, number, number]
            progress["records"] += 1
            if message.offset + 1 >= ends[message.partition]:
                progress["reached"][str(message.partition)] = time.time()

    @app.timer(interval=0.5)  # type: ignore[untyped-decorator]
    async def flush() -> None:
        """Write the windows closed since the last flush, and tell the bench how far it is."""
        if closed:
            rows = latest(closed)
            del closed[:]
            conn = await connect(settings)
            try:
                await upsert(conn, spec["table"], rows)
            finally:
                await conn.close()
            progress["rows"] += len(rows)
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps(progress))
        tmp.replace(status)

    del aggregate, flush
    return app


def latest(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One row per window, the last closed: Faust may close a window again (after a rebalance,
    seen once in `hub bench`), and a downstream keyed by window takes its latest."""
    return list({row[:4]: row for row in rows}.values())


async def upsert(conn: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
    """COPY into a staging table, then merged by window: a repeated close replaces the row."""
    columns = ", ".join(COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[4:])
    async with conn.transaction():
        await conn.execute(
            f"CREATE TEMP TABLE staged (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await conn.copy_records_to_table("staged", records=rows, columns=COLUMNS)
        await conn.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM staged "
            f"ON CONFLICT (site_id, demonstration_id, metric, bucket) DO UPDATE SET {updates}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tooling.bench.faust_idiomatic", description=__doc__
    )
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    app = create_app(Settings.from_env(), spec, args.status, args.index)
    all_ready(args.status, args.index, int(spec.get("workers", 1)))
    sys.argv = [parser.prog, "worker", "--loglevel", "warn", "--without-web"]
    app.main()


def all_ready(status: Path, index: int, workers: int, timeout_s: float = 120.0) -> None:
    """Join the group together: the worker that starts consuming alone and is joined later
    by the others can stop for good in that rebalance (its agent waiting on a full producer
    buffer: faust-streaming/faust#133, #173). Each worker says it is ready beside its status
    file, and waits for the others' (imports and set-up take seconds, and not the same)."""
    mine = status.with_name(status.name.replace(f"-{index}.status", f"-{index}.ready"))
    mine.write_text("ready\n")
    others = [mine.with_name(mine.name.replace(f"-{index}.", f"-{i}.")) for i in range(workers)]
    deadline = time.monotonic() + timeout_s
    while not all(path.exists() for path in others) and time.monotonic() < deadline:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
