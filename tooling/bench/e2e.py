"""``hub bench``: the hub against a floor pipeline, a checked floor and idiomatic Faust, on the
same records, with the same number of processes, in one run; then the rate it sustains.

1. **workload**: every registered site at 1 Hz for whole minutes of event time (5 by default),
   pre-loaded into ``testbed.telemetry.v1`` (``tooling.bench.workload``);
2. **the hub end to end**: a fresh hub (its own consumer group and state) at its default settings
   reads exactly those records; the clock runs from its first fetch to the last window written
   (closed windows, KPIs judged, alerts raised, rows merged); its rate is also given from the
   moment its group settled (``records_per_s_settled``: the start-up rebalance excluded);
3. **the floor** (``tooling.bench.floor``), **the checked floor** (the floor plus the hub's checks
   per record) and **idiomatic Faust** (``tooling.bench.faust_idiomatic``, on a sample: the first
   records of each partition) on the same records, each into a table of its own, clocked from
   first fetch to last commit;
4. **latency** (``tooling.bench.latency``): every registered site at stepped rates against a
   fresh hub at the default lateness, until a step's close-lag p99 exceeds 1 s: the rate
   sustained, and ``close_lag`` and ``queryable`` per row at each rate.

Every pipeline is counted: ``sum(count)`` of the ``online`` metric, which every record carries,
against the records it read.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hub import principals
from hub.db import connect
from hub.errors import HubError
from hub.settings import Settings
from tooling.bench import floor
from tooling.bench.latency import SteppedResult, measure
from tooling.bench.workload import Workload, preload
from tooling.localrun import (
    Process,
    drop_hub_topics,
    fresh_hub,
    scrape,
    total,
    wait_for,
)

POLL_S = 0.1


@dataclass(slots=True)
class BenchOptions:
    minutes: int = 5
    rate_hz: float = 1.0
    workers: int = 2
    latency_minutes: int = 3  # per step
    latency_rates_hz: tuple[float, ...] = (1.0, 10.0)
    faust: bool = True
    quix: bool = True
    # Idiomatic Faust reads ~800 records/s here: it gets the first records of each partition, this
    # many in all (the workload's first seconds of event time on every partition), not the whole.
    faust_sample: int = 96_000


@dataclass(frozen=True, slots=True)
class PipelineRun:
    name: str
    records: int
    seconds: float
    counted: int  # sum(count) of `online` over the workload's minutes
    # The hub's rate once its group has settled (see ``run_hub``): records accepted after that
    # moment, and the seconds from it to the last window written.
    settled: tuple[int, float] | None = None

    @property
    def per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def settled_per_s(self) -> float | None:
        if self.settled is None or not self.settled[1]:
            return None
        return self.settled[0] / self.settled[1]

    @property
    def exact(self) -> bool:
        return self.counted == self.records


@dataclass(slots=True)
class Report:
    options: BenchOptions
    workload: Workload | None = None
    runs: dict[str, PipelineRun] = field(default_factory=dict)
    latency: SteppedResult | None = None
    stalled: str | None = None  # why idiomatic Faust has no figure

    def line(self) -> dict[str, object]:
        def rate(name: str) -> float | None:
            run = self.runs.get(name)
            return round(run.per_s, 1) if run else None

        hub, low, faust = rate("hub"), rate("floor"), rate("faust_idiomatic")
        quix = rate("quix")
        checked = rate("floor_checked")
        hub_run = self.runs.get("hub")
        settled = hub_run.settled_per_s if hub_run else None
        lat = self.latency
        programme = lat.at(1.0) if lat else None  # the programme's load: every site at 1 Hz
        return {
            "records_per_s": hub,
            "floor_records_per_s": low,
            "floor_checked_records_per_s": checked,
            "faust_idiomatic_records_per_s": faust,
            "quix_records_per_s": quix,
            "faust_idiomatic_records": (
                self.runs["faust_idiomatic"].records if "faust_idiomatic" in self.runs else None
            ),
            "faust_idiomatic_stalled": self.stalled,
            "close_lag_p99_s": programme.close_lag_p99_s if programme else None,
            "queryable_p99_s": programme.queryable_p99_s if programme else None,
            "sustained_records_per_s": lat.sustained_records_per_s if lat else None,
            "workers": self.options.workers,
            "machine": machine(),
            "hub_to_floor": round(hub / low, 3) if hub and low else None,
            "hub_to_floor_checked": round(hub / checked, 3) if hub and checked else None,
            "hub_to_faust_idiomatic": round(hub / faust, 2) if hub and faust else None,
            "hub_to_quix": round(hub / quix, 2) if hub and quix else None,
            "records_per_s_settled": round(settled, 1) if settled else None,
            "settled_to_floor": round(settled / low, 3) if settled and low else None,
            "records": self.workload.records if self.workload else 0,
            "sites": self.workload.sites if self.workload else 0,
            "event_minutes": self.options.minutes,
            "rate_hz": self.options.rate_hz,
            "counted": {name: run.counted for name, run in self.runs.items()},
            "seconds": {name: round(run.seconds, 2) for name, run in self.runs.items()},
            "latency": asdict(lat) if lat else None,
        }


def machine() -> dict[str, object]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
        "kafka_and_database": "same machine",
    }


async def counted(settings: Settings, table: str, workload: Workload) -> int:
    conn = await connect(settings)
    try:
        found = await conn.fetchval(
            f"SELECT coalesce(sum(count), 0) FROM {table} WHERE metric = 'online' "
            "AND bucket >= to_timestamp($1) AND bucket < to_timestamp($2)",
            float(workload.first_minute_s),
            float(workload.end_minute_s),
        )
    finally:
        await conn.close()
    return int(found)


async def scratch_table(settings: Settings, name: str, drop: bool = False) -> None:
    """A hypertable shaped like site_aggregates (its key and indexes too) for a baseline's rows."""
    conn = await connect(settings)
    try:
        if drop:
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
            return
        await conn.execute(f"CREATE TABLE {name} (LIKE site_aggregates INCLUDING ALL)")
        await conn.execute(
            f"SELECT create_hypertable('{name}', by_range('bucket', INTERVAL '6 hours'))"
        )
    finally:
        await conn.close()


def logs(settings: Settings) -> Path:
    path = settings.home / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- the hub -------------------------------------------------------------------------------------


def start_workers(settings: Settings, count: int, name: str, app_id: str) -> list[Process]:
    return [
        Process(
            f"worker {i}",
            ["worker", "--index", str(i)],
            logs(settings) / f"{name}-worker-{i}.log",
            {"HUB_APP_ID": app_id},
        )
        for i in range(count)
    ]


def worker_ports(settings: Settings, count: int) -> list[int]:
    return [settings.worker_web_port + i for i in range(count)]


def closed_through(settings: Settings, count: int) -> list[float]:
    return [
        v
        for port in worker_ports(settings, count)
        for k, v in scrape(port).items()
        if k.startswith("hub_windows_closed_through_timestamp_seconds")
    ]


def poll(check: Callable[[], bool], what: str, timeout_s: float, processes: list[Process]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        for process in processes:
            process.check()
        if time.monotonic() > deadline:
            wait_for(check, what, 0, processes)  # raises, naming what was awaited
        time.sleep(POLL_S)


def run_hub(
    settings: Settings, workload: Workload, workers: int, say: Callable[[str], None]
) -> PipelineRun:
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    asyncio.run(fresh_hub(settings, app_id, {tp: r[0] for tp, r in workload.ranges.items()}))
    processes = start_workers(settings, workers, "hub", app_id)
    try:
        poll(
            lambda: (
                total(
                    [scrape(p) for p in worker_ports(settings, workers)],
                    "hub_records_received_total",
                )
                > 0
            ),
            "the hub's first record",
            300,
            processes,
        )
        started = time.perf_counter()
        settled = settle(settings, workers, processes)

        def done() -> bool:
            through = closed_through(settings, workers)
            return len(through) == settings.partitions and min(through) >= workload.end_minute_s

        poll(done, "the hub's last window", 1800, processes)
        ended = time.perf_counter()
    finally:
        for process in processes:
            process.stop()
        asyncio.run(drop_hub_topics(settings, app_id))
    found = asyncio.run(counted(settings, "site_aggregates", workload))
    at, accepted = settled
    return PipelineRun(
        "hub", workload.records, ended - started, found, (workload.records - accepted, ended - at)
    )


def settle(settings: Settings, workers: int, processes: list[Process]) -> tuple[float, int]:
    """When the hub's group settled, and the records accepted by then.

    The workers join one after the other: the first takes every partition and reads alone until
    the group rebalances (the broker waits for its next heartbeat, up to 3 s), then the second
    restores half of it from the changelog. Production workers pay that on a deploy, not per
    record; the floor assigns its partitions statically and never does. Settled: every worker
    holds partitions and has received records since."""

    def ready() -> bool:
        samples = [scrape(p) for p in worker_ports(settings, workers)]
        held = [s.get("hub_partitions_assigned", 0) for s in samples]
        return (
            all(held)
            and sum(held) == settings.partitions
            and all(s.get("hub_records_received_total", 0) > 0 for s in samples)
        )

    poll(ready, "the hub's group to settle", 300, processes)
    at = time.perf_counter()
    accepted = total(
        [scrape(p) for p in worker_ports(settings, workers)], "hub_records_accepted_total"
    )
    return at, int(accepted)


# -- the floor -----------------------------------------------------------------------------------


def slices(workload: Workload, count: int) -> list[dict[int, tuple[int, int]]]:
    ranges = sorted(workload.by_partition.items())
    return [dict(ranges[i::count]) for i in range(count)]


def run_floor(
    settings: Settings, workload: Workload, workers: int, checked: bool = False
) -> PipelineRun:
    pipeline = "floor_checked" if checked else "floor"
    name = f"bench_{pipeline}_{uuid.uuid4().hex[:8]}"
    asyncio.run(scratch_table(settings, name))
    results = []
    processes = []
    try:
        for i, part in enumerate(slices(workload, workers)):
            spec_path = logs(settings) / f"{name}-{i}.spec.json"
            result = logs(settings) / f"{name}-{i}.result.json"
            floor.write_spec(
                spec_path,
                floor.Spec(
                    part,
                    name,
                    f"{name}-group",
                    settings.allowed_lateness_s,
                    checked,
                    settings.dedup_horizon_s,
                ),
            )
            processes.append(
                Process(
                    f"{pipeline} {i}",
                    ["--spec", str(spec_path), "--result", str(result)],
                    logs(settings) / f"{name}-{i}.log",
                    {},
                    module="tooling.bench.floor",
                )
            )
            results.append(result)

        def finished() -> bool:
            for process, result in zip(processes, results, strict=True):
                if not result.exists():
                    process.check()  # a process that exited without its result failed
            return all(r.exists() for r in results)

        poll(finished, "the floor's last commit", 1800, [])
        outcome = [json.loads(r.read_text()) for r in results]
        seconds = max(o["last_commit"] for o in outcome) - min(o["first_fetch"] for o in outcome)
        found = asyncio.run(counted(settings, name, workload))
    finally:
        for process in processes:
            process.stop()
        asyncio.run(scratch_table(settings, name, drop=True))
        for path in logs(settings).glob(f"{name}-*.json"):
            path.unlink()
    return PipelineRun(pipeline, workload.records, seconds, found)


# -- idiomatic Faust -----------------------------------------------------------------------------


def sample(ranges: dict[int, tuple[int, int]], records: int) -> dict[int, tuple[int, int]]:
    """The first ``records`` of the ranges in all, as evenly as the partitions allow."""
    each = -(-records // max(1, len(ranges)))
    return {p: (start, min(end, start + each)) for p, (start, end) in ranges.items()}


# Idiomatic Faust can stop for good in a rebalance (its agent waiting on a full producer buffer):
# no record processed for this long ends the attempt.
FAUST_STALL_S = 120.0
FAUST_ATTEMPTS = 2


class FaustStalled(HubError):
    """Idiomatic Faust stopped processing before the end of its sample."""


def run_faust_attempts(
    settings: Settings,
    workload: Workload,
    workers: int,
    say: Callable[[str], None],
    records: int | None = None,
) -> PipelineRun:
    """``run_faust``, once more on a fresh group if it stalls; a second stall is the result."""
    for attempt in range(1, FAUST_ATTEMPTS + 1):
        try:
            return run_faust(settings, workload, workers, say, records)
        except FaustStalled as stalled:
            say(f"{stalled} (attempt {attempt} of {FAUST_ATTEMPTS})")
            if attempt == FAUST_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def run_faust(
    settings: Settings,
    workload: Workload,
    workers: int,
    say: Callable[[str], None],
    records: int | None = None,
) -> PipelineRun:
    """Idiomatic Faust over the whole workload, or its first ``records`` (``sample``)."""
    ranges = workload.by_partition if records is None else sample(workload.by_partition, records)
    total_records = sum(end - start for start, end in ranges.values())
    group = f"bench-faust-{uuid.uuid4().hex[:8]}"
    table = group.replace("-", "_")
    asyncio.run(scratch_table(settings, table))
    asyncio.run(fresh_hub(settings, group, {tp: r[0] for tp, r in workload.ranges.items()}))
    say(f"idiomatic Faust: {total_records:,} records (the first of each partition)")
    spec = logs(settings) / f"{group}.spec.json"
    spec.write_text(
        json.dumps(
            {
                "partitions": {str(p): list(r) for p, r in ranges.items()},
                "table": table,
                "group": group,
                "lateness_s": settings.allowed_lateness_s,
                "workers": workers,
            }
        )
    )
    statuses = [logs(settings) / f"{group}-{i}.status.json" for i in range(workers)]
    processes = [
        Process(
            f"faust {i}",
            ["--spec", str(spec), "--status", str(statuses[i]), "--index", str(i)],
            logs(settings) / f"{group}-{i}.log",
            {},
            module="tooling.bench.faust_idiomatic",
        )
        for i in range(workers)
    ]

    def read() -> list[dict[str, object]]:
        out = []
        for path in statuses:
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    def reached() -> dict[str, float]:
        ends: dict[str, float] = {}
        for status in read():
            for p, at in status["reached"].items():  # type: ignore[attr-defined]
                ends[p] = max(ends.get(p, 0.0), at)
        return ends

    try:
        last_said = moved = time.monotonic()
        seen = 0

        def done() -> bool:
            nonlocal last_said, moved, seen
            now = time.monotonic()
            records = sum(int(s["records"]) for s in read())  # type: ignore[call-overload]
            if records != seen:
                seen, moved = records, now
            if now - last_said > 30:
                say(f"  idiomatic Faust: {records:,} records processed")
                last_said = now
            if len(reached()) == len(ranges):
                return True
            if now - moved > FAUST_STALL_S:
                raise FaustStalled(
                    f"idiomatic Faust processed nothing for {FAUST_STALL_S:.0f} s after "
                    f"{records:,} of {total_records:,} records (a rebalance that does not "
                    "finish: faust-streaming/faust#133, #173)"
                )
            return False

        poll(done, "idiomatic Faust's last record", max(1800, total_records / 500), processes)
        firsts = [float(s["first"]) for s in read() if s["first"]]  # type: ignore[arg-type]
        seconds = max(reached().values()) - min(firsts)
        # Its windows close by the wall clock a lateness after their end: then written.
        rows = -1
        while True:
            time.sleep(3)
            now = sum(int(s["rows"]) for s in read())  # type: ignore[call-overload]
            if now == rows:
                break
            rows = now
        found = asyncio.run(counted(settings, table, workload))
    finally:
        for process in processes:
            process.stop()
        asyncio.run(drop_hub_topics(settings, group))
        asyncio.run(scratch_table(settings, table, drop=True))
        for path in logs(settings).glob(f"{group}*.json"):
            path.unlink()
        for i in range(workers):
            shutil.rmtree(logs(settings) / f"{group}-{i}", ignore_errors=True)
    return PipelineRun("faust_idiomatic", total_records, seconds, found)


# -- Quix Streams --------------------------------------------------------------------------------


async def drop_topics_of(settings: Settings, group: str) -> None:
    """The topics Quix made for the group (changelogs, repartitions): their names carry it."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**principals.client(settings))
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if group in t]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def row_count(settings: Settings, table: str) -> int:
    conn = await connect(settings)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


def run_quix(
    settings: Settings, workload: Workload, workers: int, say: Callable[[str], None]
) -> PipelineRun:
    """Quix Streams (``tooling.bench.quix``) on the whole workload, ``workers`` processes in one
    consumer group; clocked from its first record to its last row written."""
    group = f"bench-quix-{uuid.uuid4().hex[:8]}"
    table = group.replace("-", "_")
    asyncio.run(scratch_table(settings, table))
    asyncio.run(fresh_hub(settings, group, {tp: r[0] for tp, r in workload.ranges.items()}))
    spec = logs(settings) / f"{group}.spec.json"
    spec.write_text(
        json.dumps(
            {
                "partitions": {str(p): list(r) for p, r in workload.by_partition.items()},
                "table": table,
                "group": group,
                "lateness_s": settings.allowed_lateness_s,
                "workers": workers,
                "dedup_horizon_s": settings.dedup_horizon_s,
            }
        )
    )
    statuses = [logs(settings) / f"{group}-{i}.status.json" for i in range(workers)]
    processes = [
        Process(
            f"quix {i}",
            ["--spec", str(spec), "--status", str(statuses[i]), "--index", str(i)],
            logs(settings) / f"{group}-{i}.log",
            {},
            module="tooling.bench.quix",
        )
        for i in range(workers)
    ]

    def read() -> list[dict[str, Any]]:
        out = []
        for path in statuses:
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    try:
        last_said = time.monotonic()

        def done() -> bool:
            nonlocal last_said
            reached = {p for status in read() for p in status["reached"]}
            if time.monotonic() - last_said > 30:
                say(f"  quix: {len(reached)} of {len(workload.ranges)} partitions read")
                last_said = time.monotonic()
            return len(reached) == len(workload.ranges)

        poll(done, "Quix's last record", max(1800, workload.records / 500), processes)
        first = min(float(s["first"]) for s in read() if s["first"])
        # Its rows go out at its commits (every 5 s): done once the count stops changing.
        rows, changed = -1, time.time()
        while time.time() - changed < 12:
            now = asyncio.run(row_count(settings, table))
            if now != rows:
                rows, changed = now, time.time()
            time.sleep(0.5)
        seconds = changed - first
        found = asyncio.run(counted(settings, table, workload))
    finally:
        for process in processes:
            process.stop()
        asyncio.run(drop_topics_of(settings, group))
        asyncio.run(drop_hub_topics(settings, group))
        asyncio.run(scratch_table(settings, table, drop=True))
        for path in logs(settings).glob(f"{group}*.json"):
            path.unlink()
        for i in range(workers):
            shutil.rmtree(logs(settings) / f"{group}-{i}", ignore_errors=True)
    return PipelineRun("quix", workload.records, seconds, found)


# -- latency -------------------------------------------------------------------------------------


def run_latency(
    settings: Settings, options: BenchOptions, say: Callable[[str], None]
) -> SteppedResult:
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    asyncio.run(fresh_hub(settings, app_id))
    processes = start_workers(settings, options.workers, "latency", app_id)
    try:
        poll(
            lambda: (
                sum(
                    scrape(p).get("hub_partitions_assigned", 0)
                    for p in worker_ports(settings, options.workers)
                )
                == settings.partitions
            ),
            "the workers to share the partitions",
            300,
            processes,
        )
        return measure(settings, options.latency_rates_hz, options.latency_minutes, say)
    finally:
        for process in processes:
            process.stop()
        asyncio.run(drop_hub_topics(settings, app_id))


def run_bench(settings: Settings, options: BenchOptions, say: Callable[[str], None]) -> Report:
    report = Report(options)
    say(
        f"pre-loading every registered site at {options.rate_hz:g} Hz for {options.minutes} minutes"
    )
    workload = asyncio.run(preload(settings, options.minutes, options.rate_hz, say))
    report.workload = workload
    say(f"pre-loaded {workload.records:,} records of {workload.sites:,} sites")
    pipelines: list[Callable[[], PipelineRun]] = [
        lambda: run_hub(settings, workload, options.workers, say),
        lambda: run_floor(settings, workload, options.workers),
        lambda: run_floor(settings, workload, options.workers, checked=True),
    ]
    if options.quix:
        pipelines.append(lambda: run_quix(settings, workload, options.workers, say))
    if options.faust:
        pipelines.append(
            lambda: run_faust_attempts(
                settings, workload, options.workers, say, options.faust_sample or None
            )
        )
    for run in pipelines:
        try:
            result = run()
        except FaustStalled as stalled:
            report.stalled = str(stalled)
            continue
        name = result.name
        report.runs[name] = result
        say(
            f"{name}: {result.per_s:,.0f} records/s ({result.records:,} in {result.seconds:.1f} s "
            f"with {options.workers} process(es)); counted {result.counted:,} "
            f"({'exact' if result.exact else 'NOT exact'})"
        )
        if result.settled is not None and result.settled_per_s:
            records, seconds = result.settled
            say(
                f"{name} once its group settled: {result.settled_per_s:,.0f} records/s "
                f"({records:,} in {seconds:.1f} s)"
            )
    if options.latency_minutes:
        report.latency = run_latency(settings, options, say)
        say(f"latency: {report.latency.stopped}")
    return report


def table(report: Report) -> str:
    line = report.line()
    rows = [
        (f"{name} records/s", f"{run.per_s:,.0f} (counted {counted_text(run)})")
        for name, run in report.runs.items()
    ]
    if report.stalled:
        rows.append(("idiomatic Faust", report.stalled))
    rows += [
        ("hub records/s, group settled", str(line["records_per_s_settled"])),
        ("hub / floor", str(line["hub_to_floor"])),
        ("hub / checked floor", str(line["hub_to_floor_checked"])),
        ("hub / idiomatic Faust", str(line["hub_to_faust_idiomatic"])),
        ("hub / Quix Streams", str(line["hub_to_quix"])),
    ]
    if report.latency:
        lat = report.latency
        rows += [
            (
                f"latency {step.rate_hz:g} Hz x {lat.sites:,} sites",
                f"close lag p50 {step.close_lag_p50_s} s, p99 {step.close_lag_p99_s} s; "
                f"queryable p99 {step.queryable_p99_s} s (offered {step.offered_per_s:,.0f}/s, "
                f"{step.windows} of {step.expected} windows): "
                + ("held" if step.held else "did not hold"),
            )
            for step in lat.steps
        ]
        rows += [
            ("sustained records/s", str(line["sustained_records_per_s"])),
            ("latency ended", lat.stopped),
        ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:{width}}  {value}" for name, value in rows)


def counted_text(run: PipelineRun) -> str:
    return "exactly" if run.exact else f"{run.counted:,} of {run.records:,}"


def as_json(report: Report) -> str:
    return json.dumps(report.line())
