"""What the stream processors need from the registry, as one immutable snapshot.

Loaded from the database (the registry's home once `hub registry load` ran) and swapped whole when
``registry_state.digest`` changes, so a worker picks up edits without a restart and a batch never
sees half of an update.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from hub.db import Connection
from hub.registry.model import Kpi


@dataclass(frozen=True, slots=True)
class SiteInfo:
    region: str
    district: str


@dataclass(frozen=True, slots=True)
class SiteKpi:
    demonstration_id: str
    kpi: Kpi


@dataclass(frozen=True, slots=True)
class Snapshot:
    digest: str
    devices: dict[str, str] = field(default_factory=dict)  # device_id -> site_id
    sites: dict[str, SiteInfo] = field(default_factory=dict)
    kpis_by_site: dict[str, tuple[SiteKpi, ...]] = field(default_factory=dict)

    def kpis_for(self, site_id: str, metric: str) -> tuple[SiteKpi, ...]:
        return tuple(k for k in self.kpis_by_site.get(site_id, ()) if k.kpi.metric == metric)


EMPTY = Snapshot(digest="")


async def current_digest(conn: Connection) -> str:
    value = await conn.fetchval("SELECT digest FROM registry_state")
    return str(value) if value is not None else ""


async def load_snapshot(conn: Connection) -> Snapshot:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        digest = await current_digest(conn)
        devices = {
            r["device_id"]: r["site_id"]
            for r in await conn.fetch("SELECT device_id, site_id FROM devices")
        }
        sites = {
            r["site_id"]: SiteInfo(r["region"], r["district"])
            for r in await conn.fetch("SELECT site_id, region, district FROM sites")
        }
        rows = await conn.fetch(
            """SELECT DISTINCT d.site_id, k.demonstration_id, k.kpi_id, k.title, k.metric,
                      k.aggregation, k.op, k.threshold, k."window", k.min_samples
                 FROM devices d JOIN kpis k USING (demonstration_id)
                ORDER BY d.site_id, k.demonstration_id, k.kpi_id"""
        )
    by_site: dict[str, list[SiteKpi]] = defaultdict(list)
    for r in rows:
        kpi = Kpi(
            r["kpi_id"],
            r["title"],
            r["metric"],
            r["aggregation"],
            r["op"],
            r["threshold"],
            r["window"],
            r["min_samples"],
        )
        by_site[r["site_id"]].append(SiteKpi(r["demonstration_id"], kpi))
    return Snapshot(digest, devices, sites, {s: tuple(k) for s, k in by_site.items()})
