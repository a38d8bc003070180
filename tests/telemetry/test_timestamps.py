"""Timestamps read by position agree with the calendar, and what is not a time is still refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.telemetry import EPOCH, MILLISECOND, Rejected, parse_ts

moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1))
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@given(moments, offsets, st.sampled_from(["milliseconds", "seconds", "microseconds"]))
def test_every_layout_reads_as_the_calendar_says(
    moment: datetime, zone: timezone, spec: str
) -> None:
    text = moment.replace(tzinfo=UTC).astimezone(zone).isoformat(timespec=spec)
    for ts in {text, text.replace("+00:00", "Z")}:
        assert parse_ts(ts) == (datetime.fromisoformat(ts) - EPOCH) // MILLISECOND, ts
        assert parse_ts(ts) == parse_ts(ts)  # and again, from the minute cache


@pytest.mark.parametrize(
    ("ts", "why"),
    [
        ("2026-02-30T09:00:01.000Z", "not a valid time"),
        ("2026-11-30T24:00:01.000Z", "not RFC 3339"),
        ("2026-11-30T09:00:60.000Z", "not RFC 3339"),
        ("2026-11-30T09:00:0\u0661.000Z", "not RFC 3339"),  # an Arabic-Indic digit one
        ("2026-11-30T09:00:01.000+24:00", "not RFC 3339"),
        ("2026-11-30T09:00:01.000+09:60", "not RFC 3339"),
        ("2026-11-30 09:00:01.000+09:00", "not RFC 3339"),
        ("2026-11-30T09:00:01.0a0+09:00", "not RFC 3339"),
    ],
)
def test_what_is_not_a_time_is_refused_naming_ts(ts: str, why: str) -> None:
    parse_ts("2026-11-30T09:00:00.000Z")  # the minute cached: a bad record of it is still bad
    with pytest.raises(Rejected) as refused:
        parse_ts(ts)
    assert refused.value.detail.startswith("ts: ")
    assert why in refused.value.detail
