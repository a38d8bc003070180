"""``hub bench --record-path``: the CPU one record costs in the hub's pure record path.

No broker, no database: the shipped registry, every site's devices signing with keys made here,
one partition's records at 1 Hz as ``hub bench`` pre-loads them (the same generator), handed to a
fresh :class:`PartitionProcessor` in fetches of ``fetch`` records, the way a worker receives
them. Each round processes every record once: intake, de-duplication, windows, closing, KPI
judgement, journal and DLQ encoding. CPU time (``time.process_time``) over records, the best
and the median of ``rounds``: what a change to the record path gains, without the harness and
the writes around it (``hub bench`` measures those).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from hub import topics
from hub.registry.files import read_registry
from hub.registry.model import Registry
from streams.processor import PartitionProcessor, ProcessorConfig, Record
from streams.snapshot import Snapshot, build_snapshot
from tooling.bench.load import Load
from tooling.simulate.fleet import SimSite, build_fleet

START_S = 1_795_600_200  # 2026-11-25T07:50:00Z: inside every shipped demonstration's period
PARTITIONS = 12


@dataclass(frozen=True, slots=True)
class RecordPath:
    records: int
    fetch: int
    rounds: list[float]  # us of CPU a record, one per round

    @property
    def best_us(self) -> float:
        return min(self.rounds)

    @property
    def median_us(self) -> float:
        return statistics.median(self.rounds)

    def line(self) -> dict[str, object]:
        return {
            "records": self.records,
            "fetch": self.fetch,
            "us_per_record_best": round(self.best_us, 2),
            "us_per_record_median": round(self.median_us, 2),
            "rounds_us": [round(r, 2) for r in self.rounds],
        }


def fleet(registry: Registry) -> tuple[list[SimSite], dict[str, bytes]]:
    """Every registered site with its devices, and a signing key per device."""
    technology = {d.demonstration_id: d.technology for d in registry.demonstrations}
    regions = {s.site_id: (s.region, s.district) for s in registry.sites}
    rows = [
        (d.site_id, *regions[d.site_id], d.device_id, technology[d.demonstration_id])
        for d in registry.devices
    ]
    sites = build_fleet(rows, 0, 1)
    return sites, {d.device_id: key_of(d.device_id) for d in registry.devices}


def key_of(device_id: str) -> bytes:
    """The signing key a device holds here: made from its id."""
    return device_id.encode().ljust(32, b"k")[:32]


def workload(records: int, partition: int = 0) -> tuple[Snapshot, list[Record]]:
    """The snapshot, and ``records`` of one partition, one second of event time after another,
    each appended 50 ms after its event time."""
    registry = read_registry()
    sites, keys = fleet(registry)
    snapshot = build_snapshot(registry, keys)
    load = Load(sites, keys, PARTITIONS, run="record-path")
    out: list[Record] = []
    second = START_S
    while len(out) < records:
        appended = second * 1000 + 50
        for part, key, value, headers in load.tick(second):
            if part == partition:
                offset = len(out)
                out.append(Record(topics.TELEMETRY, part, offset, key, value, appended, headers))
        second += 1
    return snapshot, out[:records]


def measure(
    records: int,
    fetch: int,
    rounds: int,
    say: Callable[[str], None],
    make: Callable[[int, ProcessorConfig], PartitionProcessor] = PartitionProcessor,
) -> RecordPath:
    snapshot, batch = workload(records)
    say(f"record path: {len(batch):,} records of partition 0, fetches of {fetch:,}")
    fetches = [batch[i : i + fetch] for i in range(0, len(batch), fetch)]
    config = ProcessorConfig(partitions=PARTITIONS)
    results: list[float] = []
    for n in range(rounds):
        processor = make(0, config)
        gc.collect()
        begun = time.process_time()
        for records_of_fetch in fetches:
            now_ms = records_of_fetch[-1].timestamp + 100
            result = processor.process(records_of_fetch, snapshot, now_ms)
            if result.resume_at is not None or result.counts.accepted != len(records_of_fetch):
                raise AssertionError(
                    f"the record path refused good records: {result.counts} "
                    f"(resume_at {result.resume_at})"
                )
        spent = time.process_time() - begun
        results.append(spent / len(batch) * 1e6)
        say(f"  round {n + 1}: {results[-1]:.2f} us a record")
    return RecordPath(len(batch), fetch, results)
