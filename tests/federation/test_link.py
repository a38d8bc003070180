"""Federation: South Jeolla's own cluster, its own hub, and MirrorMaker 2 to Gwangju's cluster.

The regional cluster and MirrorMaker come up for the module (`HUB_FEDERATION=1 hub stack up
kafka-jeonnam mirrormaker`) and go down after it, by their pidfiles. A regional hub (its workers
at the hub's default settings, HUB_REGIONS=jeonnam) processes records published to the regional
cluster into the super-regional database; its results cross to the central cluster. Behind the
`federation` marker: `make test-federation`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import signal
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from hub import principals, topics
from hub.registry.files import read_registry
from hub.settings import Settings
from tests.conftest import (
    DEFAULT_WORKER_ENV,
    WorkerProcess,
    registry_dir_with_test_demo,
    run_hub,
    run_hub_async,
)
from tests.reliability.workload import Workload, account, two_sites_per_partition
from tests.stack.test_access import sasl
from tests.support import end_offsets, eventually, read_committed_since, scratch_database
from tooling.bench.load import BatchSender, Load
from tooling.localrun import drop_hub_topics, fresh_hub, scrape
from tooling.simulate import SimulationOptions, load_sites
from tooling.stack.federation import REGION, MirrorMaker, regional, regional_env

pytestmark = pytest.mark.federation

FEDERATION_ENV = {"HUB_FEDERATION": "1"}


@pytest.fixture(scope="module")
def federation(stack: Settings) -> Iterator[Settings]:
    """The regional cluster and the link, up for the module: the region's settings."""
    try:
        # Prometheus too: with the federation its configuration scrapes MirrorMaker.
        up = run_hub(
            "stack",
            "up",
            "kafka-jeonnam",
            "mirrormaker",
            "prometheus",
            env=FEDERATION_ENV,
            timeout=300,
        )
        assert up.returncode == 0, up.stdout + up.stderr
        status = run_hub("stack", "status", env=FEDERATION_ENV)
        print(status.stdout)
        states = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[1:]}
        assert states["kafka-jeonnam"] == states["mirrormaker"] == "running", status.stdout
        yield regional(stack)
    finally:
        down = run_hub(
            "stack", "down", "kafka-jeonnam", "mirrormaker", env=FEDERATION_ENV, timeout=300
        )
        assert down.returncode == 0, down.stderr
        # Prometheus as the rest of the suite has it: no MirrorMaker to scrape, no link alert.
        again = run_hub("stack", "up", "prometheus", timeout=120)
        assert again.returncode == 0, again.stderr


def region_sites(partitions: int) -> list[str]:
    """A South Jeolla site on every partition that has one (their test devices are registered)."""
    return [s for s in two_sites_per_partition(partitions) if s.startswith("JN-")]


async def results_since(
    settings: Settings, topic: str, start: dict[TopicPartition, int], sites: set[str] | None
) -> Counter[tuple[str, str, str]]:
    """(site, window start, metric) of every committed result of ``sites`` (None: of every
    site) on ``topic`` since ``start``, with how often each was written (read_committed: what
    MirrorMaker wrote exactly once is what a consumer sees)."""
    rows = await read_committed_since(principals.client(settings), start)
    return Counter(
        (row["site_id"], row["window_start"], row["metric"])
        for row in rows
        if sites is None or row["site_id"] in sites
    )


@dataclass
class RegionalHub:
    """A regional hub's worker over a scratch super-regional database, and where the result
    topics of both clusters stood when it started."""

    region: Settings
    centre: Settings
    database: str
    app_id: str
    dlq_start: dict[TopicPartition, int]
    starts: dict[str, dict[TopicPartition, int]]
    sites: list[str]

    async def results(self, where: str, every_site: bool = False) -> Counter[tuple[str, str, str]]:
        """The results on one cluster: the counted sites', or with ``every_site`` all of them."""
        cluster = self.region if where == "region" else self.centre
        sites = None if every_site else set(self.sites)
        return await results_since(cluster, topics.SITE_AGGREGATES, self.starts[where], sites)

    async def any_results(self, where: str) -> bool | None:
        return True if await self.results(where) else None

    async def mirrored_exactly(self, timeout_s: float = 180) -> Counter[tuple[str, str, str]]:
        """Every result the region wrote is on the central cluster, each once: what was written
        there."""
        written = await self.results("region")
        assert written
        assert set(written.values()) == {1}, "a result written twice on the regional cluster"

        async def mirrored() -> Counter[tuple[str, str, str]] | None:
            copied = await self.results("centre")
            return copied if set(copied) >= set(written) else None

        copied = await eventually(
            mirrored, "the region's results on the central cluster", timeout_s
        )
        assert copied == written, "a result lost or copied twice across the link"
        return written


@asynccontextmanager
async def regional_hub(
    centre: Settings, region: Settings, tmp_path: Path
) -> AsyncIterator[RegionalHub]:
    app_id = f"federation-{uuid.uuid4().hex[:8]}"
    async with scratch_database(centre, registry_dir_with_test_demo(tmp_path / "r")) as database:
        env = {
            **DEFAULT_WORKER_ENV,
            **regional_env(centre, REGION),
            "HUB_APP_ID": app_id,
            "HUB_DATABASE_URL": database,
        }
        await fresh_hub(region, app_id)
        starts = {
            "region": await end_offsets(region, topics.SITE_AGGREGATES),
            "centre": await end_offsets(centre, topics.SITE_AGGREGATES),
        }
        hub = RegionalHub(
            region,
            centre,
            database,
            app_id,
            await end_offsets(region, topics.DLQ),
            starts,
            region_sites(region.partitions),
        )
        worker = WorkerProcess(0, tmp_path, env).start()
        try:
            await asyncio.to_thread(worker.wait_ready)
            yield hub
            assert worker.proc is not None
            assert worker.proc.poll() is None, "the regional worker did not survive"
        finally:
            worker.stop()
            await drop_hub_topics(region, app_id)


LATENESS_MS = int(DEFAULT_WORKER_ENV["HUB_ALLOWED_LATENESS"]) * 1000


async def test_a_regions_records_are_counted_once_and_its_results_cross_the_link(
    federation: Settings, stack: Settings, tmp_path: Path
) -> None:
    async with regional_hub(stack, federation, tmp_path) as hub:
        # Backdated 200 s: at the default lateness its windows close at once.
        load = Workload(hub.region, "federation", hub.sites, total=6_000, backdate_ms=200_000)
        await load.run()
        await load.close_windows(lateness_ms=LATENESS_MS)
        got = await account(load, hub.database, hub.app_id, hub.dlq_start, timeout_s=180)
        print(f"{load.tag}: sent {load.acknowledged}, {got.summary()}")
        await hub.mirrored_exactly()


PARTNER_RESULTS = topics.partner_topic(REGION, "kpi-results")


async def partner_reads(
    settings: Settings, creds: tuple[str, str], start: dict[TopicPartition, int]
) -> set[str] | None:
    """The sites of the KPI results a partner reads on ``settings``' cluster since ``start``,
    over SASL_SSL with its own login (assigned partitions: no group needed); None if none."""
    rows = await read_committed_since(sasl(settings, *creds), start)
    return {row["site_id"] for row in rows} or None


async def test_a_partner_of_the_region_reads_its_results_on_either_cluster(
    federation: Settings, stack: Settings, tmp_path: Path
) -> None:
    """The super-regional view is unchanged for a partner: the region's partner topic holds its
    sites' KPI results on the regional cluster (a partner added there) and, mirrored, on the
    central one (a partner added as today)."""
    async with regional_hub(stack, federation, tmp_path) as hub:
        starts = {
            "region": await end_offsets(hub.region, PARTNER_RESULTS),
            "centre": await end_offsets(hub.centre, PARTNER_RESULTS),
        }
        load = Workload(hub.region, "partner", hub.sites, total=3_000, backdate_ms=200_000)
        await load.run()
        await load.close_windows(lateness_ms=LATENESS_MS)
        await account(load, hub.database, hub.app_id, hub.dlq_start, timeout_s=180)
        name = f"fed{uuid.uuid4().hex[:6]}"
        logins = {
            "region": await add_partner(name, regional_env(stack, REGION)),
            "centre": await add_partner(f"{name}c", {}),
        }
        for where, cluster in (("region", hub.region), ("centre", hub.centre)):
            sites = await eventually(
                functools.partial(partner_reads, cluster, logins[where], starts[where]),
                f"the partner's results on the {where}'s cluster",
                180,
            )
            print(f"{where}: the partner read results of {len(sites)} sites")
            assert sites >= set(hub.sites), sorted(set(hub.sites) - sites)
            assert all(site.startswith("JN-") for site in sites), sites


async def add_partner(name: str, env: dict[str, str]) -> tuple[str, str]:
    """`hub access add-partner jeonnam NAME` on the cluster ``env`` names: its login."""
    result = await run_hub_async("access", "add-partner", REGION, name, env=env, timeout_s=180)
    assert result.returncode == 0, result.stdout + result.stderr
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
    return fields["username"], fields["password"]


async def test_mirrormaker_killed_mid_stream_and_restarted_copies_each_result_once(
    federation: Settings, stack: Settings, tmp_path: Path
) -> None:
    mirror = MirrorMaker(replace(stack, federation=1))
    async with regional_hub(stack, federation, tmp_path) as hub:
        # 30 s of records spanning ten minutes of event time, from fifteen minutes back: a
        # minute's windows close every three seconds while the stream runs, and the last ones
        # are still old enough for ``close_windows`` to close at once.
        load = Workload(
            hub.region,
            "mm2-kill",
            hub.sites,
            total=30_000,
            rate=1000,
            backdate_ms=900_000,
            event_step_ms=20,
        )
        stream = asyncio.create_task(load.run())
        # Results crossing the link when MirrorMaker dies, and more written while it is down.
        await eventually(lambda: hub.any_results("centre"), "the first results across", 120)
        pid = mirror.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        print(f"killed MirrorMaker 2 (pid {pid}) with {load.made:,} records made")
        up = await run_hub_async("stack", "up", "mirrormaker", env=FEDERATION_ENV, timeout_s=180)
        assert up.returncode == 0, up.stdout + up.stderr
        await asyncio.wait_for(stream, 300)
        await load.close_windows(lateness_ms=LATENESS_MS)
        got = await account(load, hub.database, hub.app_id, hub.dlq_start, timeout_s=180)
        print(f"{load.tag}: sent {load.acknowledged}, {got.summary()}")
        written = await hub.mirrored_exactly()
        print(f"{len(written):,} results, each on the central cluster once")


async def test_the_regional_cluster_restarted_under_load_loses_and_repeats_nothing(
    federation: Settings, stack: Settings, tmp_path: Path
) -> None:
    async with regional_hub(stack, federation, tmp_path) as hub:
        load = Workload(
            hub.region, "region-restart", hub.sites, total=20_000, rate=500, backdate_ms=200_000
        )
        stream = asyncio.create_task(load.run())
        await eventually(lambda: _made(load, 5_000), "5,000 records made", 120)
        down = await run_hub_async(
            "stack", "down", "kafka-jeonnam", env=FEDERATION_ENV, timeout_s=180
        )
        assert down.returncode == 0, down.stdout + down.stderr
        up = await run_hub_async("stack", "up", "kafka-jeonnam", env=FEDERATION_ENV, timeout_s=180)
        assert up.returncode == 0, up.stdout + up.stderr
        print(f"restarted the regional cluster with {load.made:,} records made")
        await asyncio.wait_for(stream, 300)
        await load.close_windows(lateness_ms=LATENESS_MS)
        got = await account(load, hub.database, hub.app_id, hub.dlq_start, timeout_s=240)
        print(f"{load.tag}: sent {load.acknowledged}, {got.summary()}")
        await hub.mirrored_exactly()


async def programme_load(settings: Settings, database: str, stop: asyncio.Event) -> int:
    """Every South Jeolla site at 1 Hz, dated now, as its devices publish, until ``stop``:
    the records the regional cluster acknowledged."""
    sites, keys = await load_sites(
        replace(settings, database_url=database),
        SimulationOptions(sites=0, rate_hz=1, duration_s=1, region=REGION),
    )
    # The programme's own devices: the test demonstration's, on metrics no real device reports,
    # would have the simulator's metrics refused (and the counted stream's sites with them).
    real = {d.device_id for d in read_registry().devices}
    for site in sites:
        site.devices = [d for d in site.devices if d.device_id in real]
    load = Load(sites, keys, settings.partitions, run=f"programme-{uuid.uuid4().hex[:6]}")
    producer = AIOKafkaProducer(**principals.client(settings), acks="all", linger_ms=5)
    await producer.start()
    sender = BatchSender(producer, topics.TELEMETRY)
    stamp = time.time()
    try:
        while not stop.is_set():
            for prepared in load.tick(stamp):
                await sender.add(*prepared)
            await sender.flush()
            stamp += 1.0
            await asyncio.sleep(max(0.0, stamp - time.time()))
        sent = await sender.drain()
    finally:
        await producer.stop()
    assert not sent.failed, sent.failed[:1]
    return sent.records


def replication_latency_ms(port: int) -> float | None:
    """MirrorMaker's highest replication latency (the last 30 s) over the hub's topics it
    copies, now; None while no result crossed in that time."""
    samples = scrape(port, ("mirrormaker_source_replication_latency_ms_max",))
    values = [v for k, v in samples.items() if "heartbeats" not in k and math.isfinite(v)]
    return max(values) if values else None


CUT_S = 300.0  # the five minutes
SAMPLE_S = 120.0  # the replication latency sampled this long before the cut


@pytest.mark.timeout(1800)  # windows close 3 minutes after their records, and the cut is 5
async def test_the_link_cut_for_five_minutes_under_the_programme_load_loses_nothing(
    federation: Settings, stack: Settings, tmp_path: Path
) -> None:
    """Every South Jeolla site at 1 Hz (330 sites), and a counted stream beside it; the link
    (MirrorMaker) stopped for five minutes and started again: every record counted once in the
    central database, every result on the central cluster once. Prints the replication
    latency before the cut and the catch-up after it."""
    mirror = MirrorMaker(replace(stack, federation=1))
    async with regional_hub(stack, federation, tmp_path) as hub:
        stop = asyncio.Event()
        programme = asyncio.create_task(programme_load(hub.region, hub.database, stop))
        # Live: dated when made, closed by the programme's own event time.
        load = Workload(hub.region, "link-cut", hub.sites, total=9_000, rate=20)
        stream = asyncio.create_task(load.run())
        await eventually(lambda: hub.any_results("centre"), "results across the link", 240)
        latencies: list[float] = []
        sampled_until = time.monotonic() + SAMPLE_S

        async def sampled() -> bool | None:
            value = replication_latency_ms(mirror.port)
            if value is not None:
                latencies.append(value)
            return True if time.monotonic() >= sampled_until else None

        await eventually(sampled, "two minutes of MirrorMaker's latency", SAMPLE_S + 30)
        assert latencies, "no replication latency sampled while results crossed"
        ordered = sorted(latencies)
        print(
            f"replication latency (max of the last 30 s, {len(ordered)} samples in "
            f"{SAMPLE_S:.0f} s): median {ordered[len(ordered) // 2]:.0f} ms, "
            f"highest {ordered[-1]:.0f} ms"
        )
        assert alert_state(stack, "HubFederationLinkDown") != "firing"
        down = await run_hub_async("stack", "down", "mirrormaker", env=FEDERATION_ENV)
        assert down.returncode == 0, down.stdout + down.stderr
        cut_at = time.monotonic()

        async def link_down_fires() -> bool | None:
            return True if alert_state(stack, "HubFederationLinkDown") == "firing" else None

        # Its rule waits a minute on a scrape every 5 s: firing well inside the cut.
        await eventually(link_down_fires, "the link-down alert to fire", CUT_S - 60)
        print(f"HubFederationLinkDown firing {time.monotonic() - cut_at:.0f} s into the cut")
        # The rest of the cut is the condition itself: nothing to poll for.
        await asyncio.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
        pending = await hub.results("region", every_site=True)
        up = await run_hub_async("stack", "up", "mirrormaker", env=FEDERATION_ENV, timeout_s=180)
        assert up.returncode == 0, up.stdout + up.stderr
        restored = time.monotonic()

        async def caught_up() -> bool | None:
            copied = await hub.results("centre", every_site=True)
            return True if set(copied) >= set(pending) else None

        await eventually(caught_up, "the link to catch up", 300)
        print(
            f"cut {restored - cut_at:.0f} s; {len(pending):,} results of South Jeolla's sites "
            f"on the regional cluster by then; caught up {time.monotonic() - restored:.1f} s "
            "after the restart"
        )
        await asyncio.wait_for(stream, 600)
        # The programme runs on: its event time closes the counted stream's last windows.
        got = await account(load, hub.database, hub.app_id, hub.dlq_start, timeout_s=420)
        stop.set()
        offered = await programme
        print(f"{load.tag}: sent {load.acknowledged}, {got.summary()}; programme {offered:,}")
        await hub.mirrored_exactly()


def alert_state(settings: Settings, name: str) -> str | None:
    """Alert ``name`` in the stack's Prometheus: "firing", "pending", or None when inactive."""
    url = f"http://{settings.prometheus_address}/api/v1/alerts"
    with urllib.request.urlopen(url, timeout=5) as response:
        alerts = json.load(response)["data"]["alerts"]
    states = {a["state"] for a in alerts if a["labels"].get("alertname") == name}
    return "firing" if "firing" in states else next(iter(states), None)


async def _made(load: Workload, records: int) -> bool | None:
    return True if load.made >= records else None
