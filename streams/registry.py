"""What the stream processors need from the registry, as one immutable snapshot.

Loaded from the database (the registry's home once `hub registry load` ran) and swapped whole when
``registry_state.digest`` changes, so a worker picks up edits without a restart and a batch never
sees half of an update. Everything a batch looks up per record or per window is indexed here,
once per snapshot, by :func:`build_snapshot` (pure: tests and benchmarks build one from the
registry files).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import cache, lru_cache

from aiokafka.partitioner import murmur2

from hub.db import Connection
from hub.registry.model import Demonstration, Device, Kpi, Registry, Site

# Demonstration periods are Korean calendar days: starts_on 00:00 to the day after ends_on 00:00.
KST = timezone(timedelta(hours=9), "KST")


@dataclass(frozen=True, slots=True)
class SiteInfo:
    region: str
    district: str


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    site_id: str
    demonstration_id: str
    # The device's signing key (``hub access add-device``); None when none is valid.
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class DemoInfo:
    demonstration_id: str
    company: str
    starts_ms: int  # the period, [starts_ms, ends_ms), epoch milliseconds
    ends_ms: int
    metrics: frozenset[str]  # the names its devices may report
    kpis: tuple[Kpi, ...]

    def judges(self, window_start_ms: int, window_end_ms: int) -> bool:
        """A KPI window is judged only when it lies inside the demonstration's period."""
        return self.starts_ms <= window_start_ms and window_end_ms <= self.ends_ms


@dataclass(frozen=True, slots=True)
class Snapshot:
    digest: str
    devices: Mapping[str, DeviceInfo] = field(default_factory=dict)
    sites: Mapping[str, SiteInfo] = field(default_factory=dict)
    demonstrations: Mapping[str, DemoInfo] = field(default_factory=dict)
    # site -> the demonstrations with devices there, in id order
    site_demos: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # (demonstration, metric) -> the demonstration's KPIs that read the metric's windows
    kpi_inputs: Mapping[tuple[str, str], tuple[Kpi, ...]] = field(default_factory=dict)

    def partition_of(self, site_id: str, partitions: int) -> int:
        """Where Kafka's default (murmur2) partitioner puts a record keyed by ``site_id``."""
        return _partition(site_id, partitions)

    def sites_on(self, partition: int, partitions: int) -> tuple[str, ...]:
        """The registered sites whose records belong to ``partition``."""
        return _sites_on(self, partition, partitions)

    def __hash__(self) -> int:  # for the cache of sites_on: one snapshot, one digest
        return hash(self.digest)


EMPTY = Snapshot(digest="")


@cache
def _partition(site_id: str, partitions: int) -> int:
    digest: int = murmur2(site_id.encode())
    return (digest & 0x7FFFFFFF) % partitions


@lru_cache(maxsize=64)
def _sites_on(snapshot: Snapshot, partition: int, partitions: int) -> tuple[str, ...]:
    return tuple(s for s in sorted(snapshot.sites) if _partition(s, partitions) == partition)


def period_ms(starts_on: str | date, ends_on: str | date) -> tuple[int, int]:
    """The period of a demonstration in epoch milliseconds: Korean days, ends_on included."""
    start = date.fromisoformat(starts_on) if isinstance(starts_on, str) else starts_on
    end = date.fromisoformat(ends_on) if isinstance(ends_on, str) else ends_on
    first = datetime.combine(start, time(), KST)
    after = datetime.combine(end + timedelta(days=1), time(), KST)
    return int(first.timestamp() * 1000), int(after.timestamp() * 1000)


def build_snapshot(
    registry: Registry, keys: Mapping[str, bytes] | None = None, digest: str | None = None
) -> Snapshot:
    """Index a registry for the stream processors; ``keys``: device id -> its signing key."""
    keys = keys or {}
    devices = {
        d.device_id: DeviceInfo(d.site_id, d.demonstration_id, keys.get(d.device_id))
        for d in registry.devices
    }
    sites = {s.site_id: SiteInfo(s.region, s.district) for s in registry.sites}
    demonstrations: dict[str, DemoInfo] = {}
    kpi_inputs: dict[tuple[str, str], list[Kpi]] = defaultdict(list)
    for demo in registry.demonstrations:
        starts, ends = period_ms(demo.starts_on, demo.ends_on)
        demonstrations[demo.demonstration_id] = DemoInfo(
            demo.demonstration_id,
            demo.company,
            starts,
            ends,
            demo.declared_metrics,
            demo.kpis,
        )
        for kpi in demo.kpis:
            for metric in kpi.inputs:
                kpi_inputs[(demo.demonstration_id, metric)].append(kpi)
    site_demos: dict[str, set[str]] = defaultdict(set)
    for device in registry.devices:
        site_demos[device.site_id].add(device.demonstration_id)
    return Snapshot(
        registry.digest if digest is None else digest,
        devices,
        sites,
        demonstrations,
        {site: tuple(sorted(demos)) for site, demos in site_demos.items()},
        {key: tuple(kpis) for key, kpis in kpi_inputs.items()},
    )


async def current_digest(conn: Connection) -> str:
    """The loaded registry's digest, and when device keys last changed: a snapshot is reloaded
    when either changes."""
    value = await conn.fetchval(
        "SELECT digest || coalesce('+' || extract(epoch FROM keys_changed_at)::text, '') "
        "FROM registry_state"
    )
    return str(value) if value is not None else ""


async def load_snapshot(conn: Connection) -> Snapshot:
    """The registry as the database holds it, with the devices' valid signing keys."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        digest = await current_digest(conn)
        sites = [
            Site(r["site_id"], r["region"], r["district"], r["place_type"], "", 0.0, 0.0)
            for r in await conn.fetch("SELECT site_id, region, district, place_type FROM sites")
        ]
        devices = [
            Device(r["device_id"], r["site_id"], r["demonstration_id"], "")
            for r in await conn.fetch("SELECT device_id, site_id, demonstration_id FROM devices")
        ]
        kpis: dict[str, list[Kpi]] = defaultdict(list)
        for r in await conn.fetch(
            """SELECT demonstration_id, kpi_id, title, metric, aggregation, op, threshold,
                      "window", min_samples, denominator
                 FROM kpis ORDER BY demonstration_id, kpi_id"""
        ):
            kpis[r["demonstration_id"]].append(
                Kpi(
                    r["kpi_id"],
                    r["title"],
                    r["metric"],
                    r["aggregation"],
                    r["op"],
                    r["threshold"],
                    r["window"],
                    r["min_samples"],
                    tuple(r["denominator"]),
                )
            )
        demonstrations = [
            Demonstration(
                r["demonstration_id"],
                r["company"],
                r["title"],
                r["technology"],
                r["starts_on"].isoformat(),
                r["ends_on"].isoformat(),
                tuple(kpis.get(r["demonstration_id"], ())),
                tuple(r["metrics"]),
            )
            for r in await conn.fetch(
                "SELECT demonstration_id, company, title, technology, starts_on, ends_on, metrics "
                "FROM demonstrations ORDER BY demonstration_id"
            )
        ]
        keys = await _device_keys(conn)
    registry = Registry(tuple(sites), tuple(devices), tuple(demonstrations), digest)
    return build_snapshot(registry, keys)


async def _device_keys(conn: Connection) -> dict[str, bytes]:
    rows = await conn.fetch("SELECT device_id, secret FROM device_keys WHERE revoked_at IS NULL")
    return {r["device_id"]: bytes(r["secret"]) for r in rows}
