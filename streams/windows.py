"""Event-time 1-minute windows of one partition, with de-duplication and lateness. Pure.

A window holds one metric of one demonstration's devices at one site for one minute of event time:
at a site shared by several demonstrations, each one's devices fill windows of their own.

Decisions depend only on what the partition's log holds, never on how it was batched or when it
is read: an event is ``late`` when its window's end plus the allowed lateness is at or before the
watermark *before* that event. The watermark is the largest event time seen, except that no event
moves it past its own arrival (the broker's log-append time) plus ``clock_tolerance_ms``: a device
whose clock runs ahead is accepted into its own windows but cannot make everybody else late.
Replaying the partition after a crash reaches the same verdicts, which is what keeps counts exact.

A repeat of a (``device_id``, ``event_id``) pair is recognised whatever ``ts`` it carries, for
``dedup_horizon_ms`` of arrival time after the pair was first accepted (log-append times only grow
within a partition, and no device sets them). Ids are unique per device only: two devices that
both number their events 1, 2, 3... each count. Journals written before hold digests of the
``event_id`` alone; restored, they are remembered apart (``legacy``) until the horizon passes.
"""

from __future__ import annotations

import hashlib
import struct
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

import msgspec
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.pb import ddsketch_pb2
from ddsketch.pb.proto import DDSketchProto

from streams import sketches

MINUTE_MS = 60_000
# DDSketch guarantees every quantile within this relative error of the true value.
RELATIVE_ACCURACY = sketches.RELATIVE_ACCURACY
# Values a window buffers before binning them into its sketch: bounds the buffer (8 bytes a
# value) at high rates while binning in bulk.
FOLD_AT = 256
# How far ahead of its arrival an event may move the watermark: device clocks disciplined by NTP
# are within milliseconds; the broker's and the device's clocks may differ by a little more.
CLOCK_TOLERANCE_MS = 5_000
# The quantiles a closed window reports (p50, p95, p99).
AGGREGATE_QUANTILES: Final = (0.50, 0.95, 0.99)
# Windows summarised ahead of their close a call (``summarise_ahead``): at 1 Hz a partition sees
# ~10 batches a second and ~1,500 windows a minute, so a minute is summarised in about a second,
# at ~2 ms a batch; a batch of thousands of records spans seconds of event time and keeps up too.
SUMMARY_BUDGET = 256


_ID_HASH: Final = hashlib.blake2b(digest_size=8)
_UNSIGNED_64: Final = struct.Struct(">Q").unpack


def id_hash(event_id: str) -> int:
    """The digest journals written before per-device ids held: of the event id alone. Only for
    reading them (a repeat of an event accepted before the upgrade is still a repeat)."""
    digest = _ID_HASH.copy()
    digest.update(event_id.encode())
    value: int = _UNSIGNED_64(digest.digest())[0]
    return value


_ID_LENGTH: Final = struct.Struct(">H").pack


def event_digest(device_id: str, event_id: str) -> int:
    """A stable 64-bit digest of a (device, event id) pair: compact to remember, the same in
    every process. The device id goes first with its length, so no two pairs share an input.
    (A prepared BLAKE2b copied, read as one unsigned integer: a third cheaper a record than
    constructing the hash and ``int.from_bytes``.)"""
    device = device_id.encode()
    digest = _ID_HASH.copy()
    digest.update(_ID_LENGTH(len(device)))
    digest.update(device)
    digest.update(event_id.encode())
    value: int = _UNSIGNED_64(digest.digest())[0]
    return value


def minute_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % MINUTE_MS


@dataclass(slots=True)
class Acc:
    """count, sum, min, max and a DDSketch of one metric's samples: mergeable. Values wait in
    ``pending`` and are binned into the sketch together (``streams.sketches``)."""

    count: int = 0
    sum: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")
    pending: array[float] = field(default_factory=lambda: array("d"))
    binned: BaseDDSketch | None = None

    @classmethod
    def of(cls, values: array[float]) -> Acc:
        """The accumulator of ``values`` (taken over, not copied): a window's summary is taken
        from its values once, at close, instead of being kept up to date value by value."""
        if not values:
            return cls()
        acc = cls(len(values), sum(values), min(values), max(values), values)
        if len(values) >= FOLD_AT:
            acc._fold()
        return acc

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        pending = self.pending
        pending.append(value)
        if len(pending) >= FOLD_AT:
            self._fold()

    def _fold(self) -> None:
        self.binned = sketches.fold(self.binned, self.pending)
        self.pending = array("d")

    @property
    def sketch(self) -> BaseDDSketch:
        """Every value added so far, in the ddsketch library's form."""
        if self.pending:
            self._fold()
        if self.binned is None:
            self.binned = sketches.empty()
        return self.binned

    @sketch.setter
    def sketch(self, sketch: BaseDDSketch) -> None:
        self.pending = array("d")
        self.binned = sketch

    def merge(self, other: Acc) -> None:
        """Values the other has not binned are taken as values (the same bins either way)."""
        if other.count == 0:
            return
        self.merge_summary(other)
        if other.binned is None:
            self.pending.extend(other.pending)
            if len(self.pending) >= FOLD_AT:
                self._fold()
        else:
            self.sketch.merge(other.sketch)

    def merge_summary(self, other: Acc) -> None:
        """The other's count, sum, min and max, not its values: for a KPI that judges no
        quantile, whose values would only be binned and written with its state every minute."""
        if other.count == 0:
            return
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """The sketch's answers; None when empty, or when the sketch cannot answer: intake keeps
        values in a range the sketch handles, but a window must close whatever it holds. Values
        not binned yet (most windows: under ``FOLD_AT``) are answered without binning them."""
        if self.count == 0:
            return [None for _ in qs]
        try:
            if self.binned is None:
                values = sketches.quantiles_of(self.pending, qs)
            else:
                sketch = self.sketch
                values = [sketch.get_quantile_value(q) for q in qs]
        except (ArithmeticError, ValueError):
            return [None for _ in qs]
        # The sketch's bucket midpoints can stray just outside the observed range.
        low, high = self.min, self.max
        return [None if v is None else min(max(v, low), high) for v in values]


def encode_sketch(sketch: BaseDDSketch) -> bytes:
    """DDSketch's own protobuf form: what its Java and Go implementations read too."""
    return bytes(DDSketchProto.to_proto(sketch).SerializeToString())  # type: ignore[no-untyped-call]


def decode_sketch(raw: bytes) -> BaseDDSketch:
    proto = ddsketch_pb2.DDSketch()
    proto.ParseFromString(raw)
    sketch: BaseDDSketch = DDSketchProto.from_proto(proto)  # type: ignore[no-untyped-call]
    return sketch


# (site_id, demonstration_id, metric): one series of 1-minute windows.
Series = tuple[str, str, str]
# (site_id, demonstration_id): one demonstration's devices at one site, whose records fill one
# window per metric: a record looks its group up once, then appends each metric's value.
Group = tuple[str, str]
# (minute, site_id, demonstration_id, metric): one window.
WindowKey = tuple[int, str, str, str]


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    site_id: str
    demonstration_id: str
    metric: str
    start_ms: int
    acc: Acc
    # The acc's AGGREGATE_QUANTILES.
    quantiles: list[float | None]

    @property
    def end_ms(self) -> int:
        return self.start_ms + MINUTE_MS


@dataclass(frozen=True, slots=True)
class DeviceMinute:
    """How many of a device's records one closed minute accepted, and the newest event time
    among them: what a company reads as its device's activity."""

    site_id: str
    demonstration_id: str
    device_id: str
    start_ms: int
    records: int
    last_ts_ms: int


class Verdict(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"


class JournalEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What the journal keeps of an accepted event: enough to rebuild windows and de-dup. Its
    own wire form too (``streams.state``): made once per accepted record, never copied."""

    site_id: str
    demonstration_id: str
    ts_ms: int
    arrival_ms: int
    id_hash: int
    metrics: dict[str, float]
    # Absent in journals written before devices were counted: such entries count for no device.
    device_id: str = ""


class PartitionWindows:
    """The open windows and remembered event ids of one Kafka partition."""

    def __init__(
        self,
        *,
        lateness_ms: int,
        dedup_horizon_ms: int,
        clock_tolerance_ms: int = CLOCK_TOLERANCE_MS,
    ) -> None:
        self.lateness_ms = lateness_ms
        self.dedup_horizon_ms = dedup_horizon_ms
        self.clock_tolerance_ms = clock_tolerance_ms
        self.watermark_ms = 0
        # Every window ending at or before this has been emitted.
        self.closed_through_ms = 0
        # minute -> group -> metric -> the window's values: closing takes whole minutes, oldest
        # first. A window holding FOLD_AT values has them summarised into ``folded``, which
        # bounds its memory at any rate.
        self.open: dict[int, dict[Group, dict[str, array[float]]]] = {}
        self.folded: dict[WindowKey, Acc] = {}
        # minute -> (site, demonstration, device) -> [records, newest ts]: closed with the
        # minute's windows into ``closed_devices``, which the caller takes.
        self.devices: dict[int, dict[tuple[str, str, str], list[int]]] = {}
        self.closed_devices: list[DeviceMinute] = []
        # Event ids by the minute of arrival they were first accepted in: forgotten a minute at
        # a time once the horizon has passed. ``arrived_ms``: the newest arrival seen.
        self.seen: dict[int, int] = {}
        self.seen_by_minute: dict[int, list[int]] = {}
        # Digests of the event id alone, from journals written before ids were per device:
        # empty once the horizon has passed over them (checked only while not empty).
        self.legacy: dict[int, int] = {}
        self.legacy_by_minute: dict[int, list[int]] = {}
        self.arrived_ms = 0
        # Windows summarised ahead of their close (``summarise_ahead``), and those queued for it:
        # minutes ending at or before ``summarised_through_ms`` have been queued.
        self.summaries: dict[WindowKey, tuple[Acc, list[float | None]]] = {}
        self.to_summarise: list[tuple[int, Group, str]] = []
        self.summarised_through_ms = 0

    def is_repeat(self, digest: int) -> bool:
        return digest in self.seen

    def is_legacy_repeat(self, event_id: str) -> bool:
        """An event accepted before the upgrade to per-device ids (its device is not known)."""
        return bool(self.legacy) and id_hash(event_id) in self.legacy

    def offer(
        self,
        site_id: str,
        demonstration_id: str,
        ts_ms: int,
        arrival_ms: int,
        digest: int,
        metrics: dict[str, float],
        device_id: str = "",
    ) -> Verdict:
        """Judge one event in partition order; accepted events are added to their windows."""
        verdict = self.judge(ts_ms, arrival_ms, digest)
        if verdict is Verdict.ACCEPTED:
            minute = minute_of(ts_ms)
            self._add(site_id, demonstration_id, minute, metrics)
            if device_id:
                self._count(site_id, demonstration_id, device_id, minute, ts_ms)
        return verdict

    def judge(self, ts_ms: int, arrival_ms: int, digest: int) -> Verdict:
        """The verdict on one event in partition order, its id remembered and the watermark
        moved when accepted, but its values not added yet: ``add_all`` adds a batch's accepted
        events together once the batch is judged (nothing closes in between, and a verdict
        depends on ids and event time only, never on what a window holds)."""
        if digest in self.seen:
            return Verdict.DUPLICATE
        end = ts_ms - ts_ms % MINUTE_MS + MINUTE_MS
        if end + self.lateness_ms <= self.watermark_ms or end <= self.closed_through_ms:
            return Verdict.LATE
        self._remember(digest, arrival_ms)
        mark = min(ts_ms, arrival_ms + self.clock_tolerance_ms)
        if mark > self.watermark_ms:
            self.watermark_ms = mark
        return Verdict.ACCEPTED

    def add_all(self, entries: Sequence[JournalEntry]) -> None:
        """Add accepted events to their windows and device counts: grouped by minute, site and
        demonstration first (one lookup a group), then each group's values appended per metric."""
        groups: dict[tuple[int, str, str], list[JournalEntry]] = {}
        for entry in entries:
            ts = entry.ts_ms
            key = (ts - ts % MINUTE_MS, entry.site_id, entry.demonstration_id)
            same = groups.get(key)
            if same is None:
                groups[key] = [entry]
            else:
                same.append(entry)
        for (minute, site_id, demonstration_id), same in groups.items():
            self._add_group(minute, site_id, demonstration_id, same)

    def _add_group(
        self, minute: int, site_id: str, demonstration_id: str, entries: list[JournalEntry]
    ) -> None:
        by_minute = self.open.get(minute)
        if by_minute is None:
            by_minute = self.open[minute] = {}
        group = (site_id, demonstration_id)
        windows = by_minute.get(group)
        if windows is None:
            windows = by_minute[group] = {}
        devices = self.devices.get(minute)
        if devices is None:
            devices = self.devices[minute] = {}
        for entry in entries:
            for metric, value in entry.metrics.items():
                values = windows.get(metric)
                if values is None:
                    windows[metric] = array("d", (value,))
                else:
                    values.append(value)
                    # Folded at FOLD_AT exactly, however the log was batched: a window's sum
                    # adds the same floats in the same groups on every replay.
                    if len(values) >= FOLD_AT:
                        self._fold((minute, site_id, demonstration_id, metric), values)
            if entry.device_id:
                key = (site_id, demonstration_id, entry.device_id)
                counted = devices.get(key)
                if counted is None:
                    devices[key] = [1, entry.ts_ms]
                else:
                    counted[0] += 1
                    if entry.ts_ms > counted[1]:
                        counted[1] = entry.ts_ms

    def _move(self, ts_ms: int, arrival_ms: int) -> None:
        mark = min(ts_ms, arrival_ms + self.clock_tolerance_ms)
        if mark > self.watermark_ms:
            self.watermark_ms = mark

    def _remember(self, digest: int, arrival_ms: int) -> None:
        if arrival_ms > self.arrived_ms:
            self.arrived_ms = arrival_ms
        bucket = minute_of(arrival_ms)
        self.seen[digest] = bucket
        ids = self.seen_by_minute.get(bucket)
        if ids is None:
            self.seen_by_minute[bucket] = [digest]
        else:
            ids.append(digest)

    def _remember_legacy(self, digest: int, arrival_ms: int) -> None:
        if arrival_ms > self.arrived_ms:
            self.arrived_ms = arrival_ms
        bucket = minute_of(arrival_ms)
        self.legacy[digest] = bucket
        self.legacy_by_minute.setdefault(bucket, []).append(digest)

    def _add(
        self, site_id: str, demonstration_id: str, minute: int, metrics: dict[str, float]
    ) -> None:
        groups = self.open.get(minute)
        if groups is None:
            groups = self.open[minute] = {}
        group = (site_id, demonstration_id)
        windows = groups.get(group)
        if windows is None:
            groups[group] = {metric: array("d", (value,)) for metric, value in metrics.items()}
            return
        for metric, value in metrics.items():
            values = windows.get(metric)
            if values is None:
                windows[metric] = array("d", (value,))
                continue
            values.append(value)
            if len(values) >= FOLD_AT:
                self._fold((minute, site_id, demonstration_id, metric), values)

    def _count(
        self, site_id: str, demonstration_id: str, device_id: str, minute: int, ts_ms: int
    ) -> None:
        devices = self.devices.get(minute)
        if devices is None:
            devices = self.devices[minute] = {}
        key = (site_id, demonstration_id, device_id)
        counted = devices.get(key)
        if counted is None:
            devices[key] = [1, ts_ms]
            return
        counted[0] += 1
        if ts_ms > counted[1]:
            counted[1] = ts_ms

    def take_devices(self) -> list[DeviceMinute]:
        """The device minutes closed since the last call."""
        taken, self.closed_devices = self.closed_devices, []
        return taken

    def _fold(self, key: WindowKey, values: array[float]) -> None:
        part = Acc.of(array("d", values))
        del values[:]
        folded = self.folded.get(key)
        if folded is None:
            self.folded[key] = part
        else:
            folded.merge(part)

    def window(self, minute: int, series: Series) -> Acc | None:
        """What an open window holds so far (a copy), or None: for tests and inspection."""
        site_id, demonstration_id, metric = series
        values = self.open.get(minute, {}).get((site_id, demonstration_id), {}).get(metric)
        if values is None:
            return None
        return self._closing(minute, site_id, demonstration_id, metric, array("d", values))

    def _closing(
        self, minute: int, site_id: str, demonstration_id: str, metric: str, values: array[float]
    ) -> Acc:
        acc = Acc.of(values)
        folded = self.folded.get((minute, site_id, demonstration_id, metric))
        if folded is None:
            return acc
        whole = Acc()
        whole.merge(folded)
        whole.merge(acc)
        return whole

    def restore(
        self,
        entries: Iterable[tuple[JournalEntry, bool]],
        watermark_ms: int,
        closed_ms: int,
    ) -> None:
        """Rebuild from the journal: ids always, samples only for windows not yet emitted.
        Each entry comes with whether its digest is a legacy one (of the event id alone)."""
        self.watermark_ms = max(self.watermark_ms, watermark_ms)
        self.closed_through_ms = max(self.closed_through_ms, closed_ms)
        for entry, legacy in entries:
            if legacy:
                self._remember_legacy(entry.id_hash, entry.arrival_ms)
            else:
                self._remember(entry.id_hash, entry.arrival_ms)
            minute = minute_of(entry.ts_ms)
            if minute + MINUTE_MS > self.closed_through_ms:
                self._add(entry.site_id, entry.demonstration_id, minute, entry.metrics)
                if entry.device_id:
                    self._count(
                        entry.site_id, entry.demonstration_id, entry.device_id, minute, entry.ts_ms
                    )
            self._move(entry.ts_ms, entry.arrival_ms)

    def advance(self, watermark_ms: int) -> None:
        """Move event time forward without an event (the idle rule, driven by the wall clock)."""
        self.watermark_ms = max(self.watermark_ms, watermark_ms)

    def summarise_ahead(self, budget: int = SUMMARY_BUDGET) -> int:
        """Summarise up to ``budget`` windows whose minute ended a quarter of the lateness ago
        (their acc and quantiles), so that closing them takes the summary instead of computing
        it: every partition's windows close in the same instant, and this work is the largest
        part of the close's CPU. A window that takes a value after its summary is summarised
        again at its close (its count tells), so the outcome never depends on this."""
        through = minute_of(self.watermark_ms - self.lateness_ms // 4)
        if through > self.summarised_through_ms:
            queued = [
                (minute, group, metric)
                for minute in sorted(self.open)
                if self.summarised_through_ms < minute + MINUTE_MS <= through
                for group, windows in self.open[minute].items()
                for metric in windows
            ]
            queued.reverse()  # taken from the end: oldest minute first, after what waits
            self.to_summarise[:0] = queued
            self.summarised_through_ms = through
        done = 0
        while self.to_summarise and done < budget:
            minute, group, metric = self.to_summarise.pop()
            values = self.open.get(minute, {}).get(group, {}).get(metric)
            if values is None:
                continue  # closed since it was queued
            site, demo = group
            # The acc holds the window's own array: a value added later changes the array but
            # not the acc's count, and the close then summarises the window again.
            acc = self._closing(minute, site, demo, metric, values)
            self.summaries[(minute, site, demo, metric)] = (acc, acc.quantiles(AGGREGATE_QUANTILES))
            done += 1
        return done

    def _summary(
        self, minute: int, site: str, demo: str, metric: str, values: array[float]
    ) -> tuple[Acc, list[float | None]]:
        """A closing window's acc and quantiles: its summary made ahead, unless it took values
        since (values are only ever added, so a changed window has a larger count)."""
        key = (minute, site, demo, metric)
        ready = self.summaries.pop(key, None)
        if ready is not None:
            folded = self.folded.get(key)
            if ready[0].count == len(values) + (folded.count if folded is not None else 0):
                return ready
        acc = self._closing(minute, site, demo, metric, values)
        return acc, acc.quantiles(AGGREGATE_QUANTILES)

    def close_due(self) -> list[ClosedWindow]:
        """Emit every window whose end plus lateness the watermark has passed, oldest first."""
        through = minute_of(self.watermark_ms - self.lateness_ms)
        if through <= self.closed_through_ms:
            return []
        closed: list[ClosedWindow] = []
        for minute in sorted(m for m in self.open if m + MINUTE_MS <= through):
            groups = self.open.pop(minute)
            for site, demo in sorted(groups):
                windows = groups[(site, demo)]
                for metric in sorted(windows):
                    acc, quantiles = self._summary(minute, site, demo, metric, windows[metric])
                    closed.append(ClosedWindow(site, demo, metric, minute, acc, quantiles))
        if self.folded:
            for key in [k for k in self.folded if k[0] + MINUTE_MS <= through]:
                del self.folded[key]
        if self.summaries:  # of windows a restore or a test closed without their summary
            for key in [k for k in self.summaries if k[0] + MINUTE_MS <= through]:
                del self.summaries[key]
        for minute in sorted(m for m in self.devices if m + MINUTE_MS <= through):
            counted = self.devices.pop(minute)
            self.closed_devices.extend(
                DeviceMinute(site, demo, device, minute, n, last)
                for (site, demo, device), (n, last) in sorted(counted.items())
            )
        self.closed_through_ms = through
        self._forget_old_ids()
        return closed

    def open_windows(self) -> int:
        return sum(len(windows) for groups in self.open.values() for windows in groups.values())

    def _forget_old_ids(self) -> None:
        horizon = self.arrived_ms - self.dedup_horizon_ms
        for minute in [m for m in self.seen_by_minute if m + MINUTE_MS <= horizon]:
            for digest in self.seen_by_minute.pop(minute):
                if self.seen.get(digest) == minute:
                    del self.seen[digest]
        for minute in [m for m in self.legacy_by_minute if m + MINUTE_MS <= horizon]:
            for digest in self.legacy_by_minute.pop(minute):
                if self.legacy.get(digest) == minute:
                    del self.legacy[digest]

    def journal_horizon(self) -> tuple[int, int]:
        """What ``journal_is_obsolete`` depends on: the chunks obsolete can change only when
        this does (once a minute), and it only grows."""
        return self.closed_through_ms, minute_of(self.arrived_ms - self.dedup_horizon_ms)

    def journal_is_obsolete(self, newest_ts_ms: int, newest_arrival_ms: int) -> bool:
        """A journal chunk is no longer needed once its events' windows are emitted and their
        ids are past the de-duplication horizon."""
        return (
            minute_of(newest_ts_ms) + MINUTE_MS <= self.closed_through_ms
            and minute_of(newest_arrival_ms) + MINUTE_MS <= self.arrived_ms - self.dedup_horizon_ms
        )
