"""Event-time windows with plain values: de-dup, lateness, closing, rebuilding from a journal."""

from __future__ import annotations

import pytest

from hub.telemetry import Event
from streams.windows import MINUTE_MS, JournalEntry, PartitionWindows, Verdict, id_hash

T0 = 1_795_600_000_000 - 1_795_600_000_000 % MINUTE_MS  # a minute boundary
LATENESS = 120_000


def event(event_id: str, ts_ms: int, site: str = "S1", **metrics: float) -> Event:
    return Event(event_id, "D1", site, ts_ms, "measurement", metrics or {"m": 1.0})


def windows() -> PartitionWindows:
    return PartitionWindows(lateness_ms=LATENESS, dedup_horizon_ms=600_000)


def offer(w: PartitionWindows, e: Event) -> Verdict:
    return w.offer(e, id_hash(e.event_id))


def test_counts_sums_and_extremes_per_site_metric_minute() -> None:
    w = windows()
    for i, value in enumerate([3.0, 1.0, 2.0]):
        assert offer(w, event(f"e{i}", T0 + i * 1000, m=value)) is Verdict.ACCEPTED
    offer(w, event("other-site", T0 + 5, site="S2", m=10.0))
    offer(w, event("next-minute", T0 + MINUTE_MS, m=7.0))
    acc = w.open[("S1", "m", T0)]
    assert (acc.count, acc.sum, acc.min, acc.max) == (3, 6.0, 1.0, 3.0)
    assert w.open[("S2", "m", T0)].count == 1
    assert w.open[("S1", "m", T0 + MINUTE_MS)].count == 1


def test_a_repeated_event_id_counts_once() -> None:
    w = windows()
    assert offer(w, event("same", T0 + 1000)) is Verdict.ACCEPTED
    assert offer(w, event("same", T0 + 1000)) is Verdict.DUPLICATE
    assert w.open[("S1", "m", T0)].count == 1


def test_out_of_order_within_lateness_is_accepted_beyond_it_is_late() -> None:
    w = windows()
    offer(w, event("new", T0 + 3 * MINUTE_MS))  # watermark: T0 + 3 min
    # The window [T0, T0+1m) closes at T0 + 1m + 2m lateness = T0 + 3m: already too late.
    assert offer(w, event("old", T0 + 30_000)) is Verdict.LATE
    # [T0+1m, T0+2m) closes at T0 + 4m: still open.
    assert offer(w, event("ok", T0 + MINUTE_MS + 30_000)) is Verdict.ACCEPTED


def test_windows_close_when_the_watermark_passes_end_plus_lateness() -> None:
    w = windows()
    offer(w, event("a", T0 + 1000))
    offer(w, event("b", T0 + MINUTE_MS + LATENESS - 1))
    assert w.close_due() == []
    offer(w, event("c", T0 + MINUTE_MS + LATENESS))
    closed = w.close_due()
    assert [(c.site_id, c.start_ms, c.acc.count) for c in closed] == [("S1", T0, 1)]
    # Once emitted, a window never takes another event: a straggler is late.
    assert offer(w, event("straggler", T0 + 2000)) is Verdict.LATE


def test_verdicts_do_not_depend_on_batching() -> None:
    """The same sequence gives the same verdicts whether windows were closed in between or not."""
    sequence = [
        event("a", T0),
        event("b", T0 + 200_000),
        event("c", T0 + 10_000),
        event("d", T0 + 100_000),
        event("a", T0),
    ]
    closing_often, closing_never = windows(), windows()
    often = []
    for e in sequence:
        often.append(offer(closing_often, e))
        closing_often.close_due()
    never = [offer(closing_never, e) for e in sequence]
    assert (
        often
        == never
        == [Verdict.ACCEPTED, Verdict.ACCEPTED, Verdict.LATE, Verdict.ACCEPTED, Verdict.DUPLICATE]
    )


def test_idle_advance_closes_windows_without_new_events() -> None:
    w = windows()
    offer(w, event("a", T0 + 1000))
    w.advance(T0 + MINUTE_MS + LATENESS)
    assert [c.start_ms for c in w.close_due()] == [T0]


def test_restore_rebuilds_open_windows_and_remembers_ids() -> None:
    journal = [
        JournalEntry("S1", T0 + 1000, id_hash("a"), {"m": 2.0}),
        JournalEntry("S1", T0 + 2000, id_hash("b"), {"m": 4.0}),
    ]
    w = windows()
    w.restore(journal, watermark_ms=T0 + 2000, closed_ms=0)
    assert w.open[("S1", "m", T0)].count == 2
    # A record re-consumed after the crash is recognised, not counted again.
    assert offer(w, event("b", T0 + 2000)) is Verdict.DUPLICATE


def test_restore_skips_windows_already_emitted_but_keeps_their_ids() -> None:
    journal = [JournalEntry("S1", T0 + 1000, id_hash("a"), {"m": 2.0})]
    w = windows()
    w.restore(journal, watermark_ms=T0 + 4 * MINUTE_MS, closed_ms=T0 + MINUTE_MS)
    assert ("S1", "m", T0) not in w.open
    assert offer(w, event("a", T0 + 1000)) is Verdict.DUPLICATE


def test_quantiles_are_within_the_sketch_error_bound() -> None:
    w = windows()
    values = [float(v) for v in range(1, 1001)]
    for i, v in enumerate(values):
        offer(w, event(f"e{i}", T0 + i, m=v))
    acc = w.open[("S1", "m", T0)]
    for q, exact in ((0.5, 500.0), (0.95, 950.0), (0.99, 990.0)):
        estimate = acc.quantile(q)
        assert estimate is not None
        assert estimate == pytest.approx(exact, rel=0.01 + 1e-9)
