"""Decode + validate telemetry v1: msgspec (what the hub uses) against pydantic v2, same rules;
then the whole pure processor of one partition (decode, validate, windows, journal, KPIs), on a
few ticks of every site and on whole minutes of one partition's sites at 1 Hz (windows closed,
quantiles taken, KPIs judged: the production case).

    python -m tooling.bench.validator [--records 10000] [--repeat 7] [--minutes 4]

Needs the ``bench`` extra for pydantic (``pip install -e '.[bench]'``). Prints the best of
``--repeat`` runs, in microseconds per record, over representative records built by the
simulator's device profiles. One core, no Kafka and no database: the floor under the hub's own
work, to hold against the raw consume rate of ``hub bench``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from hub import signing, telemetry
from hub.registry.files import read_registry
from hub.topics import TELEMETRY
from streams.processor import PartitionProcessor, ProcessorConfig, Record
from streams.snapshot import EMPTY, Snapshot, build_snapshot
from tooling.simulate.fleet import Fleet, build_fleet


def device_rows(partition: int | None = None) -> list[tuple[str, str, str, str, str]]:
    """The simulator's view of the registry's devices (of one partition's sites, if given)."""
    registry = read_registry()
    technology = {d.demonstration_id: d.technology for d in registry.demonstrations}
    sites = {s.site_id: s for s in registry.sites}
    rows = [
        (
            v.site_id,
            sites[v.site_id].region,
            sites[v.site_id].district,
            v.device_id,
            technology[v.demonstration_id],
        )
        for v in registry.devices
        if partition is None
        or EMPTY.partition_of(v.site_id, ProcessorConfig().partitions) == partition
    ]
    return rows


def representative_records(n: int) -> list[tuple[str, bytes]]:
    """(the sending device, the record) from the simulator's device profiles, every site."""
    fleet = Fleet(build_fleet(device_rows(), 0, seed=7), outage_per_hour=0.0, seed=7)
    records: list[tuple[str, bytes]] = []
    now = time.time()
    while len(records) < n:
        records.extend((device, value) for _, device, value in fleet.tick(now, 1.0))
        now += 1.0
    return records[:n]


def pydantic_validator() -> Callable[[bytes], object]:
    from pydantic import BaseModel, ConfigDict, Field, StringConstraints

    # pydantic's Rust regex has no look-ahead, and needs none: its `$` is the end of input.
    def rust(pattern: str) -> str:
        return pattern.replace("(?!\\n)", "")

    metric_name = Annotated[str, StringConstraints(pattern=rust(telemetry.METRIC_NAME_PATTERN))]
    finite = Annotated[float, Field(allow_inf_nan=False, strict=True)]

    class TelemetryModel(BaseModel):
        model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

        schema_: Literal["telemetry/1"] = Field(alias="schema")
        event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
        device_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
        site_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
        ts: Annotated[str, StringConstraints(pattern=rust(telemetry.TS_PATTERN))]
        kind: Literal["measurement", "heartbeat", "detection", "incident"]
        metrics: Annotated[dict[metric_name, finite | int], Field(min_length=1, max_length=64)]

    def validate(raw: bytes) -> object:
        message = TelemetryModel.model_validate_json(raw)
        return int(datetime.fromisoformat(message.ts).timestamp() * 1000)

    return validate


def registry_snapshot() -> Snapshot:
    """What the worker loads from the database, built from the registry files instead, with a
    key for every device (a key of 32 bytes, as `hub access add-device` issues)."""
    registry = read_registry()
    return build_snapshot(
        registry, {d.device_id: d.device_id.encode().ljust(32, b"k") for d in registry.devices}
    )


def signed_records(
    records: list[tuple[str, bytes]], snapshot: Snapshot, partitions: int
) -> list[Record]:
    """As the worker receives them: keyed by site, on the site's partition, signed, stamped."""
    stamp = int(time.time() * 1000)
    out = []
    for offset, (device_id, raw) in enumerate(records):
        device = snapshot.devices[device_id]
        key = device.current_key or b""
        out.append(
            Record(
                TELEMETRY,
                snapshot.partition_of(device.site_id, partitions),
                offset,
                device.site_id.encode(),
                raw,
                stamp,
                signing.headers(key, raw),
            )
        )
    return out


def timed_runs(
    incoming: list[Record], batch: int, repeat: int, now_ms: int | None = None
) -> tuple[float, int, int]:
    """A fresh partition-0 processor per run over ``incoming`` in batches: (best seconds,
    records accepted, windows closed) of the last run. ``now_ms``: the worker's clock, or each
    batch's last arrival when None."""
    snapshot = registry_snapshot()
    config = ProcessorConfig()
    best = math.inf
    accepted = closed = 0
    for _ in range(repeat):
        processor = PartitionProcessor(0, config)
        accepted = closed = 0
        start = time.perf_counter()
        for i in range(0, len(incoming), batch):
            part = incoming[i : i + batch]
            result = processor.process(part, snapshot, now_ms or part[-1].timestamp)
            accepted += result.counts.accepted
            closed += result.counts.windows_closed
        best = min(best, time.perf_counter() - start)
    return best, accepted, closed


def processor_us_per_record(records: list[tuple[str, bytes]], repeat: int) -> float:
    """A fresh partition processor per run, fed the records in batches of 500 as one partition.
    Every record must be accepted: a figure measured on a path of rejections would be false."""
    incoming = signed_records(records, registry_snapshot(), ProcessorConfig().partitions)
    seconds, accepted, _ = timed_runs(incoming, 500, repeat, int(time.time() * 1000) + 60_000)
    if accepted != len(records):
        raise RuntimeError(f"the processor accepted {accepted:,} of {len(records):,} records")
    return seconds / len(records) * 1e6


def partition_records(seconds: int, minutes_ago: int = 10) -> tuple[Snapshot, list[Record]]:
    """The registry's snapshot, and partition 0's sites at 1 Hz for ``seconds`` from a minute
    ``minutes_ago`` minutes back, each record signed and arriving 20 ms after its time."""
    snapshot = registry_snapshot()
    fleet = Fleet(build_fleet(device_rows(0), 0, seed=7), outage_per_hour=0.0, seed=7)
    first = (int(time.time()) // 60 - minutes_ago) * 60
    incoming: list[Record] = []
    for second in range(seconds):
        stamp = first + second + 0.5
        for site_id, device_id, raw in fleet.tick(stamp, 1.0):
            key = snapshot.devices[device_id].current_key or b""
            arrival = int(stamp * 1000) + 20
            incoming.append(
                Record(
                    TELEMETRY,
                    0,
                    len(incoming),
                    site_id.encode(),
                    raw,
                    arrival,
                    signing.headers(key, raw),
                )
            )
    return snapshot, incoming


def minutes_us_per_record(minutes: int, repeat: int) -> float:
    """Partition 0's sites at 1 Hz for ``minutes`` minutes and the lateness after them, in
    batches of 400 (what a fetch of 12 partitions gives one): every window closes inside the
    run."""
    _, incoming = partition_records(
        minutes * 60 + ProcessorConfig().lateness_ms // 1000 + 60, minutes + 10
    )
    seconds, accepted, closed = timed_runs(incoming, 400, repeat)
    if accepted != len(incoming) or not closed:
        raise RuntimeError(f"accepted {accepted:,} of {len(incoming):,}, {closed} windows")
    return seconds / len(incoming) * 1e6


def signature_us_per_record(records: list[tuple[str, bytes]], repeat: int) -> float:
    """The identity check alone: the record's header read and its HMAC-SHA256 checked against the
    device's key (also inside the processor's figure)."""
    devices = registry_snapshot().devices
    keyed = [(devices[device_id].current_key or b"", raw) for device_id, raw in records]
    signed = [(key, raw, signing.headers(key, raw)) for key, raw in keyed]
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for key, raw, headers in signed:
            presented = signing.presented(headers)
            if presented is None or not signing.verify(key, raw, presented):
                raise RuntimeError("a record's signature did not verify")
        best = min(best, time.perf_counter() - start)
    return best / len(records) * 1e6


def best_us_per_record(fn: Callable[[bytes], object], records: list[bytes], repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for raw in records:
            fn(raw)
        best = min(best, time.perf_counter() - start)
    return best / len(records) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--minutes", type=int, default=4, help="minutes of event time for the 1 Hz run"
    )
    args = parser.parse_args()
    records = representative_records(args.records)
    values = [raw for _, raw in records]
    now_ms = int(time.time() * 1000) + 3_600_000
    results = {
        "msgspec": best_us_per_record(lambda r: telemetry.decode(r, now_ms), values, args.repeat),
        "pydantic": best_us_per_record(pydantic_validator(), values, args.repeat),
        "signature": signature_us_per_record(records, args.repeat),
        "processor": processor_us_per_record(records, args.repeat),
        "processor_minutes": minutes_us_per_record(args.minutes, args.repeat),
    }
    size = sum(map(len, values)) / len(values)
    for name, us in results.items():
        if name == "signature":
            print("identity check (hub-signature header, HMAC-SHA256 under the device's key):")
        if name == "processor":
            print("whole processor (decode, validate, windows, journal, KPIs), one partition:")
        if name == "processor_minutes":
            print(f"the same over {args.minutes} whole minutes of partition 0's sites at 1 Hz:")
        print(f"{name:9s} {us:6.2f} us/record  ({1e6 / us:,.0f} records/s on one core)")
    print(
        f"records: {len(records):,}, mean size {size:.0f} bytes; "
        f"msgspec is {results['pydantic'] / results['msgspec']:.1f}x faster"
    )
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    main()
