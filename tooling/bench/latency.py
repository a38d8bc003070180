"""Latency of ``hub bench``: every registered site at a stepped rate (1 Hz, the programme's load,
then 10 Hz, by default; ``--latency-rates 1,2.5,5,10`` for the rates between) against the hub's
workers at their default settings, to find the rate it sustains.

The load runs without a break; the rate steps up every ``step`` (3 minutes by default) after a
warm-up as long as a window and its lateness, and a step is judged by the windows that *close*
during it (their close happens a lateness after their minute, under the load offered then). For
each window minute ``b`` a watcher thread polls TimescaleDB for its rows from just before
``b + 60 s + lateness`` until they stop arriving, and notes when each row became visible (rows of
a partition commit together). Then per row:

* ``close_lag``: visible - (window end + allowed lateness), what the hub adds to the lateness
  policy;
* ``queryable``: visible - the broker timestamp of the window's last record (the producer's
  create time: the start of the send of the last tick dated inside the window, which is never
  later than that record's).

A step whose close-lag p99 exceeds ``LIMIT_S`` (or whose load fell behind) ends the phase: the
sustained rate is the last step that held. The poll interval bounds the error, always towards
more lag.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from aiokafka import AIOKafkaProducer

from hub import principals, topics
from hub.db import connect
from hub.errors import HubError
from hub.settings import Settings
from tooling.bench.load import BatchSender, Load
from tooling.simulate import SimulationOptions, load_sites

POLL_S = 0.05
# The load is the measurement's clock: a generator this far behind its schedule has turned the
# run into a catch-up, whose lags would be the generator's, not the hub's.
MAX_BEHIND_S = 5.0


class LoadFellBehind(HubError):
    """This machine cannot offer the asked rate while the hub runs: no latency is measured."""


SETTLED_S = 5.0  # a window's rows are all in once none arrived for this long


@dataclass(slots=True)
class Visible:
    """When each window's rows became visible: (monotonic-free wall time, rows) per minute."""

    seen: dict[int, list[tuple[float, int]]] = field(default_factory=dict)


SUB_TICK_S = 0.1
LEAD_S = 3  # from the phase's start to its first tick: sites, keys and producer load in ~0.5 s


def phases_at(rate_hz: float) -> int:
    """Shares of the sites that send at their own phase: one every SUB_TICK_S (1 Hz: ten
    shares a tenth of a second apart; 10 Hz and more: all at each tick). All sites at one phase
    would add half an interval to every close lag: a window closes on the first record dated
    past its end and lateness, which lockstep sites send half a second later at 1 Hz."""
    return max(1, round(1 / (rate_hz * SUB_TICK_S)))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def offer(
    settings: Settings,
    schedule: Schedule,
    sends: dict[int, float],
    judge: Callable[[float], bool],
) -> tuple[dict[int, int], float, int]:
    """Every registered site at the schedule's rate in real time until it ends or ``judge(now)``
    says stop, noting for each minute when its last tick started sending. Returns (records sent
    per step, most behind schedule, sites)."""
    sites, keys = await load_sites(settings, SimulationOptions(sites=0, rate_hz=1, duration_s=1))
    until_s = schedule.end_s
    load = Load(sites, keys, settings.partitions, run=f"latency-{int(until_s)}", seed=int(until_s))
    # zstd at level 3, as the workers' producer: aiokafka's lz4 is LZ4HC (level 9), which took a
    # fifth of this generator's CPU at 10 Hz, taken from the hub on the same two cores.
    producer = AIOKafkaProducer(**principals.client(settings), acks="all", compression_type="zstd")
    await producer.start()
    sender = BatchSender(producer, topics.TELEMETRY)
    sent: dict[int, int] = {}
    # Sites send at PHASES phases of their interval, as devices of many companies do (never all
    # at once): a share of them every interval / PHASES. Half a sub-interval off the grid: no
    # record is dated on a minute's edge.
    phases = phases_at(schedule.rates[0])
    stamp = schedule.start_s + 0.5 / (schedule.rates[0] * phases)
    part = 0
    behind = 0.0
    try:
        while stamp < until_s:
            wait = stamp - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            begun = time.time()
            step = schedule.step_at(stamp)
            if judge(begun):
                break
            behind = max(behind, begun - stamp)
            if begun - stamp > MAX_BEHIND_S:
                raise LoadFellBehind(
                    f"the load generator fell {begun - stamp:.1f} s behind its schedule at "
                    f"{schedule.rates[step]:g} Hz x {len(sites):,} sites: this machine cannot "
                    "offer that while the hub runs"
                )
            minute = int(stamp) // 60 * 60
            sends[minute] = begun
            before = load.sent
            phases = phases_at(schedule.rates[step])
            part %= phases
            for record in load.tick(stamp, part, phases):
                await sender.add(*record)
            await sender.flush()
            sent[step] = sent.get(step, 0) + load.sent - before
            part += 1
            stamp += 1 / (schedule.rates[step] * phases)
        result = await sender.drain()
        if result.failed:
            raise LoadFellBehind(
                f"the broker refused {len(result.failed):,} batches: {result.failed[0]!r}"
            )
    finally:
        await producer.stop()
    return sent, behind, len(sites)


def watch(
    settings: Settings,
    minutes: list[int],
    lateness_s: float,
    visible: Visible,
    stop: threading.Event,
) -> None:
    """Poll each minute's rows from 2 s before it is due until they settle (in a thread of its
    own, so the load's event loop never delays a poll); ``stop`` ends it early."""

    async def poll() -> None:
        conn = await connect(settings)
        try:
            for minute in minutes:
                due = minute + 60 + lateness_s
                if await asyncio.to_thread(stop.wait, max(0.0, due - 2 - time.time())):
                    return
                seen: list[tuple[float, int]] = []
                rows = 0
                last_change = time.time()
                while time.time() - last_change < SETTLED_S or not rows:
                    n = await conn.fetchval(
                        "SELECT count(*) FROM site_aggregates WHERE bucket = to_timestamp($1) "
                        "AND metric = 'online'",
                        float(minute),
                    )
                    now = time.time()
                    if n > rows:
                        seen.append((now, n - rows))
                        rows = n
                        last_change = now
                    if now - due > 120 or stop.is_set():
                        break
                    await asyncio.sleep(POLL_S)
                visible.seen[minute] = seen
        finally:
            await conn.close()

    asyncio.run(poll())


@dataclass(frozen=True, slots=True)
class Schedule:
    """The load's rates in time: ``rates[0]`` from ``start_s`` through a warm-up of ``warm_s``
    (until the first windows close), then each rate for ``step_s``."""

    start_s: float
    warm_s: float
    step_s: float
    rates: tuple[float, ...]

    def step_start(self, step: int) -> float:
        return self.start_s + self.warm_s + step * self.step_s

    @property
    def end_s(self) -> float:
        return self.step_start(len(self.rates)) + SETTLED_S + 2

    def closing(self, step: int, lateness_s: float) -> list[int]:
        """Window minutes closing during the step (their close: minute + 60 s + lateness)."""
        begin, end = self.step_start(step), self.step_start(step + 1)
        first = int(begin - 60 - lateness_s)
        return [
            m for m in range(first // 60 * 60, int(end), 60) if begin <= m + 60 + lateness_s < end
        ]

    def step_at(self, t: float) -> int:
        """The step whose rate is offered at ``t`` (the warm-up is the first step's)."""
        k = int((t - self.start_s - self.warm_s) // self.step_s)
        return min(max(k, 0), len(self.rates) - 1)


@dataclass(frozen=True, slots=True)
class StepResult:
    rate_hz: float
    offered_per_s: float
    windows: int
    rows: int
    close_lag_p50_s: float
    close_lag_p99_s: float
    close_lag_max_s: float
    queryable_p50_s: float
    queryable_p99_s: float
    expected: int = 0  # windows closing during the step

    @property
    def held(self) -> bool:
        """Every window of the step written, and its close-lag p99 within the limit."""
        return self.windows == self.expected > 0 and self.close_lag_p99_s <= LIMIT_S


@dataclass(frozen=True, slots=True)
class SteppedResult:
    sites: int
    lateness_s: float
    step_s: float
    steps: list[StepResult]
    behind_schedule_max_s: float
    stopped: str  # why the phase ended

    @property
    def sustained_records_per_s(self) -> float | None:
        """The highest offered rate whose step held, every step below it holding too."""
        best = None
        for step in self.steps:
            if not step.held:
                break
            best = step.offered_per_s
        return best

    def at(self, rate_hz: float) -> StepResult | None:
        return next((s for s in self.steps if s.rate_hz == rate_hz), None)


LIMIT_S = 1.0  # the close-lag p99 a step must hold to
GIVE_UP_S = 130.0  # after its end, a step's windows not written yet count as missing


def lags_of(
    minutes: list[int], visible: Visible, sends: dict[int, float], lateness: float
) -> tuple[list[float], list[float]]:
    """Close lags and queryable times, one per row, of the windows of ``minutes``."""
    lags: list[float] = []
    queryable: list[float] = []
    for minute in minutes:
        for at, n in visible.seen.get(minute, []):
            lags.extend([at - (minute + 60 + lateness)] * n)
            if minute in sends:
                queryable.extend([at - sends[minute]] * n)
    return lags, queryable


def measure(
    settings: Settings,
    rates: tuple[float, ...],
    step_minutes: int,
    say: Callable[[str], None],
) -> SteppedResult:
    """Offer the stepped load with the hub's workers already running; judge each step by the
    windows that close during it; stop at the first step that does not hold."""
    lateness = settings.allowed_lateness_s
    # A whole second, not the next minute: a step is judged by the windows closing inside it,
    # whole minutes of load either way, and waiting for a minute's edge cost up to a minute of
    # the bench's fifteen.
    start = float(math.ceil(time.time()) + LEAD_S)
    warm = -(-(60 + lateness) // 60) * 60  # the first window closes at its end
    schedule = Schedule(start, warm, step_minutes * 60, rates)

    watched = sorted({m for k in range(len(rates)) for m in schedule.closing(k, lateness)})
    visible = Visible()
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch, args=(settings, watched, lateness, visible, stop), daemon=True
    )
    sends: dict[int, float] = {}
    results: list[StepResult] = []
    stopped = ""
    offered: dict[int, int] = {}

    def judge(now: float) -> bool:
        """Once a step's windows have all settled (or the watcher gave up on them): judge it;
        True stops the load. A window with no rows fails its step."""
        nonlocal stopped
        step = len(results)
        if stopped or step >= len(rates) or now < schedule.step_start(step + 1) + SETTLED_S:
            return bool(stopped)
        minutes = schedule.closing(step, lateness)
        waiting = any(m not in visible.seen for m in minutes)
        if waiting and now < schedule.step_start(step + 1) + GIVE_UP_S:
            return False
        lags, queryable = lags_of(minutes, visible, sends, lateness)
        results.append(
            StepResult(
                rate_hz=rates[step],
                offered_per_s=0.0,  # filled in below from what was sent
                windows=sum(1 for m in minutes if visible.seen.get(m)),
                expected=len(minutes),
                rows=len(lags),
                close_lag_p50_s=round(quantile(lags, 0.5), 3),
                close_lag_p99_s=round(quantile(lags, 0.99), 3),
                close_lag_max_s=round(max(lags, default=float("nan")), 3),
                queryable_p50_s=round(quantile(queryable, 0.5), 3),
                queryable_p99_s=round(quantile(queryable, 0.99), 3),
            )
        )
        last = results[-1]
        say(
            f"latency: {rates[step]:g} Hz: close lag p50 {last.close_lag_p50_s} s, p99 "
            f"{last.close_lag_p99_s} s over {last.windows} windows "
            + ("(held)" if last.held else "(did not hold)")
        )
        if not last.held:
            stopped = f"{rates[step]:g} Hz did not hold (close lag p99 > {LIMIT_S:g} s)"
            return True
        return False

    say(
        f"latency: stepping {', '.join(f'{r:g}' for r in rates)} Hz per site, {step_minutes} "
        f"minute(s) each after a {warm:.0f} s warm-up, from "
        f"{time.strftime('%H:%M:%S', time.localtime(start))} (at most "
        f"{(schedule.end_s - time.time()) / 60:.0f} minutes)"
    )
    watcher.start()
    behind = 0.0
    sites = 0
    try:
        offered, behind, sites = asyncio.run(offer(settings, schedule, sends, judge))
        # The load ran to its end: the last step is judged once its windows are in.
        while len(results) < len(rates) and not judge(time.time()):
            time.sleep(0.5)
    except LoadFellBehind as error:
        stopped = str(error)
    finally:
        stop.set()
        watcher.join(timeout=180)
    seconds = [schedule.step_s + (schedule.warm_s if k == 0 else 0) for k in range(len(rates))]
    steps = [
        replace(r, offered_per_s=round(offered.get(k, 0) / seconds[k], 1))
        for k, r in enumerate(results)
    ]
    return SteppedResult(
        sites, lateness, schedule.step_s, steps, round(behind, 3), stopped or "every step held"
    )
