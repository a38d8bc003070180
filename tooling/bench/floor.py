"""The floor of ``hub bench``: the least any pipeline doing the hub's job has to do.

aiokafka consume with the hub's fetch settings, msgspec decode, count/sum/min/max per
(site, demonstration, metric, minute) in a dict, a COPY per closed minute, an offset commit —
nothing else: no validation beyond decoding, no signatures, no dedupe, no quantiles, no KPIs, no
state that survives a crash. One process per slice of the partitions (``hub bench`` starts as many
as it runs hub workers), each reporting when it first fetched and last committed.

**The checked floor** (``checked`` in the spec) adds the same checks per record the hub makes, by
the hub's own code: decode and validation, the registry (device, site, partition, declared metrics,
the demonstration's period), the signature by the key valid at append time
(``streams.intake.admit``), and de-duplication by (``device_id``, ``event_id``) over the hub's
horizon. What it still leaves out: quantiles, KPIs, the journal, partner topics, the DLQ, and
every crash guarantee.

    python -m tooling.bench.floor --spec SPEC.json --result RESULT.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from hub import principals, topics
from hub.db import connect
from hub.registry.files import read_registry
from hub.settings import Settings
from hub.telemetry import Rejected
from streams.database import load_snapshot
from streams.intake import admit
from streams.windows import event_digest

COLUMNS = ("bucket", "site_id", "demonstration_id", "metric", "count", "sum", "min", "max")


class Telemetry(msgspec.Struct, gc=False):
    device_id: str
    site_id: str
    ts: datetime
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class Spec:
    """What a floor process reads and where it writes (written by ``hub bench``)."""

    partitions: dict[int, tuple[int, int]]  # partition -> [start, end) offsets
    table: str
    group: str
    lateness_s: float
    checked: bool = False
    dedup_horizon_s: float = 600.0


Key = tuple[str, str, str]  # site, demonstration, metric


async def run(settings: Settings, spec: Spec) -> dict[str, float]:
    demonstration = {d.device_id: d.demonstration_id for d in read_registry().devices}
    decode = msgspec.json.Decoder(Telemetry).decode
    consumer = AIOKafkaConsumer(
        **principals.client(settings),
        group_id=spec.group,
        enable_auto_commit=False,
        max_partition_fetch_bytes=1024 * 1024,  # Faust's consumer_max_fetch_size, as the hub's
    )
    conn = await connect(settings)
    snapshot = await load_snapshot(conn) if spec.checked else None
    # (device_id, event_id) digests by arrival: two generations, each the horizon long, the
    # older dropped when a new one starts (a repeat within the horizon is always recognised).
    seen: dict[int, None] = {}
    older: dict[int, None] = {}
    generation_ms = int(spec.dedup_horizon_s * 1000)
    generation_end = 0
    refused = duplicates = 0
    await consumer.start()
    windows: dict[int, dict[int, dict[Key, list[float]]]] = {p: {} for p in spec.partitions}
    newest: dict[int, int] = dict.fromkeys(spec.partitions, 0)
    done: dict[int, int] = {p: start for p, (start, _) in spec.partitions.items()}
    first_fetch = last_commit = 0.0
    records = rows = 0
    lateness = spec.lateness_s

    async def close(partition: int, through_s: float) -> None:
        """COPY the partition's minutes that ended by ``through_s``, then commit its offset."""
        nonlocal rows, last_commit
        minutes = windows[partition]
        due = [m for m in minutes if m + 60 <= through_s]
        if not due and through_s != float("inf"):
            return
        out = [
            (datetime.fromtimestamp(m, UTC), *key, int(n), total, low, high)
            for m in due
            for key, (n, total, low, high) in minutes.pop(m).items()
        ]
        if out:
            await conn.copy_records_to_table(spec.table, records=out, columns=COLUMNS)
            rows += len(out)
        tp = TopicPartition(topics.TELEMETRY, partition)
        await consumer.commit({tp: done[partition]})
        last_commit = time.time()

    try:
        tps = [TopicPartition(topics.TELEMETRY, p) for p in spec.partitions]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, spec.partitions[tp.partition][0])
        remaining = set(spec.partitions)
        while remaining:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=settings.batch_max)
            if fetched and not first_fetch:
                first_fetch = time.time()
            for tp, messages in fetched.items():
                p = tp.partition
                end = spec.partitions[p][1]
                minutes = windows[p]
                high = newest[p]
                for message in messages:
                    if message.offset >= end:
                        break
                    if snapshot is not None:
                        arrival = message.timestamp
                        if arrival >= generation_end:
                            older, seen = seen, {}
                            generation_end = arrival + generation_ms
                        try:
                            admitted = admit(message, arrival, snapshot, settings.partitions)
                        except Rejected:
                            refused += 1
                            done[p] = message.offset + 1
                            continue
                        checked = admitted.event
                        digest = event_digest(checked.device_id, checked.event_id)
                        if digest in seen or digest in older:
                            duplicates += 1
                            done[p] = message.offset + 1
                            continue
                        seen[digest] = None
                        event = Telemetry(
                            checked.device_id,
                            checked.site_id,
                            datetime.fromtimestamp(checked.ts_ms / 1000, UTC),
                            checked.metrics,
                        )
                        demo = admitted.demonstration_id
                    else:
                        event = decode(message.value)
                        demo = demonstration.get(event.device_id, "")
                    minute = int(event.ts.timestamp()) // 60 * 60
                    high = max(high, minute)
                    open_ = minutes.get(minute)
                    if open_ is None:
                        open_ = minutes[minute] = {}
                    for metric, value in event.metrics.items():
                        key = (event.site_id, demo, metric)
                        acc = open_.get(key)
                        if acc is None:
                            open_[key] = [1, value, value, value]
                        else:
                            acc[0] += 1
                            acc[1] += value
                            if value < acc[2]:
                                acc[2] = value
                            if value > acc[3]:
                                acc[3] = value
                    records += 1
                    done[p] = message.offset + 1
                newest[p] = high
                if done[p] >= end:
                    await close(p, float("inf"))
                    remaining.discard(p)
                    consumer.pause(tp)
                else:
                    # A minute is closed once the partition's event time is a lateness past it.
                    await close(p, high - lateness)
    finally:
        await consumer.stop()
        await conn.close()
    return {
        "records": records,
        "refused": refused,
        "duplicates": duplicates,
        "rows": rows,
        "first_fetch": first_fetch,
        "last_commit": last_commit,
    }


def read_spec(path: Path) -> Spec:
    raw = json.loads(path.read_text())
    return Spec(
        partitions={int(p): (int(r[0]), int(r[1])) for p, r in raw["partitions"].items()},
        table=raw["table"],
        group=raw["group"],
        lateness_s=float(raw["lateness_s"]),
        checked=bool(raw.get("checked", False)),
        dedup_horizon_s=float(raw.get("dedup_horizon_s", 600.0)),
    )


def write_spec(path: Path, spec: Spec) -> None:
    path.write_text(
        json.dumps(
            {
                "partitions": {str(p): list(r) for p, r in spec.partitions.items()},
                "table": spec.table,
                "group": spec.group,
                "lateness_s": spec.lateness_s,
                "checked": spec.checked,
                "dedup_horizon_s": spec.dedup_horizon_s,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tooling.bench.floor", description=__doc__)
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    result = asyncio.run(run(Settings.from_env(), read_spec(args.spec)))
    partial = args.result.with_suffix(".partial")
    partial.write_text(json.dumps(result))
    partial.replace(args.result)  # whole, or not there: the bench reads it as soon as it exists


if __name__ == "__main__":
    main()
