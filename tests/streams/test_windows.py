"""Event-time windows with plain values: de-dup, lateness, closing, rebuilding from a journal."""

from __future__ import annotations

import math
import random

import pytest
from ddsketch import DDSketch

from streams.windows import (
    FOLD_AT,
    MINUTE_MS,
    RELATIVE_ACCURACY,
    Acc,
    ClosedWindow,
    JournalEntry,
    PartitionWindows,
    Verdict,
    event_digest,
    id_hash,
)

T0 = 1_795_600_000_000 - 1_795_600_000_000 % MINUTE_MS  # a minute boundary
LATENESS = 120_000
HORIZON = 600_000


def windows() -> PartitionWindows:
    return PartitionWindows(lateness_ms=LATENESS, dedup_horizon_ms=HORIZON)


def held(w: PartitionWindows, minute: int, series: tuple[str, str, str]) -> Acc:
    acc = w.window(minute, series)
    assert acc is not None, f"no open window {series} at {minute}"
    return acc


def offer(
    w: PartitionWindows,
    event_id: str,
    ts_ms: int,
    site: str = "S1",
    demo: str = "D1",
    arrival_ms: int | None = None,
    **metrics: float,
) -> Verdict:
    """One event; it arrives when it was made unless ``arrival_ms`` says otherwise."""
    arrival = ts_ms if arrival_ms is None else arrival_ms
    return w.offer(site, demo, ts_ms, arrival, id_hash(event_id), metrics or {"m": 1.0})


def test_counts_sums_and_extremes_per_site_demonstration_metric_minute() -> None:
    w = windows()
    for i, value in enumerate([3.0, 1.0, 2.0]):
        assert offer(w, f"e{i}", T0 + i * 1000, m=value) is Verdict.ACCEPTED
    offer(w, "other-site", T0 + 5, site="S2", m=10.0)
    offer(w, "other-demonstration", T0 + 6, demo="D2", m=100.0)
    offer(w, "next-minute", T0 + MINUTE_MS, m=7.0)
    acc = held(w, T0, ("S1", "D1", "m"))
    assert (acc.count, acc.sum, acc.min, acc.max) == (3, 6.0, 1.0, 3.0)
    assert held(w, T0, ("S2", "D1", "m")).count == 1
    assert held(w, T0, ("S1", "D2", "m")).sum == 100.0  # never mixed with D1's devices
    assert held(w, T0 + MINUTE_MS, ("S1", "D1", "m")).count == 1


def test_a_repeated_event_id_counts_once() -> None:
    w = windows()
    assert offer(w, "same", T0 + 1000) is Verdict.ACCEPTED
    assert offer(w, "same", T0 + 1000) is Verdict.DUPLICATE
    assert held(w, T0, ("S1", "D1", "m")).count == 1


def test_a_retry_stamped_into_another_minute_is_still_a_repeat() -> None:
    """A device retry that re-stamps the event (now-70 s, then now-5 s) is the same event."""
    w = windows()
    assert offer(w, "retried", T0 + 10_000, arrival_ms=T0 + 80_000) is Verdict.ACCEPTED
    assert offer(w, "retried", T0 + 75_000, arrival_ms=T0 + 80_500) is Verdict.DUPLICATE
    assert held(w, T0, ("S1", "D1", "m")).count == 1
    assert w.window(T0 + MINUTE_MS, ("S1", "D1", "m")) is None


def test_ids_are_remembered_for_the_horizon_of_arrival_time() -> None:
    w = windows()
    offer(w, "first", T0, arrival_ms=T0)
    # Nine minutes of arrivals later (within the 10-minute horizon) it is still a repeat.
    offer(w, "later", T0 + 9 * MINUTE_MS)
    w.close_due()
    assert offer(w, "first", T0 + 9 * MINUTE_MS, arrival_ms=T0 + 9 * MINUTE_MS) is Verdict.DUPLICATE
    # Past the horizon it is forgotten (memory stays bounded).
    offer(w, "much-later", T0 + 12 * MINUTE_MS)
    w.close_due()
    assert not w.is_repeat(id_hash("first"))


def test_out_of_order_within_lateness_is_accepted_beyond_it_is_late() -> None:
    w = windows()
    offer(w, "new", T0 + 3 * MINUTE_MS)  # watermark: T0 + 3 min
    # The window [T0, T0+1m) closes at T0 + 1m + 2m lateness = T0 + 3m: already too late.
    assert offer(w, "old", T0 + 30_000, arrival_ms=T0 + 3 * MINUTE_MS) is Verdict.LATE
    # [T0+1m, T0+2m) closes at T0 + 4m: still open.
    assert offer(w, "ok", T0 + MINUTE_MS + 30_000, arrival_ms=T0 + 3 * MINUTE_MS) is (
        Verdict.ACCEPTED
    )


def test_an_event_from_the_future_moves_event_time_no_further_than_its_arrival() -> None:
    """A device clock 290 s ahead: accepted into its own window, but everybody else's on-time
    events stay on time."""
    w = windows()
    now = T0 + 30_000
    assert offer(w, "ahead", now + 290_000, site="FAST", arrival_ms=now) is Verdict.ACCEPTED
    assert w.watermark_ms == now + w.clock_tolerance_ms
    for i in range(10):
        assert offer(w, f"on-time-{i}", now - 20_000 + i, site=f"S{i}", arrival_ms=now) is (
            Verdict.ACCEPTED
        )


def test_windows_close_when_the_watermark_passes_end_plus_lateness() -> None:
    w = windows()
    offer(w, "a", T0 + 1000)
    offer(w, "b", T0 + MINUTE_MS + LATENESS - 1)
    assert w.close_due() == []
    offer(w, "c", T0 + MINUTE_MS + LATENESS)
    closed = w.close_due()
    assert [(c.site_id, c.demonstration_id, c.start_ms, c.acc.count) for c in closed] == [
        ("S1", "D1", T0, 1)
    ]
    # Once emitted, a window never takes another event: a straggler is late.
    assert offer(w, "straggler", T0 + 2000, arrival_ms=T0 + 4 * MINUTE_MS) is Verdict.LATE


def test_verdicts_do_not_depend_on_batching() -> None:
    """The same sequence gives the same verdicts whether windows were closed in between or not."""
    sequence = [
        ("a", T0),
        ("b", T0 + 200_000),
        ("c", T0 + 10_000),
        ("d", T0 + 100_000),
        ("a", T0),
    ]
    closing_often, closing_never = windows(), windows()
    often = []
    for event_id, ts in sequence:
        often.append(offer(closing_often, event_id, ts, arrival_ms=T0 + 200_000))
        closing_often.close_due()
    never = [offer(closing_never, e, ts, arrival_ms=T0 + 200_000) for e, ts in sequence]
    assert (
        often
        == never
        == [Verdict.ACCEPTED, Verdict.ACCEPTED, Verdict.LATE, Verdict.ACCEPTED, Verdict.DUPLICATE]
    )


def test_idle_advance_closes_windows_without_new_events() -> None:
    w = windows()
    offer(w, "a", T0 + 1000)
    w.advance(T0 + MINUTE_MS + LATENESS)
    assert [c.start_ms for c in w.close_due()] == [T0]


def test_restore_rebuilds_open_windows_and_remembers_ids() -> None:
    journal = [
        JournalEntry("S1", "D1", T0 + 1000, T0 + 1000, id_hash("a"), {"m": 2.0}),
        JournalEntry("S1", "D1", T0 + 2000, T0 + 2000, id_hash("b"), {"m": 4.0}),
    ]
    w = windows()
    w.restore(((e, False) for e in journal), watermark_ms=T0 + 2000, closed_ms=0)
    assert held(w, T0, ("S1", "D1", "m")).count == 2
    # A record re-consumed after the crash is recognised, not counted again.
    assert offer(w, "b", T0 + 2000) is Verdict.DUPLICATE


def test_restore_skips_windows_already_emitted_but_keeps_their_ids() -> None:
    journal = [JournalEntry("S1", "D1", T0 + 1000, T0 + 1000, id_hash("a"), {"m": 2.0})]
    w = windows()
    w.restore(
        ((e, False) for e in journal), watermark_ms=T0 + 4 * MINUTE_MS, closed_ms=T0 + MINUTE_MS
    )
    assert T0 not in w.open
    assert offer(w, "a", T0 + 1000) is Verdict.DUPLICATE


def test_quantiles_are_within_the_sketch_error_bound() -> None:
    w = windows()
    values = [float(v) for v in range(1, 1001)]
    for i, v in enumerate(values):
        offer(w, f"e{i}", T0 + i, m=v)
    acc = held(w, T0, ("S1", "D1", "m"))
    for q, exact in ((0.5, 500.0), (0.95, 950.0), (0.99, 990.0)):
        estimate = acc.quantile(q)
        assert estimate is not None
        assert estimate == pytest.approx(exact, rel=0.01 + 1e-9)


def test_extreme_values_at_the_edge_of_the_accepted_range_still_give_quantiles() -> None:
    w = windows()
    for i, v in enumerate((1e15, -1e15, 5e-324, 0.0)):
        offer(w, f"x{i}", T0 + i, m=v)
    acc = held(w, T0, ("S1", "D1", "m"))
    assert (acc.count, acc.min, acc.max) == (4, -1e15, 1e15)
    for q in (0.5, 0.95, 0.99):
        assert acc.quantile(q) is not None


@pytest.mark.parametrize("n", [1, FOLD_AT - 1, FOLD_AT, FOLD_AT + 1, 3 * FOLD_AT + 17])
def test_a_closed_window_holds_every_value_whatever_its_size(n: int) -> None:
    """Windows keep raw values and summarise them past FOLD_AT: closed, a window of any size
    has the count, sum, extremes and the library's own quantiles of all its values."""
    rng = random.Random(n)
    values = [rng.choice((-1.0, 1.0)) * rng.lognormvariate(0, 3) for _ in range(n)]
    w = windows()
    for i, value in enumerate(values):
        offer(w, f"e{i}", T0 + i * 10, m=value, other=float(i))
    offer(w, "closer", T0 + MINUTE_MS + LATENESS, site="S2")
    closed = {c.metric: c.acc for c in w.close_due() if c.site_id == "S1"}
    acc = closed["m"]
    assert (acc.count, acc.min, acc.max) == (n, min(values), max(values))
    assert acc.sum == pytest.approx(math.fsum(values), rel=1e-12, abs=1e-9)
    assert closed["other"].sum == n * (n - 1) / 2
    sketch = DDSketch(RELATIVE_ACCURACY)
    for value in values:
        sketch.add(value)
    qs = (0.0, 0.5, 0.95, 0.99, 1.0)
    answers = [sketch.get_quantile_value(q) for q in qs]
    assert None not in answers
    expected = [min(max(float(a or 0), acc.min), acc.max) for a in answers]
    assert acc.quantiles(qs) == expected
    assert not w.folded  # what was summarised went with the window


@pytest.mark.parametrize(
    ("event_id", "digest"),
    [
        ("a", 4681665781835383343),
        ("0a5b2c1e-4d3f-4e6a-9b8c-1234567890ab", 7091812535552048431),
        ("é-ü", 6660434465835629129),
    ],
)
def test_event_id_digests_stay_what_journals_hold(event_id: str, digest: int) -> None:
    """Journals written by earlier releases hold these digests: a changed hash would let every
    repeat re-consumed after an upgrade through as new."""
    assert id_hash(event_id) == digest


def test_a_pair_digest_depends_on_the_device_and_on_where_the_device_id_ends() -> None:
    assert event_digest("DEV-A", "42") != event_digest("DEV-B", "42")
    # No two pairs share an input: the device id is length-prefixed.
    assert event_digest("DEV-A", "B42") != event_digest("DEV-AB", "42")
    # Journals hold these values: a changed hash would let repeats through after an upgrade.
    assert event_digest("GJ-BUK-0012-CAM1", "42") == 15322018901371658673


def test_legacy_digests_are_recognised_until_the_horizon_passes_over_them() -> None:
    """A journal written before ids were per device: its events' repeats are still repeats
    (by event id alone) until the de-dup horizon has passed, then forgotten."""
    w = windows()
    legacy = JournalEntry("S1", "D1", T0 + 1000, T0 + 1000, id_hash("42"), {"m": 2.0})
    w.restore([(legacy, True)], watermark_ms=T0 + 1000, closed_ms=0)
    assert w.is_legacy_repeat("42")
    assert not w.is_repeat(event_digest("S1-CAM1", "42"))
    late = T0 + HORIZON + 3 * MINUTE_MS
    w.offer("S1", "D1", late, late, event_digest("S1-CAM1", "x"), {"m": 1.0})
    w.close_due()
    assert not w.is_legacy_repeat("42")
    assert not w.legacy_by_minute


@pytest.mark.parametrize("batch", [1, 5, FOLD_AT - 1, 1000])
def test_a_window_is_the_same_to_the_last_bit_however_its_events_were_batched(batch: int) -> None:
    """Judged one by one and added a batch at a time (``judge`` then ``add_all``), a window
    past FOLD_AT holds the same count, sum (the same floats added in the same groups) and
    sketch as one offered event by event: a replay after a crash writes the same row."""
    rng = random.Random(batch)
    entries = [
        JournalEntry(
            "S1",
            "D1",
            T0 + i * 10,
            T0 + i * 10,
            event_digest("d", f"e{i}"),
            {"m": rng.lognormvariate(0, 3)},
            "d",
        )
        for i in range(3 * FOLD_AT + 17)
    ]
    one_by_one, batched = windows(), windows()
    for e in entries:
        one_by_one.offer(
            e.site_id, e.demonstration_id, e.ts_ms, e.arrival_ms, e.id_hash, e.metrics, e.device_id
        )
    for start in range(0, len(entries), batch):
        chunk = entries[start : start + batch]
        assert all(
            batched.judge(e.ts_ms, e.arrival_ms, e.id_hash) is Verdict.ACCEPTED for e in chunk
        )
        batched.add_all(chunk)
    for w in (one_by_one, batched):
        w.advance(T0 + MINUTE_MS + LATENESS)
    (a,), (b,) = one_by_one.close_due(), batched.close_due()
    assert (a.acc.count, a.acc.sum, a.acc.min, a.acc.max) == (
        b.acc.count,
        b.acc.sum,
        b.acc.min,
        b.acc.max,
    )
    assert a.acc.quantiles((0.5, 0.99)) == b.acc.quantiles((0.5, 0.99))
    assert one_by_one.take_devices() == batched.take_devices()


def summary(window: ClosedWindow) -> tuple[object, ...]:
    acc = window.acc
    return (window.site_id, window.metric, acc.count, acc.sum, acc.min, acc.max, window.quantiles)


def test_a_window_summarised_ahead_closes_as_if_it_had_not_been_and_one_changed_since_too() -> None:
    """Closing takes the summaries made in the lateness (the close is every partition's burst),
    but never one a late value has outdated: the closed windows are those of no summary at all."""
    ahead, plain = windows(), windows()
    for w in (ahead, plain):
        for i in range(2 * FOLD_AT + 40):  # S1 folds into its sketch; S2 stays values
            offer(w, f"a{i}", T0 + i * 100, site="S1", m=float(i % 97))
            offer(w, f"b{i}", T0 + i * 100 + 1, site="S2", m=float(i % 13))
        w.advance(T0 + MINUTE_MS + LATENESS // 4 - 1)
    assert ahead.summarise_ahead() == 0, "summarised before a quarter of the lateness had passed"
    ahead.advance(T0 + MINUTE_MS + LATENESS // 4)
    assert ahead.summarise_ahead(budget=1) == 1
    assert ahead.summarise_ahead() == 1
    untouched = ahead.summaries[(T0, "S2", "D1", "m")][0]
    for w in (ahead, plain):  # late but inside the lateness: S1 has changed since its summary
        assert offer(w, "late", T0 + 59_000, site="S1", m=1000.0) is Verdict.ACCEPTED
        w.advance(T0 + MINUTE_MS + LATENESS)
    closed = ahead.close_due()
    assert [summary(c) for c in closed] == [summary(c) for c in plain.close_due()]
    assert closed[0].acc.max == 1000.0
    assert closed[1].acc is untouched
    assert ahead.summaries == {}
