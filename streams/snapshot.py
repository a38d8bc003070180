"""What the stream processors need from the registry, as one immutable snapshot.

Loaded from the database (``streams.database.load_snapshot``, once `hub registry load` ran) and
swapped whole when ``registry_state.digest`` changes, so a worker picks up edits without a
restart and a batch never sees half of an update. Everything a batch looks up per record or per
window is indexed here, once per snapshot, by :func:`build_snapshot` (pure: tests and benchmarks
build one from the registry files).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import cache, lru_cache
from typing import Final

from hub.partitioning import partition_of
from hub.registry.model import KST, Kpi, Registry

# Demonstration periods are Korean calendar days: starts_on 00:00 to the day after ends_on 00:00.


@dataclass(frozen=True, slots=True)
class SiteInfo:
    region: str
    district: str


# Far in the future: a key not revoked, or a snapshot built from files (nothing newer exists).
FOREVER_MS: Final = 2**62
# How far the broker's clock (append times) may trail the database's (key issue times).
KEY_CLOCK_MARGIN_MS: Final = 5_000


@dataclass(frozen=True, slots=True)
class KeySpan:
    """A device's signing key and when it was valid: records the broker appended in
    ``[from_ms, until_ms)`` are judged by it (issued at ``from_ms``; rotated or revoked at
    ``until_ms``)."""

    from_ms: int
    until_ms: int
    secret: bytes

    def covers(self, appended_ms: int) -> bool:
        # A key can sign nothing before its device holds it: taking it a little before its
        # issue time by the broker's clock (which may trail the database's) opens nothing.
        return self.from_ms - KEY_CLOCK_MARGIN_MS <= appended_ms < self.until_ms


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    site_id: str
    demonstration_id: str
    # The device's signing keys over time (``hub access add-device | rotate-key``), oldest first.
    keys: tuple[KeySpan, ...] = ()

    @property
    def current_key(self) -> bytes | None:
        """The key it signs with now (none once revoked)."""
        last = self.keys[-1] if self.keys else None
        return last.secret if last is not None and last.until_ms == FOREVER_MS else None


@dataclass(frozen=True, slots=True)
class KpiVersion:
    """One definition of a KPI and when it applies: windows starting in [from_ms, until_ms)."""

    version: int
    from_ms: int
    until_ms: int
    threshold: float
    min_samples: int


@dataclass(frozen=True, slots=True)
class DemoInfo:
    demonstration_id: str
    company: str
    starts_ms: int  # the active period, [starts_ms, ends_ms), epoch milliseconds (an early end
    ends_ms: int  # shortens it)
    metrics: frozenset[str]  # the names its devices may report
    kpis: tuple[Kpi, ...]
    # Where it stands in the programme: applied, approved, rejected, ended, archived (approved
    # within its period is active).
    status: str = "approved"
    # kpi id -> its versions, oldest first (none: the KPI as ``kpis`` holds it, always).
    kpi_versions: Mapping[str, tuple[KpiVersion, ...]] = field(default_factory=dict)
    title: str = ""  # what its results name it as, to partners who do not hold the registry

    def judges(self, window_start_ms: int, window_end_ms: int) -> bool:
        """A KPI window is judged only when it lies inside the demonstration's period."""
        return self.starts_ms <= window_start_ms and window_end_ms <= self.ends_ms

    def active_at(self, ts_ms: int) -> bool:
        """Whether a record dated ``ts_ms`` belongs to its active period (only those records
        are counted and judged)."""
        return self.status in ACCEPTING and self.starts_ms <= ts_ms < self.ends_ms

    def kpi_at(self, kpi: Kpi, window_start_ms: int) -> Kpi:
        """The KPI's definition for a window starting then: its version valid at that time."""
        for version in self.kpi_versions.get(kpi.kpi_id, ()):
            if version.from_ms <= window_start_ms < version.until_ms:
                if version.version == kpi.version and version.threshold == kpi.threshold:
                    return kpi
                return replace(
                    kpi,
                    threshold=version.threshold,
                    min_samples=version.min_samples,
                    version=version.version,
                )
        return kpi


@dataclass(frozen=True, slots=True)
class Programme:
    """A demonstration's standing in the programme, as the database holds it."""

    status: str = "approved"
    ended_ms: int | None = None  # ended early at
    kpi_versions: Mapping[str, tuple[KpiVersion, ...]] = field(default_factory=dict)


# Statuses whose devices' records are counted (within the period): an application not yet
# approved has no devices registered; a rejected or archived one counts nothing more.
ACCEPTING: Final = frozenset({"approved", "ended"})


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
    # The database's clock when it was read: every device and key that existed then is here. A
    # record appended later that names an unknown device or fails its signature may be one
    # issued since: the runtime reads the registry again before rejecting it.
    as_of_ms: int = FOREVER_MS
    # The key of the hub's mark on records `hub dlq replay` sends (``hub.signing``).
    replay_key: bytes | None = None

    def is_final_for(self, appended_ms: int, margin_ms: int) -> bool:
        """Whether this snapshot knows every key that could sign a record appended then (the
        broker's and the database's clocks may differ by ``margin_ms``)."""
        return appended_ms < self.as_of_ms - margin_ms

    def partition_of(self, site_id: str, partitions: int) -> int:
        """Where Kafka's default (murmur2) partitioner puts a record keyed by ``site_id``."""
        return _partition(site_id, partitions)

    def sites_on(self, partition: int, partitions: int) -> tuple[str, ...]:
        """The registered sites whose records belong to ``partition``."""
        return _sites_on(self, partition, partitions)

    def __hash__(self) -> int:  # for the cache of sites_on: one snapshot, one digest
        return hash(self.digest)


# Nothing loaded yet: any device it does not know may exist.
EMPTY = Snapshot(digest="", as_of_ms=0)


@cache
def _partition(site_id: str, partitions: int) -> int:
    return partition_of(site_id.encode(), partitions)


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


def _spans(key: bytes | Sequence[KeySpan] | None) -> tuple[KeySpan, ...]:
    if key is None:
        return ()
    if isinstance(key, bytes):
        return (KeySpan(0, FOREVER_MS, key),)
    return tuple(key)


def build_snapshot(
    registry: Registry,
    keys: Mapping[str, bytes] | Mapping[str, Sequence[KeySpan]] | None = None,
    digest: str | None = None,
    as_of_ms: int = FOREVER_MS,
    replay_key: bytes | None = None,
    programme: Mapping[str, Programme] | None = None,
) -> Snapshot:
    """Index a registry for the stream processors; ``keys``: device id -> its signing keys over
    time (or one key, valid always); ``programme``: demonstration id -> where it stands (an
    approved one, its KPIs as they are, when absent)."""
    programme = programme or {}
    keys = keys or {}
    devices = {
        d.device_id: DeviceInfo(d.site_id, d.demonstration_id, _spans(keys.get(d.device_id)))
        for d in registry.devices
    }
    sites = {s.site_id: SiteInfo(s.region, s.district) for s in registry.sites}
    demonstrations: dict[str, DemoInfo] = {}
    kpi_inputs: dict[tuple[str, str], list[Kpi]] = defaultdict(list)
    for demo in registry.demonstrations:
        starts, ends = period_ms(demo.starts_on, demo.ends_on)
        standing = programme.get(demo.demonstration_id, Programme())
        if standing.ended_ms is not None:
            ends = min(ends, standing.ended_ms)
        demonstrations[demo.demonstration_id] = DemoInfo(
            demo.demonstration_id,
            demo.company,
            starts,
            ends,
            demo.declared_metrics,
            demo.kpis,
            standing.status,
            standing.kpi_versions,
            demo.title,
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
        as_of_ms,
        replay_key,
    )
