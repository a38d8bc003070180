"""`hub bench` on a tiny load: the benchmark is measured, not asserted; this checks that its
three pipelines ran on the same records and that the report carries the contract's keys."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hub.db import connect
from hub.settings import Settings
from tests.conftest import run_hub
from tooling.bench.faust_idiomatic import latest
from tooling.bench.workload import free_minutes, plan_minutes

CONTRACT_KEYS = {
    "records_per_s",
    "floor_records_per_s",
    "faust_idiomatic_records_per_s",
    "close_lag_p99_s",
    "queryable_p99_s",
    "workers",
    "machine",
}


def test_a_tiny_bench_runs_its_pipelines_on_the_same_records(loaded_registry: Settings) -> None:
    result = run_hub(
        "bench",
        *("--minutes", "1", "--rate", "0.05", "--workers", "1", "--latency-minutes", "0"),
        *("--faust-sample", "1200"),
        "--json",
        timeout=900,
    )
    print(result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report) >= CONTRACT_KEYS
    records = report["records"]
    assert records == report["sites"] * 3  # one a site every 20 s for a minute
    # The hub and the floor count every record; Faust's windows may lose some, never add.
    assert report["counted"]["hub"] == records
    assert report["counted"]["floor"] == records
    # The checked floor makes the hub's checks: every record here is valid and signed.
    assert report["counted"]["floor_checked"] == records
    # The peer, Quix Streams, makes the same checks and counts every record too.
    assert report["counted"]["quix"] == records
    # Idiomatic Faust reads a sample (the first records of each partition), counted against it.
    assert report["faust_idiomatic_records"] == 1200
    assert 0 <= report["counted"]["faust_idiomatic"] <= 1200
    for key in (
        "records_per_s",
        "floor_records_per_s",
        "floor_checked_records_per_s",
        "faust_idiomatic_records_per_s",
        "quix_records_per_s",
    ):
        assert report[key] > 0, key
    assert report["workers"] == 1
    assert report["machine"]["cpus"] >= 1
    assert report["close_lag_p99_s"] is None  # not measured when skipped, never made up
    # Measured from the moment the group settled: the records accepted after it, and no more.
    settled = report["records_per_s_settled"]
    assert settled is None or settled > 0


def test_each_run_takes_past_minutes_no_earlier_run_used(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(), home=tmp_path)
    lateness = settings.allowed_lateness_s
    firsts = [plan_minutes(settings, 5) for _ in range(3)]
    spans = [(f, f + 5 * 60 + lateness + 61) for f in firsts]  # records, then the closing one
    assert all(f % 60 == 0 for f in firsts)
    assert all(end < time.time() - 60 for _, end in spans)  # every record dated in the past
    for i, (a, b) in enumerate(spans):
        for c, d in spans[i + 1 :]:
            assert b <= c or d <= a, f"runs {spans} share minutes"


def test_a_run_passes_over_minutes_something_else_wrote(
    loaded_registry: Settings, tmp_path: Path
) -> None:
    """The book knows earlier pre-loads only: rows a latency phase or a demo wrote at the time
    must not be counted as the run's (an empty book here, rows in the last 40 minutes)."""
    settings = dataclasses.replace(loaded_registry, home=tmp_path)
    now = int(time.time()) // 60 * 60
    written = [now - 60 * i for i in range(40)]
    marker = "bench-test-written"

    async def write(delete: bool) -> None:
        conn = await connect(settings)
        try:
            await conn.execute("DELETE FROM site_aggregates WHERE demonstration_id = $1", marker)
            if not delete:
                await conn.executemany(
                    "INSERT INTO site_aggregates (bucket, site_id, metric, count, sum, min, "
                    "max, demonstration_id) "
                    "VALUES (to_timestamp($1), 'GJ-TEST', 'online', 1, 1, 1, 1, $2)",
                    [(float(m), marker) for m in written],
                )
        finally:
            await conn.close()

    asyncio.run(write(delete=False))
    try:
        first = asyncio.run(free_minutes(settings, 5))
    finally:
        asyncio.run(write(delete=True))
    assert first + 5 * 60 <= min(written), "the run took minutes that hold rows already"
    booked = (tmp_path / "bench" / f"minutes-used-{settings.database.dbname}").read_text()
    assert len(booked.splitlines()) > 1  # the spans passed over stay booked


def test_a_window_idiomatic_faust_closes_twice_is_written_once_as_last_closed() -> None:
    """Faust may close a window again (a full run crashed on the duplicate key once)."""
    first = ("2026-12-01T03:32Z", "GJ-1", "DEMO-007", "power_w", 10, 5.0, 0.1, 1.0)
    again = ("2026-12-01T03:32Z", "GJ-1", "DEMO-007", "power_w", 12, 6.0, 0.1, 1.0)
    other = ("2026-12-01T03:32Z", "GJ-1", "DEMO-007", "online", 12, 12.0, 1.0, 1.0)
    assert latest([first, other, again]) == [again, other]


def processes() -> dict[int, tuple[int, int]]:
    """Live processes (zombies run nothing): pid -> (parent pid, process group), from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            found[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
    return found


def test_a_bench_killed_by_sigkill_leaves_no_process_behind(loaded_registry: Settings) -> None:
    """A timeout that SIGKILLs `hub bench` (as a CI step would) must not leave its workers
    running for an hour: every child is in the bench's process group and ends with it."""
    # (Broken by starting the children in sessions of their own, without the parent-death
    # signal: the workers then outlive the bench.)
    bench = subprocess.Popen(
        [sys.executable, "-m", "hub", "bench", "--minutes", "1", "--rate", "0.05"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group, so that its children can be found by it
    )
    started: set[int] = set()
    try:

        def children() -> set[int]:
            """Its children and its process group's members (whichever way they were made)."""
            return {
                pid
                for pid, (parent, group) in processes().items()
                if pid != bench.pid and bench.pid in (parent, group)
            }

        def workers() -> set[int]:
            """Its hub workers (not the short checks it runs before them)."""
            found = set()
            for pid in children():
                with contextlib.suppress(OSError):
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if b"worker" in argv:
                        found.add(pid)
            return found

        deadline = time.monotonic() + 300
        while not workers():
            assert bench.poll() is None, "the bench ended before starting a worker"
            assert time.monotonic() < deadline, "the bench started no worker in 300 s"
            time.sleep(0.2)
        started = children()
        os.kill(bench.pid, signal.SIGKILL)
        bench.wait(timeout=10)

        def left() -> set[int]:
            alive = processes()
            return {p for p in started if p in alive} | {
                p for p, (_, group) in alive.items() if group == bench.pid
            }

        deadline = time.monotonic() + 60
        while left() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left() == set(), f"left running after the bench was killed: {left()}"
    finally:
        for pid, (parent, group) in processes().items():  # what is left, by pid (never by name)
            if pid != bench.pid and (pid in started or bench.pid in (parent, group)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if bench.poll() is None:
            bench.kill()
            bench.wait(timeout=10)
