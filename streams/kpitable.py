"""A partition's KPI states as the state table holds them: in groups of sites, each group
written whole when one of its states changes, as a new generation of parts (``streams.state``).

A generation's parts go under new keys and the previous generation's are deleted after them, so
a crash between any two writes leaves every group with one whole generation: a restore takes
the newest whole one and deletes the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.kpi import KpiState
from streams.state import (
    KPI_PART_BYTES,
    KpiKey,
    Layout,
    decode_kpi_part,
    decode_kpi_state,
    encode_kpi_part,
    kpi_group,
    split_kpi_group,
)

Write = tuple[bytes, bytes | None]
# A generation's parts as read: part -> (its key, the generation's number of parts, its states).
_Parts = dict[int, tuple[bytes, int, list[tuple[KpiKey, KpiState]]]]


class KpiTable:
    """What was last written of each group, so that a batch writes only the groups it changed."""

    def __init__(self, layout: Layout, part_bytes: int = KPI_PART_BYTES) -> None:
        self.layout = layout
        self.part_bytes = part_bytes
        self.groups: dict[int, dict[KpiKey, bytes]] = {}  # group -> its states as encoded
        self.keys: dict[int, list[bytes]] = {}  # group -> the entries of its last generation
        self.unwritten: set[int] = set()  # groups to write at the next write, changed or not
        self.stale: list[bytes] = []  # entries to delete at the next write, after the groups
        self.next_gen = 0
        self._read: dict[int, dict[int, _Parts]] = {}  # group -> gen -> parts, while restoring
        self._own: dict[KpiKey, KpiState] = {}  # states in entries of their own (before groups)

    def read(self, kind: bytes, rest: bytes, key: bytes, value: bytes) -> None:
        """Take one ``K`` or ``k`` entry of the table, while restoring."""
        if kind == b"k":
            demo, kpi_id, site = rest.decode().split("|", 2)
            self._own[(demo, kpi_id, site)] = decode_kpi_state(value)
            return
        group, gen, part = (int(field) for field in rest.split(b"|"))
        total, states = decode_kpi_part(value)
        self._read.setdefault(group, {}).setdefault(gen, {})[part] = (key, total, states)

    def restored(self) -> dict[KpiKey, KpiState]:
        """The states read: of each group its newest whole generation, which wins over a state's
        own entry. What else was read is deleted at the next write, and the groups of states
        read from their own entries are written then."""
        states = dict(self._own)
        for group, gens in self._read.items():
            chosen = max((gen for gen, parts in gens.items() if _whole(parts)), default=None)
            for gen, parts in sorted(gens.items()):
                ordered = [parts[i] for i in sorted(parts)]
                if gen != chosen:
                    self.stale.extend(key for key, _, _ in ordered)
                    continue
                self.keys[group] = [key for key, _, _ in ordered]
                for _, _, part_states in ordered:
                    states.update(part_states)
            self.next_gen = max(self.next_gen, max(gens) + 1)
        self.unwritten.update(kpi_group(key) for key in self._own)
        self.stale.extend(self.layout.kpi(key) for key in self._own)
        self._read, self._own = {}, {}
        return states

    def remember(self, key: KpiKey, raw: bytes) -> int:
        """A state as it stands written (or will be at the next write); its group."""
        group = kpi_group(key)
        self.groups.setdefault(group, {})[key] = raw
        return group

    def write(
        self, changed: Iterable[tuple[KpiKey, bytes]], released: Iterable[KpiKey]
    ) -> list[Write]:
        """The writes for states changed (encoded) and released: the groups they are in, whole,
        as a new generation (an emptied group has none), each followed by the deletion of its
        previous generation; then the deletion of what a restore left."""
        groups, self.unwritten = self.unwritten, set()
        for key, raw in changed:
            groups.add(self.remember(key, raw))
        for key in released:
            group = kpi_group(key)
            self.groups.get(group, {}).pop(key, None)
            groups.add(group)
        writes: list[Write] = []
        if groups:
            gen, self.next_gen = self.next_gen, self.next_gen + 1
        for group in sorted(groups):
            previous = self.keys.pop(group, [])
            states = self.groups.get(group)
            if states:
                parts = split_kpi_group(sorted(states.items()), self.part_bytes)
                keys = [self.layout.kpi_part(group, gen, i) for i in range(len(parts))]
                writes.extend(
                    (k, encode_kpi_part(len(parts), p)) for k, p in zip(keys, parts, strict=True)
                )
                self.keys[group] = keys
            else:
                self.groups.pop(group, None)
            writes.extend((key, None) for key in previous)
        writes.extend((key, None) for key in self.stale)
        self.stale = []
        return writes


def _whole(parts: _Parts) -> bool:
    totals = {total for _, total, _ in parts.values()}
    return len(totals) == 1 and parts.keys() == set(range(totals.pop()))
