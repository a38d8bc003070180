"""The state's codecs hold their wire form: journals written by earlier releases still read."""

from __future__ import annotations

import msgspec

from streams.state import LEGACY_DEMO, V2, decode_journal, encode_journal
from streams.windows import JournalEntry

ENTRY = JournalEntry("GJ-DONG-0001", "DEMO-001", 1_000, 1_040, 2**63 + 5, {"online": 1.0})


def test_a_v2_journal_is_a_version_byte_then_msgpack_arrays_in_field_order() -> None:
    raw = encode_journal([ENTRY])
    assert raw[:1] == V2
    assert msgspec.msgpack.decode(raw[1:]) == [
        ["GJ-DONG-0001", "DEMO-001", 1_000, 1_040, 2**63 + 5, {"online": 1.0}]
    ]
    assert decode_journal(raw) == [ENTRY]


def test_a_v1_journal_reads_with_no_demonstration_and_its_event_time_as_arrival() -> None:
    raw = msgspec.msgpack.encode([["GJ-DONG-0001", 1_000, 7, {"online": 1.0}]])
    assert decode_journal(raw) == [
        JournalEntry("GJ-DONG-0001", LEGACY_DEMO, 1_000, 1_000, 7, {"online": 1.0})
    ]
