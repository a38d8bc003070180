"""The KPI table's writes: whatever prefix of them is durable, a restore finds every group's
states whole, of one write or the next, and the table holds one generation after."""

from __future__ import annotations

from array import array

from streams.kpi import KpiState
from streams.kpitable import KpiTable
from streams.state import KpiKey, Layout, encode_kpi_state, kpi_group
from streams.windows import Acc

LAYOUT = Layout(3)


def encoded(values: int, start: int) -> bytes:
    """A state whose encoding grows with ``values`` (its unbinned values)."""
    acc = Acc.of(array("d", [float(v) for v in range(values)]))
    return encode_kpi_state(KpiState(window_start_ms=start, acc=acc, reported=True))


def same_group_keys(n: int) -> list[KpiKey]:
    keys = [("DEMO-A", "latency", f"GJ-BUK-{i:04d}") for i in range(400)]
    group = kpi_group(keys[0])
    return [k for k in keys if kpi_group(k) == group][:n]


def apply(table: dict[bytes, bytes], writes: list[tuple[bytes, bytes | None]]) -> None:
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def restore(table: dict[bytes, bytes]) -> tuple[KpiTable, dict[KpiKey, bytes]]:
    kpis = KpiTable(LAYOUT, part_bytes=600)
    for key, value in table.items():
        kind, rest = LAYOUT.kind(key)
        kpis.read(kind, rest, key, value)
    states = {k: encode_kpi_state(s) for k, s in kpis.restored().items()}
    for kpi_key, raw in states.items():  # as the processor does, once it has fixed them up
        kpis.remember(kpi_key, raw)
    return kpis, states


def test_any_durable_prefix_of_a_write_restores_one_whole_write_then_one_generation() -> None:
    keys = same_group_keys(6)
    sizes = [1, 30, 2, 30, 1, 30]  # a few parts of 600 bytes
    before = {k: encoded(n, 0) for k, n in zip(keys, sizes, strict=True)}
    kpis, table = KpiTable(LAYOUT, part_bytes=600), dict[bytes, bytes]()
    apply(table, kpis.write(before.items(), ()))
    # The first states grow: the later ones move to later parts; the last is released.
    after = {
        k: encoded(n + 40 * (i < 2), 60_000)
        for i, (k, n) in enumerate(zip(keys, sizes, strict=True))
    }
    del after[keys[-1]]
    writes = kpis.write(((k, after[k]) for k in keys[:-1]), [keys[-1]])
    assert sum(1 for _, v in writes if v is not None) >= 3  # parts of the new generation

    outcomes = set()
    for n in range(len(writes) + 1):
        durable = dict(table)
        apply(durable, writes[:n])
        restored, states = restore(durable)
        assert states in (before, after), f"after {n} of {len(writes)} writes"
        outcomes.add("after" if states == after else "before")
        # The next write leaves only the generation restored, the rest deleted.
        apply(durable, restored.write((), ()) if restored.unwritten or restored.stale else [])
        assert restore(durable)[1] == states
        gens = {LAYOUT.kind(k)[1].split(b"|")[1] for k in durable}
        assert len(gens) == 1
    assert outcomes == {"before", "after"}


def test_states_of_their_own_entries_are_grouped_and_their_entries_deleted_after() -> None:
    keys = same_group_keys(3)
    own = {LAYOUT.kpi(k): encoded(3, 0) for k in keys}
    grouped = KpiTable(LAYOUT)
    group_copy = encoded(5, 60_000)
    grouped_writes = grouped.write([(keys[0], group_copy)], ())
    table = dict(own)
    apply(table, grouped_writes)  # a group written, the old entries not deleted yet
    kpis, states = restore(table)
    assert states == {keys[0]: group_copy, keys[1]: encoded(3, 0), keys[2]: encoded(3, 0)}
    writes = kpis.write((), ())
    deleted = [k for k, v in writes if v is None]
    assert set(own) <= set(deleted)
    last_part = max(i for i, (_, v) in enumerate(writes) if v is not None)
    assert last_part < min(i for i, (k, _) in enumerate(writes) if k in own)
    apply(table, writes)
    assert not set(own) & set(table)
    assert restore(table)[1] == states
