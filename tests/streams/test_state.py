"""The state's codecs hold their wire form: journals written by earlier releases still read."""

from __future__ import annotations

import zlib

import msgspec
import pytest

from streams.kpi import KpiState
from streams.state import (
    KPI_GROUPS,
    LEGACY_DEMO,
    V2,
    V3,
    decode_journal,
    decode_kpi_part,
    decode_kpi_state,
    encode_journal,
    encode_kpi_part,
    encode_kpi_state,
    kpi_group,
    legacy_digests,
    split_kpi_group,
)
from streams.windows import FOLD_AT, Acc, JournalEntry, encode_sketch

ENTRY = JournalEntry(
    "GJ-DONG-0001", "DEMO-001", 1_000, 1_040, 2**63 + 5, {"online": 1.0}, "GJ-DONG-0001-CAM1"
)


def test_a_v3_journal_is_a_version_byte_then_msgpack_arrays_in_field_order() -> None:
    raw = encode_journal([ENTRY])
    assert raw[:1] == V3
    assert not legacy_digests(raw)
    assert msgspec.msgpack.decode(raw[1:]) == [
        ["GJ-DONG-0001", "DEMO-001", 1_000, 1_040, 2**63 + 5, {"online": 1.0}, "GJ-DONG-0001-CAM1"]
    ]
    assert decode_journal(raw) == [ENTRY]


def test_a_v3_journal_written_before_devices_were_counted_reads_with_no_device() -> None:
    """Its entries end at the metrics: they count for no device (their windows still count)."""
    raw = V3 + msgspec.msgpack.encode(
        [["GJ-DONG-0001", "DEMO-001", 1_000, 1_040, 2**63 + 5, {"online": 1.0}]]
    )
    assert decode_journal(raw) == [
        JournalEntry("GJ-DONG-0001", "DEMO-001", 1_000, 1_040, 2**63 + 5, {"online": 1.0})
    ]


def test_a_v2_journal_reads_alike_with_its_digests_marked_legacy() -> None:
    """V2 journals have V3's layout; their digests are of the event id alone."""
    raw = V2 + encode_journal([ENTRY])[1:]
    assert decode_journal(raw) == [ENTRY]
    assert legacy_digests(raw)


def test_a_v1_journal_reads_with_no_demonstration_and_its_event_time_as_arrival() -> None:
    raw = msgspec.msgpack.encode([["GJ-DONG-0001", 1_000, 7, {"online": 1.0}]])
    assert decode_journal(raw) == [
        JournalEntry("GJ-DONG-0001", LEGACY_DEMO, 1_000, 1_000, 7, {"online": 1.0})
    ]


def _state(values: list[float]) -> KpiState:
    acc = Acc()
    for value in values:
        acc.add(value)
    return KpiState(60_000, 0, acc, {"detections": 3.0}, {"latency_ms": 120_000}, 2, "ok", None)


def test_a_kpi_state_keeps_binned_and_waiting_values_through_its_codec() -> None:
    values = [float(v % 97) + 0.5 for v in range(FOLD_AT + 40)]  # one fold, 40 waiting
    state = _state(values)
    assert state.acc.binned is not None
    assert len(state.acc.pending) == 40
    back = decode_kpi_state(encode_kpi_state(state))
    assert len(back.acc.pending) == 40  # written as values, not binned for the write
    assert (back.acc.count, back.acc.sum, back.acc.min, back.acc.max) == (
        state.acc.count,
        state.acc.sum,
        state.acc.min,
        state.acc.max,
    )
    # The protobuf form carries gamma, from which the library recomputes its multiplier.
    assert back.acc.quantiles((0.5, 0.95, 0.99)) == pytest.approx(
        state.acc.quantiles((0.5, 0.95, 0.99)), rel=1e-12
    )
    assert (back.sums, back.merged, back.minutes_up, back.last_status) == (
        state.sums,
        state.merged,
        state.minutes_up,
        state.last_status,
    )


def test_a_kpi_state_written_before_waiting_values_were_kept_still_reads() -> None:
    state = _state([1.0, 2.0, 3.0])
    sketch = encode_sketch(state.acc.sketch)  # binned, as the earlier release wrote every state
    raw = V2 + msgspec.msgpack.encode(
        [60_000, 0, 3, 6.0, 1.0, 3.0, sketch, {}, {"latency_ms": 120_000}, 2, "ok", None]
    )
    back = decode_kpi_state(raw)
    assert back.acc.count == 3
    assert len(back.acc.pending) == 0
    assert back.acc.quantile(0.5) == pytest.approx(state.acc.quantile(0.5), rel=1e-12)


def test_a_part_of_a_kpi_group_reads_back_as_its_states_and_a_site_keeps_its_group() -> None:
    states = [(("D1", "lat", f"S{i}"), _state([float(i), 2.0 * i])) for i in range(3)]
    raw = encode_kpi_part(2, ((key, encode_kpi_state(s)) for key, s in states))
    total, back = decode_kpi_part(raw)
    assert total == 2
    assert [key for key, _ in back] == [key for key, _ in states]
    assert [encode_kpi_state(s) for _, s in back] == [encode_kpi_state(s) for _, s in states]
    # A site's states share a group, the same in every process (not Python's salted hash).
    assert kpi_group(("D1", "lat", "GJ-BUK-0001")) == kpi_group(("D2", "x", "GJ-BUK-0001"))
    assert kpi_group(("D1", "lat", "GJ-BUK-0001")) == zlib.crc32(b"GJ-BUK-0001") % KPI_GROUPS
    with pytest.raises(ValueError, match="unknown version"):
        decode_kpi_part(b"\x09" + raw[1:])


def test_a_group_splits_into_parts_within_the_limit_in_order_and_a_large_state_alone() -> None:
    sized = [(("D", "k", f"S{i}"), b"x" * n) for i, n in enumerate([40, 50, 20, 120, 10, 60])]
    parts = split_kpi_group(sized, limit=100)
    assert [[len(raw) for _, raw in part] for part in parts] == [[40, 50], [20], [120], [10, 60]]
    assert [item for part in parts for item in part] == sized
    assert split_kpi_group([], limit=100) == [[]]
