"""The layout of a partition's durable state and its codecs, versioned explicitly.

One state table (one changelog topic) holds, per telemetry partition ``P``:

    P|j|<seq>                 a journal chunk: accepted events, enough to rebuild windows and ids
    P|K|<group>|<gen>|<part>  part of the KPI states of one group of sites (``kpi_group``), as
                              written by the batch numbered ``gen`` (``streams.kpitable``)
    P|k|<demo>|<kpi>|<site>   a KPI state on its own, as written before the groups: still read
                              (a group's copy wins), deleted once its group is written
    P|p                       the progress record: watermark, what is closed, offsets done

KPI states go in ``KPI_GROUPS`` groups of sites because nearly all of them change at every
close: one table write a state was ~830 writes a partition a minute, each a RocksDB put, a
changelog message and a standby's apply, a third of a worker's CPU at the close. A group is
split into parts of at most ``KPI_PART_BYTES`` (a changelog record is at most 1 MiB), and each
write of it is a new generation, its parts under new keys, the previous generation deleted after:
a durable prefix of the writes always holds one whole generation of every group.

A batch writes its journal chunks, then its KPI states, then the progress record, so that any
durable prefix of its writes is consistent. Every value starts with a version byte; the first
format (no version byte, written before per-demonstration windows) is still read: its journal
entries carry no demonstration (``LEGACY_DEMO`` until the processor attributes them).
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import msgspec

from streams.kpi import KpiState
from streams.windows import Acc, JournalEntry, decode_sketch, encode_sketch

V2: Final = b"\x02"
# A journal whose entries' digests are of (device_id, event_id): ids are unique per device. V2
# journals (the same layout) hold digests of the event id alone.
V3: Final = b"\x03"
# A v1 journal entry's demonstration, and a v1 KPI state's merge guard, before attribution.
LEGACY_DEMO: Final = "\x00v1"
# Groups of a partition's KPI states: ~26 states a group at the programme's size (~830 a
# partition), a few KiB each: one part a group, unless a partition holds many more sites.
KPI_GROUPS: Final = 32
# A part of a group: a quarter of a changelog record's limit (1 MiB), whatever else a state holds.
KPI_PART_BYTES: Final = 256 * 1024
# (demonstration, KPI, site): one KPI state.
KpiKey = tuple[str, str, str]


class _Kpi(msgspec.Struct, array_like=True, frozen=True):
    window_start_ms: int
    observed_from_ms: int
    count: int
    sum: float
    min: float
    max: float
    sketch: bytes
    sums: dict[str, float]
    merged: dict[str, int]
    minutes_up: int
    last_status: str | None
    open_alert: str | None
    # Values not binned into ``sketch`` yet: kept as values, binning them for every write of
    # the state cost a tenth of the processor's time at 1 Hz. (Absent in states written before.)
    pending: list[float] = []
    # Whether its site reported yet (absent in states written before: they count as reported,
    # their observation start stands).
    reported: bool = True


class Progress(msgspec.Struct, array_like=True, frozen=True):
    """What a partition has done, durably: written last in every batch."""

    watermark_ms: int
    closed_through_ms: int
    next_seq: int  # the next journal chunk's sequence number
    next_offset: int  # the offset after the last record processed
    written_ms: int  # when (the writer's clock): a new owner reads the DLQ back from here
    observed_from_ms: int = 0  # the first minute of event time the partition saw


_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder().decode
_entries = msgspec.msgpack.Decoder(list[JournalEntry])
_kpi = msgspec.msgpack.Decoder(_Kpi)
_progress = msgspec.msgpack.Decoder(Progress)
_part = msgspec.msgpack.Decoder(tuple[int, list[tuple[str, str, str, bytes]]])


@dataclass(frozen=True, slots=True)
class Layout:
    """The keys of one partition's entries in the state table."""

    partition: int

    @property
    def prefix(self) -> bytes:
        return f"{self.partition}|".encode()

    def owns(self, key: bytes) -> bool:
        return key.startswith(self.prefix)

    def journal(self, seq: int) -> bytes:
        return self.prefix + b"j|" + f"{seq:012d}".encode()

    def kpi(self, key: KpiKey) -> bytes:
        """A KPI state's own entry (the layout before groups)."""
        return self.prefix + b"k|" + "|".join(key).encode()

    def kpi_part(self, group: int, gen: int, part: int) -> bytes:
        return self.prefix + b"K|" + f"{group:03d}|{gen:012d}|{part:03d}".encode()

    @property
    def progress(self) -> bytes:
        return self.prefix + b"p"

    def kind(self, key: bytes) -> tuple[bytes, bytes]:
        """(``j``, ``K``, ``k`` or ``p``, the rest of the key)."""
        kind, _, rest = key[len(self.prefix) :].partition(b"|")
        return kind, rest


def encode_journal(entries: Iterable[JournalEntry]) -> bytes:
    return V3 + _pack(list(entries))


def legacy_digests(raw: bytes) -> bool:
    """Whether a journal's digests are of the event id alone (written before V3)."""
    return raw[:1] != V3


def decode_journal(raw: bytes) -> list[JournalEntry]:
    if raw[:1] in (V3, V2):
        return _entries.decode(raw[1:])
    # v1: [site, ts, id hash, metrics]; the event time stands in for the arrival.
    return [JournalEntry(s, LEGACY_DEMO, t, t, h, m) for s, t, h, m in _unpack(raw)]


def encode_kpi_state(state: KpiState) -> bytes:
    acc = state.acc
    return V2 + _pack(
        _Kpi(
            state.window_start_ms,
            state.observed_from_ms,
            acc.count,
            acc.sum,
            acc.min,
            acc.max,
            b"" if acc.binned is None else encode_sketch(acc.binned),
            state.sums,
            state.merged,
            state.minutes_up,
            state.last_status,
            state.open_alert,
            acc.pending.tolist(),
            state.reported,
        )
    )


def decode_kpi_state(raw: bytes) -> KpiState:
    if raw[:1] == V2:
        k = _kpi.decode(raw[1:])
        acc = Acc(k.count, k.sum, k.min, k.max)
        if k.sketch:
            acc.sketch = decode_sketch(k.sketch)
        acc.pending = array("d", k.pending)
        return KpiState(
            k.window_start_ms,
            k.observed_from_ms,
            acc,
            dict(k.sums),
            dict(k.merged),
            k.minutes_up,
            k.last_status,
            k.open_alert,
            k.reported,
        )
    start, merged, count, total, low, high, sketch, up, last, open_alert, observed = _unpack(raw)
    acc = Acc(count, total, low, high)
    if sketch:
        acc.sketch = decode_sketch(sketch)
    # v1 guarded merges for its one metric: the processor applies it to the KPI's inputs.
    return KpiState(start, observed, acc, {}, {LEGACY_DEMO: merged}, up, last, open_alert, True)


def kpi_group(key: KpiKey) -> int:
    """The group of a KPI state: by its site (a stable hash, the same in every process)."""
    return zlib.crc32(key[2].encode()) % KPI_GROUPS


def split_kpi_group(
    states: list[tuple[KpiKey, bytes]], limit: int = KPI_PART_BYTES
) -> list[list[tuple[KpiKey, bytes]]]:
    """A group's encoded states in parts of at most ``limit`` bytes of states (a state larger
    than that alone in its part), in their order."""
    parts: list[list[tuple[KpiKey, bytes]]] = [[]]
    size = 0
    for item in states:
        if parts[-1] and size + len(item[1]) > limit:
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += len(item[1])
    return parts


def encode_kpi_part(total: int, states: Iterable[tuple[KpiKey, bytes]]) -> bytes:
    """One of ``total`` parts of a group, its states each as ``encode_kpi_state`` wrote it."""
    return V2 + _pack((total, [(demo, kpi, site, raw) for (demo, kpi, site), raw in states]))


def decode_kpi_part(raw: bytes) -> tuple[int, list[tuple[KpiKey, KpiState]]]:
    """(how many parts its generation has, its states)."""
    if raw[:1] != V2:
        raise ValueError(f"a part of a KPI group of an unknown version {raw[:1]!r}")
    total, states = _part.decode(raw[1:])
    return total, [
        ((demo, kpi, site), decode_kpi_state(state)) for demo, kpi, site, state in states
    ]


def encode_progress(progress: Progress) -> bytes:
    return V2 + _pack(progress)


def decode_progress(raw: bytes) -> Progress:
    if raw[:1] == V2:
        return _progress.decode(raw[1:])
    fields = list(_unpack(raw))  # v1: watermark, closed, next_seq[, next_offset[, written]]
    fields += [0] * (5 - len(fields))
    return Progress(*fields[:5])
