"""The soak's verdict with plain values: growth in memory, backlog or close lag is not flat."""

from __future__ import annotations

import pytest

from hub.settings import Settings
from tooling.bench.soak import Sample, increase, verdict, warmup_s

WARMUP_S = warmup_s(Settings())  # 13 minutes with the defaults


def run(
    rss: float = 0.0,
    low: float = 0.0,
    high: float = 0.0,
    close: float = 0.0,
    minutes: int = 30,
    acks: float = 0.0,
    uncommitted: float = 5000.0,
) -> list[Sample]:
    """Samples every 30 s growing by ``rss`` MB, ``low`` and ``high`` records of the lag's lowest
    and highest reading and ``close`` s per sample. The lag is a sawtooth: 0 to 6,000 records."""
    return [
        Sample(
            i * 30.0,
            3375.0,
            150 + rss * i,
            6000.0 * (i % 2),  # the reading at the sample: a peak, then a trough
            123.0 + close * i,
            lag_low=low * i,
            lag_high=6000 + high * i,
            acks_pending=3000 + acks * i,
            commit_lag=uncommitted,
        )
        for i in range(1, minutes * 2 + 1)
    ]


def test_a_steady_run_is_flat_even_with_a_sawtooth_lag() -> None:
    assert verdict(run(), WARMUP_S).flat


def test_a_leak_a_backlog_or_later_and_later_windows_are_not_flat() -> None:
    assert not verdict(run(rss=2.0), WARMUP_S).flat  # 2 MB a sample: ~70 MB over the run
    assert not verdict(run(low=150.0), WARMUP_S).flat  # the consumer no longer catches up
    assert not verdict(run(high=500.0), WARMUP_S).flat  # its peaks grow by 1,000 a minute
    assert not verdict(run(close=1.0), WARMUP_S).flat  # windows written later and later
    # A commit stall: acknowledged offsets pile up behind a hole, commits fall behind.
    assert not verdict(run(acks=2000.0), WARMUP_S).flat
    assert not verdict(run(uncommitted=200_000.0), WARMUP_S).flat


def test_warm_up_is_left_out() -> None:
    samples = run()
    first = [s for s in samples if s.at_s < WARMUP_S]
    # A worker filling its first windows grows fast; that is not a leak.
    warm = [Sample(s.at_s, s.received_per_s, 50.0, s.consumer_lag, None) for s in first]
    assert verdict(warm + samples[len(first) :], WARMUP_S).flat


def test_too_short_a_run_cannot_be_judged() -> None:
    with pytest.raises(ValueError, match="at least 16 minutes"):
        verdict(run(minutes=15), WARMUP_S)


def test_a_restarted_workers_counters_count_from_zero_not_backwards() -> None:
    assert increase(1_000.0, 1_500.0) == 500.0
    assert increase(16_506.0, 300.0) == 300.0  # killed and started again in between
