"""KPI roll-up and judgement with plain values."""

from __future__ import annotations

import pytest

from hub.registry.model import Kpi
from streams import kpi as kpis
from streams.kpi import KpiState
from streams.windows import MINUTE_MS, Acc

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
) -> Kpi:
    return Kpi("k", "k", metric, aggregation, op, threshold, window, min_samples)


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
    state = KpiState(T0, observed_from_ms=T0)
    kpis.merge_minute(state, T0, acc(10.0, 20.0))
    kpis.merge_minute(state, T0 + MINUTE_MS, acc(30.0, 40.0))
    assert kpis.value_of(kpi(aggregation), state) == pytest.approx(expected)


def test_availability_is_the_share_of_minutes_reported_up() -> None:
    state = KpiState(T0, observed_from_ms=T0)
    for minute in range(3):
        kpis.merge_minute(state, T0 + minute * MINUTE_MS, acc(1.0))
    kpis.merge_minute(state, T0 + 3 * MINUTE_MS, acc(0.0))  # reported, but down
    # Minute 5 missing entirely: 3 of 5 minutes up.
    assert kpis.value_of(kpi("availability"), state) == pytest.approx(0.6)


def test_availability_of_a_first_partial_window_counts_only_observed_minutes() -> None:
    state = KpiState(T0, observed_from_ms=T0 + 3 * MINUTE_MS)
    kpis.merge_minute(state, T0 + 3 * MINUTE_MS, acc(1.0))
    kpis.merge_minute(state, T0 + 4 * MINUTE_MS, acc(1.0))
    assert kpis.value_of(kpi("availability"), state) == pytest.approx(1.0)


def test_a_minute_is_merged_once() -> None:
    state = KpiState(T0, observed_from_ms=T0)
    assert kpis.merge_minute(state, T0, acc(5.0))
    assert not kpis.merge_minute(state, T0, acc(5.0))
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
    state = KpiState(T0, observed_from_ms=T0)
    if values:
        kpis.merge_minute(state, T0, acc(*values))
    judgement = kpis.judge(kpi("max", op, threshold, min_samples=min_samples), state)
    assert judgement.status == status
    assert (judgement.window_start_ms, judgement.window_end_ms) == (T0, T0 + 300_000)


def test_status_changes_raise_breach_no_data_and_recovered() -> None:
    k = kpi("max", "<=", 100.0)
    state = KpiState(T0, observed_from_ms=T0)
    seen = []
    for values in ([50.0], [150.0], [150.0], [], [50.0], [60.0]):
        if values:
            kpis.merge_minute(state, state.window_start_ms, acc(*values))
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


def test_a_site_silent_from_the_start_raises_no_alert() -> None:
    assert kpis.transition_for(None, "insufficient_data", None) is None
    assert kpis.transition_for("insufficient_data", "pass", None) is None


def test_alert_ids_are_stable() -> None:
    assert kpis.alert_id("D", "k", "S", T0) == kpis.alert_id("D", "k", "S", T0)
    assert kpis.alert_id("D", "k", "S", T0) != kpis.alert_id("D", "k", "S", T0 + 1)
