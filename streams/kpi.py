"""KPI judgement: roll one demonstration's closed 1-minute windows at a site up to a KPI's window
and judge it. Pure.

One ``KpiState`` per (demonstration, KPI, site) holds the open KPI window. It exists for every
site where the demonstration has devices, from the hub's first observation of the partition (or
the demonstration's start, if later), whether or not the site reports: a silent site is judged
``insufficient_data``, not forgotten. Closed minutes of the KPI's input metrics are merged in as
they close (at most once each); when event time passes the KPI window's end the window is judged
``pass``, ``fail`` or ``insufficient_data`` and the state moves to the next window. Status changes
become alerts: ``breach`` (to fail), ``no_data`` (to insufficient data from a judged status, or a
site never judged otherwise), ``recovered`` (back to pass while an alert is open).

KPI windows are aligned to Korean time (a ``1d`` window is a Korean calendar day; shorter ones
divide an hour and are the same in any whole-hour zone).
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from hub.registry.model import Kpi
from streams.windows import MINUTE_MS, Acc

PASS: Final = "pass"  # noqa: S105 (a KPI status, not a password)
FAIL: Final = "fail"
INSUFFICIENT: Final = "insufficient_data"
KST_OFFSET_MS: Final = 9 * 3600 * 1000

# The aggregations judged on a quantile: only their states keep the values merged (binned into a
# sketch); the others need the count, sum, min and max alone.
QUANTILES: Final[dict[str, float]] = {"p50": 0.50, "p95": 0.95, "p99": 0.99}

OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(slots=True)
class KpiState:
    """The open window of one KPI at one site, and what was last said about it."""

    window_start_ms: int
    # The first minute the hub observed: a first window is judged over its observed part only.
    observed_from_ms: int = 0
    acc: Acc = field(default_factory=Acc)  # the KPI's metric
    sums: dict[str, float] = field(default_factory=dict)  # the denominator's metrics (ratio)
    merged: dict[str, int] = field(default_factory=dict)  # metric -> merged through (ms)
    minutes_up: int = 0  # minutes whose samples included a value above zero (availability)
    last_status: str | None = None
    open_alert: str | None = None
    # Whether the site's devices (of this demonstration) have reported yet: until they do, the
    # state's observation starts at their first reported minute, not at the partition's.
    reported: bool = False

    def window_end_ms(self, kpi: Kpi) -> int:
        return self.window_start_ms + kpi.window_s * 1000


@dataclass(frozen=True, slots=True)
class Judgement:
    window_start_ms: int
    window_end_ms: int
    value: float | None
    samples: int
    status: str


@dataclass(frozen=True, slots=True)
class Transition:
    alert_id: str
    transition: str
    status: str
    previous_status: str | None


def window_start(ts_ms: int, kpi: Kpi) -> int:
    size = kpi.window_s * 1000
    return ts_ms - (ts_ms + KST_OFFSET_MS) % size


def first_window(observed_from_ms: int, starts_ms: int, kpi: Kpi) -> int:
    """The first KPI window to judge: the one holding the first observed minute, unless the
    demonstration starts later (then its first whole window in the period)."""
    if observed_from_ms >= starts_ms:
        return window_start(observed_from_ms, kpi)
    start = window_start(starts_ms, kpi)
    return start if start >= starts_ms else start + kpi.window_s * 1000


def merge_minute(
    state: KpiState,
    kpi: Kpi,
    metric: str,
    minute_start_ms: int,
    acc: Acc,
    earliest_ms: int | None = None,
) -> bool:
    """Add one closed minute of one of the KPI's input metrics; False if it was merged before or
    lies outside the open window (a replay after a crash re-closes minutes: they must not count
    twice). ``earliest_ms``: how far back a site's first report may start its observation (see
    :func:`first_report`); the processor re-indexes a state whose window moved."""
    if not state.reported:
        first_report(state, kpi, minute_start_ms, earliest_ms)
    if (
        minute_start_ms < state.merged.get(metric, 0)
        or minute_start_ms < max(state.window_start_ms, state.observed_from_ms)
        or minute_start_ms >= state.window_end_ms(kpi)
    ):
        return False
    if metric == kpi.metric:
        if kpi.aggregation in QUANTILES:
            state.acc.merge(acc)
        else:
            state.acc.merge_summary(acc)
        if acc.max > 0:
            state.minutes_up += 1
    if metric in kpi.denominator:
        state.sums[metric] = state.sums.get(metric, 0.0) + acc.sum
    state.merged[metric] = minute_start_ms + MINUTE_MS
    return True


def first_report(state: KpiState, kpi: Kpi, minute_start_ms: int, earliest_ms: int | None) -> None:
    """A site's observation starts with its first report (of this demonstration's devices), not
    with its partition's: a device installed at :40 is judged on the 20 minutes it could have
    reported, and a site whose first records predate the partition's first arrival (a backlog at
    start-up, within the lateness) has those minutes judged, provided nothing was judged or
    merged yet and the minute is not before ``earliest_ms`` (a device back-dated by a day opens
    no day of empty windows, not even its own)."""
    if minute_start_ms >= state.window_end_ms(kpi):
        return
    if minute_start_ms < max(state.window_start_ms, state.observed_from_ms):
        fresh = state.last_status is None and not state.merged and _empty(state)
        if fresh and earliest_ms is not None and minute_start_ms >= earliest_ms:
            state.reported = True
            state.window_start_ms = min(state.window_start_ms, window_start(minute_start_ms, kpi))
            state.observed_from_ms = minute_start_ms
        return
    state.reported = True
    if _empty(state):
        state.observed_from_ms = max(state.observed_from_ms, minute_start_ms)


def _empty(state: KpiState) -> bool:
    return state.acc.count == 0 and not state.sums and state.minutes_up == 0


def observed_ms(kpi: Kpi, state: KpiState) -> int:
    end = state.window_end_ms(kpi)
    return end - max(state.window_start_ms, state.observed_from_ms)


def coverage(kpi: Kpi, state: KpiState) -> float:
    """The part of the window the hub observed (1.0 but for a site's first window)."""
    return observed_ms(kpi, state) / (kpi.window_s * 1000)


def value_of(kpi: Kpi, state: KpiState) -> float | None:
    """The KPI's value over the window. Counts, sums and rates of a partly observed window (a
    site's first) are scaled to the whole window: 20 heartbeats in the last 20 minutes of an
    hour are judged as 60, the rate the site kept while observed."""
    acc = state.acc
    if kpi.aggregation == "count":
        return acc.count / coverage(kpi, state)
    if kpi.aggregation == "availability":
        return state.minutes_up / (observed_ms(kpi, state) / MINUTE_MS)
    if kpi.aggregation == "ratio":
        denominator = sum(state.sums.get(m, 0.0) for m in kpi.denominator)
        return acc.sum / denominator if acc.count and denominator else None
    if acc.count == 0:
        return None
    quantile = QUANTILES.get(kpi.aggregation)
    if quantile is not None:
        return acc.quantile(quantile)
    match kpi.aggregation:
        case "mean":
            return acc.sum / acc.count
        case "min":
            return acc.min
        case "max":
            return acc.max
        case "sum":
            return acc.sum / coverage(kpi, state)
        case "rate":
            return acc.sum / (observed_ms(kpi, state) / MINUTE_MS)
    raise ValueError(f"unknown aggregation {kpi.aggregation!r}")


def samples_needed(kpi: Kpi, state: KpiState) -> int:
    """``min_samples``, scaled to the part of the window the hub observed."""
    return math.ceil(kpi.min_samples * observed_ms(kpi, state) / (kpi.window_s * 1000))


def judge(kpi: Kpi, state: KpiState) -> Judgement:
    value = value_of(kpi, state)
    samples = state.acc.count
    if value is None or samples < samples_needed(kpi, state) or not math.isfinite(value):
        status = INSUFFICIENT
    else:
        status = PASS if OPS[kpi.op](value, kpi.threshold) else FAIL
    start = state.window_start_ms
    return Judgement(start, state.window_end_ms(kpi), value, samples, status)


def transition_for(previous: str | None, status: str, open_alert: str | None) -> str | None:
    """Which alert, if any, a status change raises."""
    if status == previous:
        return None
    if status == FAIL:
        return "breach"
    if status == INSUFFICIENT:
        return "no_data"
    if status == PASS and open_alert is not None:
        return "recovered"
    return None


def alert_id(demonstration_id: str, kpi_id: str, site_id: str, window_start_ms: int) -> str:
    """Stable across replays: the same change of the same window has the same id."""
    raw = f"{demonstration_id}|{kpi_id}|{site_id}|{window_start_ms}".encode()
    return hashlib.blake2b(raw, digest_size=10).hexdigest()


def close_window(
    demonstration_id: str, kpi: Kpi, site_id: str, state: KpiState
) -> tuple[Judgement, Transition | None]:
    """Judge the open window, note the transition, and move the state to the next window."""
    judgement = judge(kpi, state)
    change = transition_for(state.last_status, judgement.status, state.open_alert)
    transition = None
    if change is not None:
        transition = Transition(
            alert_id(demonstration_id, kpi.kpi_id, site_id, judgement.window_start_ms),
            change,
            judgement.status,
            state.last_status,
        )
        state.open_alert = None if change == "recovered" else change
    state.last_status = judgement.status
    skip(state, kpi, judgement.window_end_ms)
    return judgement, transition


def skip(state: KpiState, kpi: Kpi, to_ms: int) -> None:
    """Move the state to the window starting at ``to_ms`` without judging (outside the period)."""
    state.window_start_ms = to_ms
    state.observed_from_ms = min(state.observed_from_ms, to_ms)
    for metric in kpi.inputs:
        state.merged[metric] = max(state.merged.get(metric, 0), to_ms)
    state.acc = Acc()
    state.sums = {}
    state.minutes_up = 0
