"""``hub simulate``: registered devices of N sites publishing telemetry at a steady rate."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from hub import devicekeys, principals
from hub.db import connect
from hub.device import DeviceClient
from hub.errors import HubError
from hub.settings import Settings
from hub.topicsetup import ensure_topics
from tooling.simulate.fleet import Fleet, SimSite, Tally, build_fleet

FLEET_QUERY = """
SELECT s.site_id, s.region, s.district, d.device_id, m.technology
  FROM devices d
  JOIN sites s USING (site_id)
  JOIN demonstrations m USING (demonstration_id)
 WHERE $1::text IS NULL OR s.region = $1
 ORDER BY d.device_id
"""


class RegistryNotLoaded(HubError):
    """The database holds no registry yet: `hub registry load` first."""


@dataclass(frozen=True, slots=True)
class SimulationOptions:
    sites: int
    rate_hz: float
    duration_s: float
    bad_fraction: float = 0.0
    region: str | None = None
    seed: int = 1


async def load_sites(
    settings: Settings, options: SimulationOptions
) -> tuple[list[SimSite], dict[str, bytes]]:
    """The simulated sites, and their devices' signing keys (issued to devices that never had
    one; a revoked device keeps sending with no valid key, and is rejected)."""
    conn = await connect(settings)
    try:
        try:
            rows = await conn.fetch(FLEET_QUERY, options.region)
        except asyncpg.UndefinedTableError:
            raise RegistryNotLoaded(
                "the database has no registry tables: run `hub registry load` first (it migrates)"
            ) from None
        if not rows:
            where = f" in region {options.region}" if options.region else ""
            raise RegistryNotLoaded(f"no registered devices{where}: run `hub registry load` first")
        sites = build_fleet([tuple(r) for r in rows], options.sites, options.seed)
        keys = await devicekeys.ensure(conn, [d.device_id for s in sites for d in s.devices])
    finally:
        await conn.close()
    return sites, keys


async def simulate(
    settings: Settings,
    options: SimulationOptions,
    progress: Callable[[float, Tally], None] | None = None,
) -> Tally:
    """Publish for ``duration_s`` at ``rate_hz`` events per site per second; flush; tally."""
    sites, keys = await load_sites(settings, options)
    await ensure_topics(
        settings.kafka_bootstrap,
        settings.partitions,
        replication_factor=settings.replication_factor,
        dlq_retention_days=settings.retention_dlq_days,
        **principals.security(settings),
    )
    fleet = Fleet(sites, bad_fraction=options.bad_fraction, seed=options.seed)
    interval = 1.0 / options.rate_hz
    async with DeviceClient(settings.kafka_bootstrap, **principals.security(settings)) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        next_tick = start
        last_report = start
        while (elapsed := loop.time() - start) < options.duration_s:
            for site_id, device_id, value in fleet.tick(time.time(), interval):
                await client.send_raw(site_id, value, keys.get(device_id))
            if progress and loop.time() - last_report >= 1.0:
                last_report = loop.time()
                progress(elapsed, fleet.tally)
            next_tick += interval
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
        for site_id, device_id, value in fleet.drain():
            await client.send_raw(site_id, value, keys.get(device_id))
        await client.flush()
    if progress:
        progress(options.duration_s, fleet.tally)
    return fleet.tally


def progress_printer(options: SimulationOptions) -> Callable[[float, Tally], None]:
    """A live line on a terminal; a line every 10 s in a log."""
    tty = sys.stderr.isatty()
    last = [-10.0]

    def show(elapsed: float, tally: Tally) -> None:
        if not tty and elapsed - last[0] < 10 and elapsed < options.duration_s:
            return
        last[0] = elapsed
        rate = tally.sent / elapsed if elapsed > 0 else 0.0
        line = (
            f"[{elapsed:5.0f}/{options.duration_s:.0f} s] sent {tally.sent:,} "
            f"({rate:,.0f}/s), bad {sum(tally.bad.values()):,}"
        )
        print(f"\r{line}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    return show


def summary(tally: Tally) -> str:
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(tally.by_kind.items()))
    bad = ", ".join(f"{reason} {n:,}" for reason, n in sorted(tally.bad.items())) or "none"
    return (
        f"sent {tally.sent:,} records: {kinds}; bad {sum(tally.bad.values()):,} ({bad}); "
        f"{tally.buffered_in_outages:,} held back during outages and sent on reconnect"
    )
