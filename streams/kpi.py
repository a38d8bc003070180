"""KPI judgement: roll a site's closed 1-minute windows up to a KPI's window and judge it. Pure.

One ``KpiState`` per (demonstration, KPI, site) holds the open KPI window. Closed minutes are
merged in as they close (at most once each: ``merged_through_ms``); when the watermark passes the
KPI window's end, the window is judged ``pass``, ``fail`` or ``insufficient_data`` and the state
moves to the next window. Status changes become alerts: ``breach`` (to fail), ``no_data`` (from
a reporting status to insufficient data), ``recovered`` (back to pass while an alert is open).
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from hub.registry.model import Kpi
from streams.windows import MINUTE_MS, Acc

PASS: Final = "pass"  # noqa: S105 (a KPI status, not a password)
FAIL: Final = "fail"
INSUFFICIENT: Final = "insufficient_data"

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
    merged_through_ms: int = 0
    acc: Acc = field(default_factory=Acc)
    minutes_up: int = 0  # minutes whose samples included a value above zero (availability)
    last_status: str | None = None
    open_alert: str | None = None
    # When the hub first saw this KPI's metric at the site: the first window is judged only
    # over the part of it the hub could observe.
    observed_from_ms: int = 0


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
    return ts_ms - ts_ms % size


def merge_minute(state: KpiState, minute_start_ms: int, acc: Acc) -> bool:
    """Add one closed minute of the KPI's metric; False if it was merged before or is not in
    this window (a replay after a crash re-closes minutes: they must not count twice)."""
    if minute_start_ms < state.merged_through_ms or minute_start_ms < state.window_start_ms:
        return False
    state.acc.merge(acc)
    if acc.max > 0:
        state.minutes_up += 1
    state.merged_through_ms = minute_start_ms + MINUTE_MS
    return True


def value_of(kpi: Kpi, state: KpiState) -> float | None:
    acc = state.acc
    if kpi.aggregation == "count":
        return float(acc.count)
    if kpi.aggregation == "availability":
        end = state.window_start_ms + kpi.window_s * 1000
        observed = end - max(state.window_start_ms, state.observed_from_ms)
        return state.minutes_up / (observed / MINUTE_MS)
    if acc.count == 0:
        return None
    match kpi.aggregation:
        case "mean":
            return acc.sum / acc.count
        case "min":
            return acc.min
        case "max":
            return acc.max
        case "sum":
            return acc.sum
        case "rate":
            return acc.sum / (kpi.window_s / 60)
        case "p50":
            return acc.quantile(0.50)
        case "p95":
            return acc.quantile(0.95)
        case "p99":
            return acc.quantile(0.99)
    raise ValueError(f"unknown aggregation {kpi.aggregation!r}")


def judge(kpi: Kpi, state: KpiState) -> Judgement:
    value = value_of(kpi, state)
    samples = state.acc.count
    if samples < kpi.min_samples or value is None:
        status = INSUFFICIENT
    else:
        status = PASS if OPS[kpi.op](value, kpi.threshold) else FAIL
    start = state.window_start_ms
    return Judgement(start, start + kpi.window_s * 1000, value, samples, status)


def transition_for(previous: str | None, status: str, open_alert: str | None) -> str | None:
    """Which alert, if any, a status change raises."""
    if status == previous:
        return None
    if status == FAIL:
        return "breach"
    if status == INSUFFICIENT:
        return "no_data" if previous in (PASS, FAIL) else None
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
    state.window_start_ms = judgement.window_end_ms
    state.merged_through_ms = max(state.merged_through_ms, judgement.window_end_ms)
    state.acc = Acc()
    state.minutes_up = 0
    return judgement, transition
