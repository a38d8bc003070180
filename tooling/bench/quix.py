"""The peer of ``hub bench``: the hub's job as a Quix Streams user would write it.

Written from Quix Streams' documentation (Application, StreamingDataFrame, stateful functions,
``tumbling_window(...).agg(...).final()``, ``Collect``, ``PostgreSQLSink``), without tuning:

* ``filter(checked, metadata=True)``: the hub's own checks per record (``streams.intake.admit``:
  schema, registry, signature by the key valid at append time, site, partition, declared metrics,
  the demonstration's period, clock skew);
* ``filter(first_time, stateful=True)``: de-duplication by (``device_id``, ``event_id``) in the
  key's (the site's) state, forgotten a horizon after arrival;
* a tumbling window of one minute per key (the site), the hub's lateness as grace, every
  record's (demonstration, metrics) collected (``Collect``); at close, count, sum, min, max and
  p50/p95/p99 per (site, demonstration, metric);
* RocksDB state with changelog topics (Quix's defaults), rows through ``PostgreSQLSink`` into a
  table shaped like ``site_aggregates``; at-least-once, commits every 5 s (Quix's defaults).

    python -m tooling.bench.quix --spec SPEC.json --status STATUS.json --index N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quixstreams import Application, State, message_context
from quixstreams.dataframe.windows.aggregations import Collect
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.sinks.community.postgresql import PostgreSQLSink

from hub import principals, topics
from hub.db import connect
from hub.settings import Settings
from hub.telemetry import Rejected
from streams.database import load_snapshot
from streams.intake import admit
from streams.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Record:
    """What ``admit`` reads of a Kafka record."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Any


def nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def rows_of(window: dict[str, Any], key: bytes, timestamp: int, headers: Any) -> list[Any]:
    """One row per (demonstration, metric) of a closed site window."""
    values: dict[tuple[str, str], list[float]] = {}
    for item in window["items"]:
        for metric, value in item["metrics"].items():
            values.setdefault((item["demonstration_id"], metric), []).append(value)
    bucket = datetime.fromtimestamp(window["start"] / 1000, UTC)
    rows = []
    for (demonstration, metric), series in values.items():
        ordered = sorted(series)
        rows.append(
            {
                "bucket": bucket,
                "site_id": key.decode(),
                "demonstration_id": demonstration,
                "metric": metric,
                "count": len(ordered),
                "sum": sum(ordered),
                "min": ordered[0],
                "max": ordered[-1],
                "p50": nearest_rank(ordered, 0.5),
                "p95": nearest_rank(ordered, 0.95),
                "p99": nearest_rank(ordered, 0.99),
            }
        )
    return rows


def build(
    settings: Settings, snapshot: Snapshot, spec: dict[str, Any], state_dir: Path
) -> tuple[Application, dict[int, int]]:
    """The application, and the offsets it processed per partition (updated as it runs)."""
    reached: dict[int, int] = {}

    def processed(topic: str, partition: int, offset: int) -> None:
        if topic == topics.TELEMETRY:
            reached[partition] = offset

    app = Application(
        broker_address=ConnectionConfig.from_librdkafka_dict(principals.librdkafka(settings)),
        consumer_group=spec["group"],
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
        on_message_processed=processed,
    )
    telemetry = app.topic(topics.TELEMETRY, key_deserializer="bytes", value_deserializer="bytes")
    horizon_minutes = int(spec["dedup_horizon_s"]) // 60

    def checked(value: bytes, key: bytes, timestamp: int, headers: Any) -> dict[str, Any] | None:
        """The hub's checks; the event as a dict, or None if the hub would reject it."""
        context = message_context()
        record = Record(
            topics.TELEMETRY, context.partition, context.offset, timestamp, key, value, headers
        )
        try:
            admitted = admit(record, timestamp, snapshot, settings.partitions)
        except Rejected:
            return None
        event = admitted.event
        return {
            "device_id": event.device_id,
            "event_id": event.event_id,
            "ts": event.ts_ms,
            "demonstration_id": admitted.demonstration_id,
            "metrics": event.metrics,
        }

    def first_time(event: dict[str, Any], state: State[str, Any]) -> bool:
        """Not seen in this site's state yet. Ids are kept per arrival minute; the minutes a
        horizon old are dropped with their ids."""
        digest = f"{event['device_id']}\x00{event['event_id']}"
        if state.get(digest) is not None:
            return False
        minute = int(time.time()) // 60
        state.set(digest, minute)
        ids = state.get(f"@{minute}", [])
        ids.append(digest)
        state.set(f"@{minute}", ids)
        oldest = state.get("@oldest", minute)
        while oldest < minute - horizon_minutes:
            for old in state.get(f"@{oldest}", []):
                state.delete(old)
            state.delete(f"@{oldest}")
            oldest += 1
        state.set("@oldest", oldest)
        return True

    sdf = app.dataframe(telemetry)
    sdf = sdf.apply(checked, metadata=True)
    sdf = sdf.filter(lambda event: event is not None)
    sdf = sdf.filter(first_time, stateful=True)
    sdf = sdf.set_timestamp(lambda event, key, timestamp, headers: event["ts"])
    sdf = sdf.apply(lambda e: {"demonstration_id": e["demonstration_id"], "metrics": e["metrics"]})
    windows = sdf.tumbling_window(duration_ms=60_000, grace_ms=int(spec["lateness_s"] * 1000))
    # The partition's event time closes every site's window (as the hub's does).
    closed = windows.agg(items=Collect()).final(closing_strategy="partition")
    rows = closed.apply(rows_of, expand=True, metadata=True)
    database = settings.database
    rows.sink(
        PostgreSQLSink(
            host=database.host,
            port=database.port,
            dbname=database.dbname,
            user=database.user,
            password=database.password,
            table_name=spec["table"],
            schema_auto_update=False,
            include_metadata=False,
            # A window written again (at-least-once) replaces its row.
            primary_key_columns=["site_id", "demonstration_id", "metric", "bucket"],
            upsert_on_primary_key=True,
        )
    )
    return app, reached


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tooling.bench.quix", description=__doc__)
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args()
    settings = Settings.from_env()
    spec = json.loads(args.spec.read_text())

    async def read_snapshot() -> Snapshot:
        conn = await connect(settings)
        try:
            return await load_snapshot(conn)
        finally:
            await conn.close()

    snapshot = asyncio.run(read_snapshot())
    state_dir = args.spec.parent / f"{spec['group']}-{args.index}"
    app, reached = build(settings, snapshot, spec, state_dir)
    ends = {int(p): int(r[1]) for p, r in spec["partitions"].items()}

    def report() -> None:
        """Every half second: when the first record was processed, and when each partition's
        last record was (read by ``hub bench``)."""
        first: float | None = None
        done: dict[int, float] = {}
        while True:
            now = time.time()
            if reached and first is None:
                first = now
            for partition, offset in list(reached.items()):
                if offset + 1 >= ends.get(partition, 0):
                    done.setdefault(partition, now)
            partial = args.status.with_suffix(".partial")
            partial.write_text(json.dumps({"first": first, "reached": done}))
            partial.replace(args.status)
            time.sleep(0.5)

    threading.Thread(target=report, daemon=True).start()
    app.run()


if __name__ == "__main__":
    main()
