"""Fault sequences that rolling restarts, autoscalers and long outages produce, made deterministic:
a worker stopped between its local state write and the changelog's, restarted on that state and
then handing over; a worker stuck on the database past its group's poll interval whose stale
batch must not overwrite its successor's rows."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator

from hub.settings import Settings
from tests.conftest import DEFAULT_WORKER_ENV, WorkerProcess
from tests.isolated import IsolatedHub
from tests.reliability import faulty_worker
from tests.reliability.workload import Workload, account, two_sites_per_partition
from tests.support import eventually, fetch

DEFAULT_LATENESS_MS = int(DEFAULT_WORKER_ENV["HUB_ALLOWED_LATENESS"]) * 1000
BACKDATE_MS = 200_000


async def ready(worker: WorkerProcess) -> None:
    await asyncio.to_thread(worker.wait_ready)


async def owned(worker: WorkerProcess) -> float:
    return worker.metrics().get("hub_partitions_assigned", 0)


async def owns_everything(worker: WorkerProcess, partitions: int) -> None:
    async def taken() -> bool | None:
        return True if await owned(worker) == partitions else None

    await eventually(taken, "one worker to own every partition", 120)


def accepted(worker: WorkerProcess) -> float:
    return sum(v for k, v in worker.metrics().items() if k.startswith("hub_records_accepted_total"))


async def test_kill_restart_on_the_same_state_then_hand_over_loses_nothing(
    hub: IsolatedHub,
) -> None:
    """At the hub's defaults (120 s lateness, 600 s de-duplication horizon, 5 s clock tolerance):
    worker A exits like a killed process right after a batch's state reached its RocksDB and
    before the changelog got it; A restarts on that local state; A then stops gracefully and B
    takes every partition over, restoring from the changelog. Exact per-site accounting."""
    hub.extra_env.update(DEFAULT_WORKER_ENV)
    partitions = hub.settings.partitions
    doomed = WorkerProcess(0, hub.logs, hub.env, launcher=faulty_worker.launcher(40))
    hub.workers.append(doomed.start())
    other = hub.worker(1)
    await asyncio.gather(ready(doomed), ready(other))
    # Dated 200 s back (within the 600 s de-duplication horizon, never late: event time only
    # grows), so that once the stream ends one record per site closes every window.
    load = Workload(
        hub.settings, "sequence", two_sites_per_partition(partitions), backdate_ms=BACKDATE_MS
    )
    stream = asyncio.create_task(load.run())
    assert doomed.proc is not None
    code = await asyncio.wait_for(asyncio.to_thread(doomed.proc.wait), 120)
    assert code == faulty_worker.EXIT_CODE, f"the fault did not fire: exit code {code}"
    assert load.made < load.total, "the stream ended before the fault"
    print(f"{load.tag}: the fault fired after {load.made} of {load.total} records were made")

    restarted = WorkerProcess(0, hub.logs, hub.env).start()  # the same datadir, no fault
    hub.workers.append(restarted)
    await ready(restarted)

    async def working() -> bool | None:
        return True if accepted(restarted) > 0 else None

    await eventually(working, "the restarted worker to process records", 60)
    restarted.stop(signal.SIGTERM)
    await owns_everything(other, partitions)
    await asyncio.wait_for(stream, 300)
    await load.close_windows(lateness_ms=DEFAULT_LATENESS_MS)
    got = await account(load, hub.database_url, hub.app_id, hub.dlq_start)
    log = restarted.log.read_text()
    assert "local state dropped" in log, "the restart trusted state the changelog never got"
    print(f"{load.tag}: sent {load.acknowledged} ({load.made} with retries), {got.summary()}")


# A Parse message of the sink's write (streams.sink: the fence first): the statement's name.
WRITE = re.compile(rb"(__asyncpg_stmt_[0-9a-f_]+__)\x00WITH fence AS \(")


class Gate:
    """A TCP relay to the database that can hold a worker's traffic, as an outage would for it
    alone. Armed, it shuts on the worker's next write of a batch (the statement that merges its
    rows and checks its ownership, known by the name asyncpg prepared it under): the worker is
    then half-way through the write, its rows sent, nothing written, its ownership not checked."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.open = asyncio.Event()
        self.open.set()
        self.armed = False
        self.tripped = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writes: set[bytes] = set()  # the names of the sink's prepared write statements

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, client: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if client:
                        self.writes.update(name + b"\x00" for name in WRITE.findall(data))
                    if client and self.armed and any(name in data for name in self.writes):
                        self.armed = False
                        self.open.clear()
                        self.tripped.set()
                    await self.open.wait()  # held while shut: the query waits, unanswered
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    async def close(self) -> None:
        self.open.set()
        if self.server is not None:
            self.server.close()


async def claimed(database_url: str, app_id: str, pid: int, partitions: int) -> None:
    """Until the worker of ``pid`` has claimed every partition's rows (partition_owners)."""

    async def all_claimed() -> bool | None:
        rows = await fetch(
            database_url,
            "SELECT count(*) AS n FROM partition_owners WHERE hub = $1 AND owner LIKE $2",
            app_id,
            f"%:{pid}",
        )
        return True if rows[0]["n"] == partitions else None

    await eventually(all_claimed, "the surviving worker to claim every partition", 90)


@contextlib.asynccontextmanager
async def gate_to(settings: Settings) -> AsyncIterator[Gate]:
    target = settings.database
    gate = Gate((target.host, target.port))
    await gate.start()
    try:
        yield gate
    finally:
        await gate.close()


async def test_a_worker_that_lost_its_partitions_during_an_outage_cannot_write_them(
    hub: IsolatedHub,
) -> None:
    """Worker A reaches the database through a gate; B directly. The gate shuts in the middle of
    A's next write: it hangs, past its group's poll interval (shortened to 20 s), and B takes A's
    partitions over. When the gate opens, A's stuck batch finds the partition's epoch moved on
    and is dropped, not written over B's rows. Exact per-site accounting."""
    partitions = hub.settings.partitions
    short = {"HUB_SESSION_TIMEOUT": "8", "HUB_MAX_POLL_INTERVAL": "20"}
    hub.extra_env.update(short)
    async with gate_to(hub.settings) as gate:
        gated_url = hub.database_url.replace(
            f"{hub.settings.database.host}:{hub.settings.database.port}", f"127.0.0.1:{gate.port}"
        )
        a = WorkerProcess(0, hub.logs, {**hub.env, "HUB_DATABASE_URL": gated_url}).start()
        hub.workers.append(a)
        b = hub.worker(1)
        await asyncio.gather(ready(a), ready(b))

        async def balanced() -> bool | None:
            mine, theirs = await owned(a), await owned(b)
            return True if mine and theirs and mine + theirs == partitions else None

        await eventually(balanced, "both workers to own partitions")
        load = Workload(hub.settings, "fenced", two_sites_per_partition(partitions))
        stream = asyncio.create_task(load.run())

        async def going() -> bool | None:
            return True if accepted(a) > 500 else None

        await eventually(going, "worker A to accept records", 60)
        gate.armed = True
        await asyncio.wait_for(gate.tripped.wait(), 60)  # A's database is away, mid-write
        await owns_everything(b, partitions)
        assert b.proc is not None
        await claimed(hub.database_url, hub.app_id, b.proc.pid, partitions)
        await asyncio.wait_for(stream, 300)
        gate.open.set()

        async def fenced() -> float | None:
            n = a.metrics().get("hub_fenced_batches_total", 0)
            return n if n > 0 else None

        await eventually(fenced, "worker A's stale batch to be fenced off", 120)
        await load.close_windows()
        got = await account(load, hub.database_url, hub.app_id, hub.dlq_start)
        assert a.proc is not None
        assert a.proc.poll() is None, "worker A did not survive"
        print(f"{load.tag}: sent {load.acknowledged}, {got.summary()}")
