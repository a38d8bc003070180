"""Faults injected mid-stream into a hub of its own; every record sent must be accounted for
exactly: the counts in ``site_aggregates`` plus the DLQ equal what was sent, per site."""

from __future__ import annotations

import asyncio
import shutil
import signal

from hub.settings import Settings
from tests.conftest import WorkerProcess, run_hub_async
from tests.isolated import IsolatedHub
from tests.reliability.workload import Workload, account, two_sites_per_partition
from tests.support import eventually


def accepted(worker: WorkerProcess) -> float:
    return sum(v for k, v in worker.metrics().items() if k.startswith("hub_records_accepted_total"))


async def ready(worker: WorkerProcess) -> None:
    await asyncio.to_thread(worker.wait_ready)


async def midstream(load: Workload, worker: WorkerProcess, records: int = 800) -> int:
    """Once the worker has accepted ``records`` of the stream, while it is still being sent."""

    async def far_enough() -> int | None:
        return load.made if accepted(worker) >= records else None

    made = await eventually(far_enough, f"the worker to accept {records} records", 60)
    assert made < load.total, "the stream ended before the fault"
    return made


def workload(hub: IsolatedHub, tag: str) -> Workload:
    return Workload(hub.settings, tag, two_sites_per_partition(hub.settings.partitions))


async def finish(load: Workload, stream: asyncio.Task[None], hub: IsolatedHub) -> None:
    await asyncio.wait_for(stream, 300)
    await load.close_windows()
    got = await account(load, hub.database_url, hub.app_id, hub.dlq_start)
    seen = [w.metrics() for w in hub.workers]
    skipped = {
        name: sum(s.get(f"hub_records_{name}_total", 0) for s in seen)
        for name in ("redelivered", "refilled", "duplicate")
    }
    print(f"{load.tag}: sent {load.acknowledged} ({load.made} with retries), {got.summary()}")
    print(f"{load.tag}: the running workers skipped {skipped}")


async def test_a_worker_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    hub: IsolatedHub,
) -> None:
    worker = hub.worker()
    await ready(worker)
    load = workload(hub, "kill")
    stream = asyncio.create_task(load.run())
    await midstream(load, worker)
    worker.stop(signal.SIGKILL)  # no goodbye: offsets lag what was processed and written
    worker.start()
    await ready(worker)
    await finish(load, stream, hub)


async def test_the_other_worker_takes_over_the_partitions_of_a_killed_one(
    hub: IsolatedHub,
) -> None:
    first, second = hub.worker(0), hub.worker(1)
    await asyncio.gather(ready(first), ready(second))
    partitions = hub.settings.partitions

    async def owned(worker: WorkerProcess) -> float:
        return worker.metrics().get("hub_partitions_assigned", 0)

    async def balanced() -> bool | None:
        mine, theirs = await owned(first), await owned(second)
        return True if mine and theirs and mine + theirs == partitions else None

    await eventually(balanced, "both workers to own partitions")
    load = workload(hub, "takeover")
    stream = asyncio.create_task(load.run())
    await midstream(load, second, records=300)
    second.stop(signal.SIGKILL)

    async def taken_over() -> bool | None:
        return True if await owned(first) == partitions else None

    await eventually(taken_over, "the survivor to own every partition", 90)
    await finish(load, stream, hub)


async def test_producers_and_workers_ride_out_a_broker_restart(hub: IsolatedHub) -> None:
    worker = hub.worker()
    await ready(worker)
    assert worker.proc is not None
    pid = worker.proc.pid
    load = workload(hub, "broker")
    stream = asyncio.create_task(load.run())
    await midstream(load, worker)
    down = await run_hub_async("stack", "down", "kafka", timeout_s=120)
    assert down.returncode == 0, down.stderr
    up = await run_hub_async("stack", "up", "kafka", timeout_s=180)
    assert up.returncode == 0, up.stderr
    await finish(load, stream, hub)
    assert worker.proc.pid == pid
    assert worker.proc.poll() is None, "the worker did not survive"


async def test_the_sink_backs_off_through_a_database_outage_and_catches_up(
    hub: IsolatedHub, stack: Settings
) -> None:
    worker = hub.worker()
    await ready(worker)
    load = workload(hub, "database")
    stream = asyncio.create_task(load.run())
    await midstream(load, worker)
    down = await run_hub_async("stack", "down", "timescaledb", timeout_s=120)
    assert down.returncode == 0, down.stderr
    await asyncio.sleep(30)  # the outage itself: the fault lasts 30 s
    up = await run_hub_async("stack", "up", "timescaledb", timeout_s=180)
    assert up.returncode == 0, up.stderr
    await finish(load, stream, hub)
    assert worker.proc is not None
    assert worker.proc.poll() is None, "the worker did not survive"
    errors = sum(v for k, v in worker.metrics().items() if k.startswith("hub_db_errors_total"))
    assert errors > 0, "the outage never reached the sink"


async def test_a_worker_without_its_local_state_rebuilds_it_from_the_changelog(
    hub: IsolatedHub,
) -> None:
    worker = hub.worker()
    await ready(worker)
    load = workload(hub, "rocksdb")
    stream = asyncio.create_task(load.run())
    await midstream(load, worker)
    worker.stop(signal.SIGKILL)
    assert hub.datadir(0).is_dir()
    shutil.rmtree(hub.datadir(0))
    worker.start()
    await ready(worker)
    await finish(load, stream, hub)
    restored = [line for line in worker.log.read_text().splitlines() if "restored" in line]
    assert any(" 0 open windows" not in line for line in restored), restored
