"""KPI roll-up and judgement with plain values."""

from __future__ import annotations

from datetime import datetime

import pytest

from hub.registry.model import KST, Kpi
from streams import kpi as kpis
from streams.kpi import KpiState
from streams.state import encode_kpi_state
from streams.windows import MINUTE_MS, RELATIVE_ACCURACY, Acc

T0 = 1_795_600_200_000 - 1_795_600_200_000 % 300_000  # a 5-minute boundary


def acc(*values: float) -> Acc:
    a = Acc()
    for v in values:
        a.add(v)
    return a


def kpi(
    aggregation: str,
    op: str = "<=",
    threshold: float = 100.0,
    window: str = "5m",
    min_samples: int = 1,
    metric: str = "m",
    denominator: tuple[str, ...] = (),
) -> Kpi:
    return Kpi("k", "k", metric, aggregation, op, threshold, window, min_samples, denominator)


def merge(state: KpiState, k: Kpi, minute: int, a: Acc, metric: str | None = None) -> bool:
    return kpis.merge_minute(state, k, metric or k.metric, minute, a)


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ("mean", 25.0),
        ("min", 10.0),
        ("max", 40.0),
        ("sum", 100.0),
        ("count", 4.0),
        ("rate", 100.0 / 5),
    ],
)
def test_aggregations_over_merged_minutes(aggregation: str, expected: float) -> None:
    k = kpi(aggregation)
    state = KpiState(T0, observed_from_ms=T0)
    merge(state, k, T0, acc(10.0, 20.0))
    merge(state, k, T0 + MINUTE_MS, acc(30.0, 40.0))
    assert kpis.value_of(k, state) == pytest.approx(expected)


@pytest.mark.parametrize(("aggregation", "expected"), [("p50", 20.0), ("p95", 30.0), ("p99", 30.0)])
def test_a_quantile_kpi_is_judged_on_every_value_merged(aggregation: str, expected: float) -> None:
    k = kpi(aggregation)
    state = KpiState(T0, observed_from_ms=T0)
    merge(state, k, T0, acc(10.0, 20.0))
    merge(state, k, T0 + MINUTE_MS, acc(30.0, 40.0))
    assert list(state.acc.pending) == [10.0, 20.0, 30.0, 40.0]
    assert kpis.value_of(k, state) == pytest.approx(expected, rel=RELATIVE_ACCURACY)


@pytest.mark.parametrize(
    "aggregation", ["mean", "min", "max", "sum", "count", "rate", "availability"]
)
def test_a_kpi_judged_on_no_quantile_keeps_no_values(aggregation: str) -> None:
    """Its state is the count, sum, min and max: no values binned at a close, none written
    with the state every minute (a minute of 10 Hz is 600 values)."""
    k = kpi(aggregation)
    state = KpiState(T0, observed_from_ms=T0)
    merge(state, k, T0, acc(*[1.0] * 600))
    merge(state, k, T0 + MINUTE_MS, acc(2.0, 4.0))
    assert (state.acc.count, state.acc.sum, state.acc.min, state.acc.max) == (602, 606.0, 1.0, 4.0)
    assert not state.acc.pending
    assert state.acc.binned is None
    assert len(encode_kpi_state(state)) < 200


def test_a_ratio_divides_the_sum_of_its_metric_by_the_sums_of_its_denominator() -> None:
    """Precision = true positives / (true positives + false positives) over the window."""
    k = kpi("ratio", ">=", 0.9, metric="tp", denominator=("tp", "fp"))
    state = KpiState(T0, observed_from_ms=T0)
    merge(state, k, T0, acc(3.0, 4.0), "tp")
    merge(state, k, T0, acc(1.0), "fp")
    merge(state, k, T0 + MINUTE_MS, acc(2.0), "tp")
    merge(state, k, T0 + MINUTE_MS, acc(0.0, 0.0), "fp")
    merge(state, k, T0, acc(99.0), "other")  # not an input: ignored
    assert kpis.value_of(k, state) == pytest.approx(9.0 / 10.0)
    assert kpis.judge(k, state).status == "pass"
    state.sums["fp"] = 3.0
    assert kpis.judge(k, state).status == "fail"  # 9 / 12


def test_a_ratio_without_a_denominator_has_no_value() -> None:
    k = kpi("ratio", ">=", 0.9, metric="tp", denominator=("tp", "fp"))
    state = KpiState(T0, observed_from_ms=T0)
    merge(state, k, T0, acc(0.0, 0.0), "tp")
    merge(state, k, T0, acc(0.0), "fp")
    assert kpis.value_of(k, state) is None
    assert kpis.judge(k, state).status == "insufficient_data"


def test_availability_is_the_share_of_minutes_reported_up() -> None:
    k = kpi("availability")
    state = KpiState(T0, observed_from_ms=T0)
    for minute in range(3):
        merge(state, k, T0 + minute * MINUTE_MS, acc(1.0))
    merge(state, k, T0 + 3 * MINUTE_MS, acc(0.0))  # reported, but down
    # Minute 5 missing entirely: 3 of 5 minutes up.
    assert kpis.value_of(k, state) == pytest.approx(0.6)


def test_a_first_partial_window_is_judged_over_its_observed_minutes() -> None:
    k = kpi("availability", ">=", 0.9, min_samples=50)
    state = KpiState(T0, observed_from_ms=T0 + 3 * MINUTE_MS)
    merge(state, k, T0 + 3 * MINUTE_MS, acc(*[1.0] * 10))
    merge(state, k, T0 + 4 * MINUTE_MS, acc(*[1.0] * 10))
    assert kpis.value_of(k, state) == pytest.approx(1.0)
    # Two of five minutes observed: 20 samples are enough where 50 would be for a whole window.
    assert kpis.samples_needed(k, state) == 20
    assert kpis.judge(k, state).status == "pass"


@pytest.mark.parametrize(
    ("aggregation", "threshold"), [("count", 55.0), ("sum", 55.0), ("rate", 0.95)]
)
def test_a_perfect_device_first_seen_at_40_passes_its_hourly_count(
    aggregation: str, threshold: float
) -> None:
    """One heartbeat a minute, first seen at :40 of an hourly window: 20 in the 20 minutes
    observed are judged as the hour's 60 (a rate of 1 a minute), not as a failed 20."""
    hour = 3600_000
    start = T0 - T0 % hour
    k = kpi(aggregation, ">=", threshold, window="1h", metric="heartbeat")
    state = KpiState(start, observed_from_ms=start)  # the partition observed the whole hour
    for minute in range(40, 60):
        merge(state, k, start + minute * MINUTE_MS, acc(1.0))
    assert state.observed_from_ms == start + 40 * MINUTE_MS  # the site's first report
    judgement = kpis.judge(k, state)
    assert judgement.value == pytest.approx(60.0 if aggregation != "rate" else 1.0)
    assert judgement.status == "pass"


def test_a_site_that_reported_before_is_judged_on_the_whole_window() -> None:
    """Only a site's first report moves its observation start: a reporting site silent for
    40 minutes of a later window fails it."""
    hour = 3600_000
    start = T0 - T0 % hour
    k = kpi("count", ">=", 55.0, window="1h", metric="heartbeat")
    state = KpiState(start, observed_from_ms=start, reported=True)
    for minute in range(40, 60):
        merge(state, k, start + minute * MINUTE_MS, acc(1.0))
    assert kpis.judge(k, state).status == "fail"


def test_a_minute_is_merged_once_and_only_into_its_window() -> None:
    k = kpi("max")
    state = KpiState(T0, observed_from_ms=T0)
    assert merge(state, k, T0, acc(5.0))
    assert not merge(state, k, T0, acc(5.0))
    assert not merge(state, k, T0 - MINUTE_MS, acc(5.0))
    assert not merge(state, k, T0 + 5 * MINUTE_MS, acc(5.0))  # the next window's
    assert state.acc.count == 1


@pytest.mark.parametrize(
    ("values", "op", "threshold", "min_samples", "status"),
    [
        ([90.0, 95.0], "<=", 100.0, 1, "pass"),
        ([90.0, 195.0], "<=", 100.0, 1, "fail"),
        ([90.0], "<=", 100.0, 2, "insufficient_data"),
        ([], "<=", 100.0, 0, "insufficient_data"),
        ([100.0], "<", 100.0, 1, "fail"),
        ([100.0], ">=", 100.0, 1, "pass"),
    ],
)
def test_judgement(
    values: list[float], op: str, threshold: float, min_samples: int, status: str
) -> None:
    k = kpi("max", op, threshold, min_samples=min_samples)
    state = KpiState(T0, observed_from_ms=T0)
    if values:
        merge(state, k, T0, acc(*values))
    judgement = kpis.judge(k, state)
    assert judgement.status == status
    assert (judgement.window_start_ms, judgement.window_end_ms) == (T0, T0 + 300_000)


def test_status_changes_raise_breach_no_data_and_recovered() -> None:
    k = kpi("max", "<=", 100.0)
    state = KpiState(T0, observed_from_ms=T0)
    seen = []
    for values in ([50.0], [150.0], [150.0], [], [50.0], [60.0]):
        if values:
            merge(state, k, state.window_start_ms, acc(*values))
        judgement, transition = kpis.close_window("D", k, "S", state)
        seen.append((judgement.status, transition.transition if transition else None))
    assert seen == [
        ("pass", None),
        ("fail", "breach"),
        ("fail", None),
        ("insufficient_data", "no_data"),
        ("pass", "recovered"),
        ("pass", None),
    ]


def test_a_site_silent_from_the_start_raises_no_data() -> None:
    assert kpis.transition_for(None, "insufficient_data", None) == "no_data"
    assert kpis.transition_for("insufficient_data", "insufficient_data", "no_data") is None
    assert kpis.transition_for("insufficient_data", "pass", "no_data") == "recovered"
    assert kpis.transition_for(None, "pass", None) is None


def test_day_windows_are_korean_calendar_days() -> None:
    day = kpi("count", window="1d")
    noon = int(datetime(2026, 11, 30, 12, 0, tzinfo=KST).timestamp() * 1000)
    midnight = int(datetime(2026, 11, 30, 0, 0, tzinfo=KST).timestamp() * 1000)
    assert kpis.window_start(noon, day) == midnight
    assert kpis.window_start(noon, kpi("count", window="5m")) == noon


def test_the_first_window_of_a_demonstration_starting_later_is_its_first_whole_one() -> None:
    k = kpi("count", window="1h")
    starts = int(datetime(2026, 12, 1, tzinfo=KST).timestamp() * 1000)
    assert kpis.first_window(starts - 5 * MINUTE_MS, starts, k) == starts
    assert kpis.first_window(starts + 90 * MINUTE_MS, starts, k) == starts + 60 * MINUTE_MS


def test_alert_ids_are_stable() -> None:
    assert kpis.alert_id("D", "k", "S", T0) == kpis.alert_id("D", "k", "S", T0)
    assert kpis.alert_id("D", "k", "S", T0) != kpis.alert_id("D", "k", "S", T0 + 1)
