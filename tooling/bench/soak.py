"""``hub bench --soak MINUTES``: every Gwangju site at 1 Hz for a long run, watching the worker.

A hub of its own (fresh ``HUB_APP_ID``, the default settings, so windows close 120 s after
their end as in production) and the simulator run for the whole time; every ``interval`` the
worker's /metrics are sampled: resident memory, consumer lag, how far behind their end the
windows were written, and the rate. The consumer lag is also read every second: it is a sawtooth
(each minute's windows close at once, then the worker catches up), so a reading every 30 s says
little; the lowest and highest reading of each interval say whether the worker keeps catching up.
The verdict compares the last third of the run with the first third after warm-up: a leak or a
backlog shows as growth.

``--kill-at MINUTES`` kills the worker (SIGKILL) at that minute and starts it again on the same
directory: an unclean stop, so it drops its local state and restores from the changelog, the
path on which Faust's fetcher can skip offsets. The run then also shows that its commits keep
reaching the log end (the group's committed offsets, read every interval) and that offsets
acknowledged but not committable do not pile up (``hub_consumer_acks_pending``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from hub import principals, topics
from hub.settings import Settings
from tooling.bench.e2e import worker_ports
from tooling.localrun import Process, drop_hub_topics, fresh_hub, scrape, total, wait_for


def warmup_s(settings: Settings) -> float:
    """Until the worker's state is full: windows close after a minute plus the allowed
    lateness, and event ids are remembered for the de-duplication horizon."""
    return 60.0 + settings.allowed_lateness_s + settings.dedup_horizon_s


@dataclass(frozen=True, slots=True)
class Sample:
    at_s: float  # since the load started
    received_per_s: float
    rss_mb: float
    consumer_lag: float  # records behind the log end, all partitions
    close_lag_s: float | None  # mean over the interval: window end -> row written
    # The lowest and highest consumer lag read (every second) during the interval.
    lag_low: float = 0.0
    lag_high: float = 0.0
    # Processed offsets not yet committable, and records between the group's committed offsets
    # and the log end (what a restart would read again).
    acks_pending: float = 0.0
    commit_lag: float = 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    rss_growth_mb: float
    consumer_lag_early: float
    consumer_lag_late: float
    lag_low_late: float  # mean of the late intervals' lowest lag: did the worker catch up?
    lag_high_early: float
    lag_high_late: float
    close_lag_early_s: float
    close_lag_late_s: float
    acks_pending_high_late: float = 0.0
    commit_lag_end: float = 0.0
    flat: bool = False


def verdict(samples: list[Sample], warmup: float) -> Verdict:
    """First third after ``warmup`` seconds against the last third: flat when memory grew by
    under 10 % (plus 16 MB of noise); the consumer kept catching up (each late interval's lowest
    lag within a second of load on average) and its peaks did not grow (by under a quarter, plus a
    second of load); and windows were not written later and later (under 10 s drift)."""
    steady = [s for s in samples if s.at_s >= warmup and s.close_lag_s is not None]
    if len(steady) < 6:
        raise ValueError(
            f"too short to judge: run the soak for at least {warmup / 60 + 3:.0f} minutes"
        )
    third = max(1, len(steady) // 3)
    early, late = steady[:third], steady[-third:]

    def mean(values: list[float]) -> float:
        return statistics.fmean(values)

    rss_early, rss_late = mean([s.rss_mb for s in early]), mean([s.rss_mb for s in late])
    lag_early = mean([s.consumer_lag for s in early])
    lag_late = mean([s.consumer_lag for s in late])
    close_early = mean([s.close_lag_s or 0.0 for s in early])
    close_late = mean([s.close_lag_s or 0.0 for s in late])
    low_late = mean([s.lag_low for s in late])
    high_early, high_late = mean([s.lag_high for s in early]), mean([s.lag_high for s in late])
    rate = mean([s.received_per_s for s in steady])
    acks_early = max(s.acks_pending for s in early)
    acks_late = max(s.acks_pending for s in late)
    commit_lag_end = samples[-1].commit_lag
    flat = (
        rss_late <= rss_early * 1.1 + 16
        and low_late <= rate
        and high_late <= high_early * 1.25 + rate
        and close_late <= close_early + 10
        # Commits keep up: pending acknowledgements do not grow, and the group's committed
        # offsets stay within ten seconds of load of the log end.
        and acks_late <= acks_early * 1.25 + 5 * rate
        and commit_lag_end <= 10 * rate
    )
    return Verdict(
        round(rss_late - rss_early, 1),
        round(lag_early, 1),
        round(lag_late, 1),
        round(low_late, 1),
        round(high_early, 1),
        round(high_late, 1),
        round(close_early, 2),
        round(close_late, 2),
        round(acks_late, 1),
        round(commit_lag_end, 1),
        flat,
    )


def run_soak(
    settings: Settings,
    minutes: float,
    say: Callable[[str], None],
    interval_s: float = 30.0,
    kill_at_min: float | None = None,
) -> tuple[list[Sample], Verdict]:
    app_id = f"soak-{uuid.uuid4().hex[:8]}"
    logs = settings.home / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    asyncio.run(fresh_hub(settings, app_id))
    env = {"HUB_APP_ID": app_id}
    processes = [Process("worker 0", ["worker"], logs / "soak-worker.log", env)]
    port = worker_ports(settings, 1)[0]
    samples: list[Sample] = []
    try:
        wait_for(
            lambda: scrape(port).get("hub_partitions_assigned", 0) == settings.partitions,
            "the worker to own every partition",
            300,
            processes,
        )
        duration = f"{minutes * 60:g}"
        simulator = Process(
            "simulator",
            [
                "simulate",
                "--sites",
                "0",
                "--region",
                "gwangju",
                "--rate",
                "1",
                "--duration",
                duration,
            ],
            logs / "soak-simulate.log",
            {},
        )
        processes.append(simulator)
        started = time.monotonic()
        previous = (started, scrape(port, ("hub_", "process_")))
        killed = kill_at_min is None
        while simulator.proc.poll() is None:
            deadline = time.monotonic() + interval_s
            lags: list[float] = []
            while time.monotonic() < deadline and simulator.proc.poll() is None:
                if not killed and time.monotonic() - started >= (kill_at_min or 0) * 60:
                    killed = True
                    processes[0] = _kill_and_restart(processes[0], say)
                processes[0].check()
                lags.append(total([scrape(port, ("hub_consumer_lag",))], "hub_consumer_lag"))
                time.sleep(1)
            now = time.monotonic()
            current = scrape(port, ("hub_", "process_"))
            behind = asyncio.run(commit_lag(settings, app_id))
            sample = _sample(now - started, previous, (now, current), lags, behind)
            previous = (now, current)
            samples.append(sample)
            say(
                f"{sample.at_s / 60:5.1f} min  {sample.received_per_s:7,.0f} records/s  "
                f"rss {sample.rss_mb:6.1f} MB  consumer lag {sample.consumer_lag:7,.0f} "
                f"({sample.lag_low:,.0f}-{sample.lag_high:,.0f})  "
                f"window close lag "
                + ("-" if sample.close_lag_s is None else f"{sample.close_lag_s:.1f} s")
                + f"  acks pending {sample.acks_pending:,.0f}  uncommitted {behind:,.0f}"
            )
        if simulator.proc.returncode:
            simulator.check()
    finally:
        for process in processes:
            process.stop()
        asyncio.run(drop_hub_topics(settings, app_id))
    return samples, verdict(samples, warmup_s(settings))


def _kill_and_restart(worker: Process, say: Callable[[str], None]) -> Process:
    """SIGKILL, then the same worker again on the same directory (an unclean stop)."""
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(timeout=30)
    say(f"killed worker (pid {worker.proc.pid}); starting it again on the same directory")
    return Process(worker.name, worker.argv, worker.log, worker.env)


async def commit_lag(settings: Settings, group: str) -> float:
    """Records between the group's committed offsets and the telemetry topic's log end."""
    consumer = AIOKafkaConsumer(
        **principals.client(settings), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topics.TELEMETRY, p) for p in range(settings.partitions)]
        end = await consumer.end_offsets(tps)
        committed = {tp: await consumer.committed(tp) or 0 for tp in tps}
    finally:
        await consumer.stop()
    return float(sum(max(0, end[tp] - committed[tp]) for tp in tps))


def increase(before: float, after: float) -> float:
    """A counter's increase between two readings; a restarted process counts from 0 again."""
    return after - before if after >= before else after


def _sample(
    at_s: float,
    before: tuple[float, dict[str, float]],
    after: tuple[float, dict[str, float]],
    lags: list[float],
    commit_behind: float = 0.0,
) -> Sample:
    (t0, a), (t1, b) = before, after
    received = increase(
        total([a], "hub_records_received_total"), total([b], "hub_records_received_total")
    )
    closes = "hub_window_close_lag_seconds"
    count = increase(a.get(f"{closes}_count", 0), b.get(f"{closes}_count", 0))
    lag_sum = increase(a.get(f"{closes}_sum", 0), b.get(f"{closes}_sum", 0))
    lag = total([b], "hub_consumer_lag")
    return Sample(
        round(at_s, 1),
        round(received / max(t1 - t0, 1e-9), 1),
        round(b.get("process_resident_memory_bytes", 0) / 2**20, 1),
        lag,
        round(lag_sum / count, 2) if count else None,
        min(lags, default=lag),
        max(lags, default=lag),
        b.get("hub_consumer_acks_pending", 0.0),
        commit_behind,
    )


def as_json(samples: list[Sample], result: Verdict) -> str:
    return json.dumps({"verdict": asdict(result), "samples": [asdict(s) for s in samples]})
