"""Event-time 1-minute windows of one partition, with de-duplication and lateness. Pure.

Decisions depend only on the order of events in the partition, never on how they were batched:
an event is ``late`` when its window's end plus the allowed lateness is at or before the
watermark *before* that event (the largest event time seen so far). Replaying the partition
after a crash therefore reaches the same verdicts, which is what makes the counts exact.

A repeat of an ``event_id`` is recognised within the de-duplication horizon: ids are kept per
event-time minute (a repeat carries the same ``ts``), and minutes older than the horizon behind
the watermark are forgotten.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from ddsketch import DDSketch
from ddsketch.pb import ddsketch_pb2
from ddsketch.pb.proto import DDSketchProto

from hub.telemetry import Event

MINUTE_MS = 60_000
# DDSketch guarantees every quantile within this relative error of the true value.
RELATIVE_ACCURACY = 0.01


def id_hash(event_id: str) -> int:
    """A stable 64-bit digest of an event id: compact to remember, the same in every process."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


def minute_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % MINUTE_MS


@dataclass(slots=True)
class Acc:
    """count, sum, min, max and a DDSketch of one metric's samples: mergeable."""

    count: int = 0
    sum: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")
    sketch: DDSketch = field(default_factory=lambda: DDSketch(RELATIVE_ACCURACY))

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.sketch.add(value)

    def merge(self, other: Acc) -> None:
        if other.count == 0:
            return
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.sketch.merge(other.sketch)

    def quantile(self, q: float) -> float | None:
        if self.count == 0:
            return None
        value = self.sketch.get_quantile_value(q)
        # The sketch's bucket midpoints can stray just outside the observed range.
        return None if value is None else min(max(value, self.min), self.max)


def encode_sketch(sketch: DDSketch) -> bytes:
    """DDSketch's own protobuf form: what its Java and Go implementations read too."""
    return bytes(DDSketchProto.to_proto(sketch).SerializeToString())  # type: ignore[no-untyped-call]


def decode_sketch(raw: bytes) -> DDSketch:
    proto = ddsketch_pb2.DDSketch()
    proto.ParseFromString(raw)
    sketch: DDSketch = DDSketchProto.from_proto(proto)  # type: ignore[no-untyped-call]
    return sketch


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    site_id: str
    metric: str
    start_ms: int
    acc: Acc

    @property
    def end_ms(self) -> int:
        return self.start_ms + MINUTE_MS


class Verdict(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """What the journal keeps of an accepted event: enough to rebuild windows and de-dup."""

    site_id: str
    ts_ms: int
    id_hash: int
    metrics: dict[str, float]


class PartitionWindows:
    """The open windows and remembered event ids of one Kafka partition."""

    def __init__(self, *, lateness_ms: int, dedup_horizon_ms: int) -> None:
        self.lateness_ms = lateness_ms
        self.dedup_horizon_ms = dedup_horizon_ms
        self.watermark_ms = 0
        # Every window ending at or before this has been emitted.
        self.closed_through_ms = 0
        self.open: dict[tuple[str, str, int], Acc] = {}
        self.seen: dict[int, set[int]] = {}

    def offer(self, event: Event, digest: int) -> Verdict:
        """Judge one event in partition order; accepted events are added to their windows."""
        minute = minute_of(event.ts_ms)
        ids = self.seen.get(minute)
        if ids is not None and digest in ids:
            return Verdict.DUPLICATE
        if minute + MINUTE_MS + self.lateness_ms <= self.watermark_ms or (
            minute + MINUTE_MS <= self.closed_through_ms
        ):
            return Verdict.LATE
        self._add(event.site_id, minute, digest, event.metrics)
        if event.ts_ms > self.watermark_ms:
            self.watermark_ms = event.ts_ms
        return Verdict.ACCEPTED

    def restore(self, entries: Iterable[JournalEntry], watermark_ms: int, closed_ms: int) -> None:
        """Rebuild from the journal: ids always, samples only for windows not yet emitted."""
        self.watermark_ms = max(self.watermark_ms, watermark_ms)
        self.closed_through_ms = max(self.closed_through_ms, closed_ms)
        for entry in entries:
            minute = minute_of(entry.ts_ms)
            if minute + MINUTE_MS <= self.closed_through_ms:
                self.seen.setdefault(minute, set()).add(entry.id_hash)
            else:
                self._add(entry.site_id, minute, entry.id_hash, entry.metrics)
            self.watermark_ms = max(self.watermark_ms, entry.ts_ms)

    def _add(self, site_id: str, minute: int, digest: int, metrics: dict[str, float]) -> None:
        self.seen.setdefault(minute, set()).add(digest)
        open_windows = self.open
        for metric, value in metrics.items():
            key = (site_id, metric, minute)
            acc = open_windows.get(key)
            if acc is None:
                acc = open_windows[key] = Acc()
            acc.add(value)

    def advance(self, watermark_ms: int) -> None:
        """Move event time forward without an event (the idle rule, driven by the wall clock)."""
        self.watermark_ms = max(self.watermark_ms, watermark_ms)

    def close_due(self) -> list[ClosedWindow]:
        """Emit every window whose end plus lateness the watermark has passed, oldest first."""
        through = minute_of(self.watermark_ms - self.lateness_ms)
        if through <= self.closed_through_ms:
            return []
        due = [key for key in self.open if key[2] + MINUTE_MS <= through]
        due.sort(key=lambda key: (key[2], key[0], key[1]))
        closed = [
            ClosedWindow(site, metric, start, self.open.pop((site, metric, start)))
            for site, metric, start in due
        ]
        self.closed_through_ms = through
        self._forget_old_ids()
        return closed

    def _forget_old_ids(self) -> None:
        horizon = self.watermark_ms - self.dedup_horizon_ms
        for minute in [m for m in self.seen if m + MINUTE_MS <= horizon]:
            del self.seen[minute]

    def journal_is_obsolete(self, newest_ts_ms: int) -> bool:
        """A journal chunk is no longer needed once its newest event is past both windows and
        the de-duplication horizon."""
        return (
            minute_of(newest_ts_ms) + MINUTE_MS <= self.closed_through_ms
            and minute_of(newest_ts_ms) + MINUTE_MS <= self.watermark_ms - self.dedup_horizon_ms
        )
