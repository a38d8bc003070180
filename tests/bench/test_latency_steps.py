"""The stepped latency phase's rules, on plain values: which rate is offered when, and which
rate counts as sustained."""

from __future__ import annotations

from tooling.bench.latency import Schedule, SteppedResult, StepResult


def step(rate: float, p99: float, windows: int = 3, expected: int = 3) -> StepResult:
    return StepResult(rate, rate * 3705, windows, windows * 100, p99 / 2, p99, p99, 0, 0, expected)


def stepped(*steps: StepResult) -> SteppedResult:
    return SteppedResult(3705, 120, 180, list(steps), 0.0, "")


def test_the_warm_up_offers_the_first_rate_then_each_step_its_own() -> None:
    schedule = Schedule(start_s=600, warm_s=180, step_s=180, rates=(1, 2.5, 5))
    assert [schedule.step_at(t) for t in (600, 779, 780, 959, 960, 1139, 1140, 5000)] == [
        0,
        0,
        0,
        0,
        1,
        1,
        2,
        2,
    ]
    assert schedule.end_s > schedule.step_start(3)


def test_the_sustained_rate_is_the_last_step_held_from_the_lowest() -> None:
    assert stepped(step(1, 0.4), step(2.5, 0.6), step(5, 3.2)).sustained_records_per_s == 2.5 * 3705
    # A step above a failed one does not count, whatever it showed.
    assert stepped(step(1, 0.4), step(2.5, 1.6), step(5, 0.9)).sustained_records_per_s == 3705
    assert stepped(step(1, 1.01)).sustained_records_per_s is None


def test_a_step_with_a_window_never_written_did_not_hold() -> None:
    assert not step(1, 0.2, windows=2, expected=3).held
    assert not step(1, 0.2, windows=0, expected=0).held
    assert step(1, 0.2).held


def test_a_schedule_off_the_minute_judges_each_step_by_whole_minutes_of_load() -> None:
    """The phase starts on a whole second, not the next minute: every window a step is judged by
    is a whole minute the load offered, the warm-up's first partial minute never among them."""
    start = 3600 + 37
    schedule = Schedule(start_s=start, warm_s=180, step_s=180, rates=(1, 10))
    first, second = schedule.closing(0, 120), schedule.closing(1, 120)
    assert first == [3660, 3720, 3780]
    assert second == [3840, 3900, 3960]
    assert all(m >= start and m % 60 == 0 for m in first + second)
    # Each window closes inside its own step.
    assert all(schedule.step_at(m + 180) == 0 for m in first)
    assert all(schedule.step_at(m + 180) == 1 for m in second)
