"""A known stream with an independent count, and the accounting it must balance to.

The workload publishes live telemetry (event time = the wall clock when a record is made, or a
fixed time before it: ``backdate_ms``) for two sites per partition, with device retries
(repeated event ids, to be counted once) and records from an unregistered device (to land in
the DLQ). It keeps its own count of what the
broker acknowledged, per site. ``account`` then requires, per site, that the counts in
``site_aggregates`` plus the hub's DLQ records equal what was sent, nothing twice.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from hub import principals, topics
from hub.registry.files import read_registry
from hub.settings import Settings
from tests.conftest import FAST_WORKER_ENV
from tests.support import eventually, fetch, partition_of, read_since, record, signed

LATENESS_MS = int(FAST_WORKER_ENV["HUB_ALLOWED_LATENESS"]) * 1000
MINUTE_MS = 60_000
METRIC = "test_online"


def two_sites_per_partition(partitions: int) -> list[str]:
    """A Gwangju and a South Jeolla site on every partition."""
    chosen: dict[tuple[int, str], str] = {}
    for site in read_registry().sites:
        chosen.setdefault((partition_of(site.site_id, partitions), site.region), site.site_id)
    return sorted(chosen.values())


@dataclass
class Workload:
    """Publishes ``total`` records at ``rate`` per second, and counts what was acknowledged."""

    settings: Settings
    tag: str
    sites: list[str]
    total: int = 12_000  # 12 s at the default rate: a fault lands mid-stream with time to spare
    rate: float = 1000.0
    invalid_every: int = 40  # one record in 40 from an unregistered device (never a repeat)
    repeat_every: int = 10  # one in 10 re-sends an earlier record's bytes (a device retry)
    # Event time this far behind the wall clock: at the default lateness the stream's windows can
    # then be closed by ``close_windows`` at once, rather than by the wall clock minutes later.
    backdate_ms: int = 0
    # Event time stepping this far a record from ``backdate_ms`` before the start, rather than
    # with the wall clock: a stream of seconds spans minutes of windows, which close while it runs.
    event_step_ms: int = 0
    made: int = 0
    valid: dict[str, set[str]] = field(default_factory=dict)
    invalid: dict[str, set[str]] = field(default_factory=dict)
    newest_ts_ms: int = 0
    minute_of: dict[str, int] = field(default_factory=dict)  # event id -> its window's start

    @property
    def acknowledged(self) -> int:
        return sum(len(ids) for ids in self.valid.values()) + sum(
            len(ids) for ids in self.invalid.values()
        )

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            **principals.client(self.settings),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=120_000,  # rides out a broker restart instead of failing
        )
        await producer.start()
        try:
            history: list[tuple[str, str, bool, bytes]] = []
            pending: list[tuple[str, str, bool, bytes, asyncio.Future[Any]]] = []
            started = time.monotonic()
            origin_ms = int(time.time() * 1000) - self.backdate_ms
            for i in range(self.total):
                due = started + i / self.rate
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())  # the offered rate
                if i % self.repeat_every == self.repeat_every - 1 and len(history) > 50:
                    site, event_id, bad, value = history[-50]
                else:
                    site = self.sites[i % len(self.sites)]
                    bad = i % self.invalid_every == self.invalid_every // 2
                    event_id = f"{self.tag}-{i}"
                    ts_ms = (
                        origin_ms + i * self.event_step_ms
                        if self.event_step_ms
                        else int(time.time() * 1000) - self.backdate_ms
                    )
                    self.newest_ts_ms = max(self.newest_ts_ms, ts_ms)
                    self.minute_of[event_id] = ts_ms - ts_ms % MINUTE_MS
                    # Every fourth site is slow: its latency KPI fails and raises an alert.
                    slow = self.sites.index(site) % 4 == 0
                    value = record(
                        site,
                        ts_ms,
                        {METRIC: 1, "test_latency_ms": 200.0 if slow else 40.0 + i % 60},
                        event_id=event_id,
                        device=f"{site}-NOPE" if bad else None,
                    )
                    history.append((site, event_id, bad, value))
                future = await producer.send(
                    topics.TELEMETRY, value=value, key=site.encode(), headers=signed(value)
                )
                pending.append((site, event_id, bad, value, future))
                self.made += 1
                self._settle(pending)
            for site, event_id, bad, value, future in pending:
                try:
                    await future
                except Exception:  # not acknowledged: a device sends it again
                    await producer.send_and_wait(
                        topics.TELEMETRY, value=value, key=site.encode(), headers=signed(value)
                    )
                self._count(site, event_id, bad)
            pending.clear()
        finally:
            await producer.stop()

    def _settle(self, pending: list[tuple[str, str, bool, bytes, asyncio.Future[Any]]]) -> None:
        while pending and pending[0][4].done() and not pending[0][4].exception():
            site, event_id, bad, _, _ = pending.pop(0)
            self._count(site, event_id, bad)

    def _count(self, site: str, event_id: str, bad: bool) -> None:
        (self.invalid if bad else self.valid).setdefault(site, set()).add(event_id)

    async def close_windows(self, lateness_ms: int = LATENESS_MS) -> None:
        """One record per site dated past the last window's end plus lateness, on a metric of
        its own: the stream's windows close without adding to the counts. (No record moves event
        time past its arrival plus the clock tolerance: at the default lateness this closes them
        at once only for a stream backdated by more than a minute plus the lateness.)"""
        end = self.newest_ts_ms - self.newest_ts_ms % MINUTE_MS + MINUTE_MS
        producer = AIOKafkaProducer(**principals.client(self.settings), acks="all")
        await producer.start()
        try:
            for site in self.sites:
                value = record(site, end + lateness_ms + 1000, {"test_push": 1.0})
                await producer.send_and_wait(
                    topics.TELEMETRY, value=value, key=site.encode(), headers=signed(value)
                )
        finally:
            await producer.stop()

    @property
    def data_through_ms(self) -> int:
        """The end of the last minute holding the stream's events."""
        return self.newest_ts_ms - self.newest_ts_ms % MINUTE_MS + MINUTE_MS


@dataclass
class Accounting:
    aggregated: dict[str, int]
    windows: dict[tuple[str, int], int]  # (site, minute) -> count
    rejected: dict[str, Counter[str]]  # site -> reason -> distinct event ids
    dlq_ids: dict[str, set[str]]
    repeats_in_dlq: int

    def summary(self) -> str:
        reasons: Counter[str] = Counter()
        for per_site in self.rejected.values():
            reasons.update(per_site)
        return f"aggregated {sum(self.aggregated.values())}, dlq {dict(reasons)}"


async def tally(
    settings: Settings, database_url: str, hub: str, dlq_start: dict[TopicPartition, int]
) -> Accounting:
    rows = await fetch(
        database_url,
        "SELECT site_id, (extract(epoch FROM bucket) * 1000)::bigint AS minute, count "
        "FROM site_aggregates WHERE metric = $1",
        METRIC,
    )
    aggregated: Counter[str] = Counter()
    windows: dict[tuple[str, int], int] = {}
    for r in rows:
        aggregated[r["site_id"]] += r["count"]
        windows[(r["site_id"], r["minute"])] = r["count"]
    seen: Counter[tuple[int, int]] = Counter()
    rejected: dict[str, Counter[str]] = {}
    ids: dict[str, set[str]] = {}
    for entry in await read_since(settings, dlq_start):
        if entry.get("hub") != hub:
            continue
        seen[(entry["partition"], entry["offset"])] += 1
        event_id = json.loads(base64.b64decode(entry["value_b64"]))["event_id"]
        if event_id not in ids.setdefault(entry["key"], set()):
            ids[entry["key"]].add(event_id)
            rejected.setdefault(entry["key"], Counter())[entry["reason"]] += 1
    return Accounting(
        dict(aggregated),
        windows,
        rejected,
        ids,
        sum(n - 1 for n in seen.values()),
    )


async def account(
    workload: Workload,
    database_url: str,
    hub: str,
    dlq_start: dict[TopicPartition, int],
    timeout_s: float = 120,
) -> Accounting:
    """Wait until every record sent is either counted or in the DLQ, then check nothing twice."""
    last: list[Accounting] = []

    async def balanced() -> Accounting | None:
        got = await tally(workload.settings, database_url, hub, dlq_start)
        last[:] = [got]
        for site in workload.sites:
            sent = len(workload.valid.get(site, ())) + len(workload.invalid.get(site, ()))
            if got.aggregated.get(site, 0) + len(got.dlq_ids.get(site, ())) != sent:
                return None
        return got

    try:
        got = await eventually(balanced, "every record sent to be counted or rejected", timeout_s)
    except AssertionError as error:
        raise AssertionError(f"{error}; {mismatches(workload, last[0])}") from None
    assert got.repeats_in_dlq == 0, f"{got.repeats_in_dlq} records rejected twice"
    for site in workload.sites:
        rejected = got.rejected.get(site, Counter())
        assert rejected["unknown_device"] == len(workload.invalid.get(site, ())), site
        # Every valid record is stamped when it is sent: on time. None may pass as late (a lost
        # record would hide there), every one must be counted.
        assert rejected["late"] == 0, (site, mismatches(workload, got))
        assert got.aggregated.get(site, 0) == len(workload.valid[site]), site
    return got


def mismatches(workload: Workload, got: Accounting) -> str:
    """Per site and minute: valid records sent, counted, and rejected as late."""
    sent: Counter[tuple[str, int]] = Counter()
    for site, ids in workload.valid.items():
        sent.update((site, workload.minute_of[i]) for i in ids)
    late: Counter[tuple[str, int]] = Counter()
    for site, ids in got.dlq_ids.items():
        late.update((site, workload.minute_of[i]) for i in ids if i in workload.valid.get(site, ()))
    wrong = {
        key: (n, got.windows.get(key, 0), late[key])
        for key, n in sorted(sent.items())
        if got.windows.get(key, 0) + late[key] != n
    }
    invalid = {
        site: (len(workload.invalid.get(site, ())), got.rejected.get(site, Counter()))
        for site in workload.sites
    }
    return f"(site, minute): (sent, counted, late) {wrong}; invalid sent, rejected: {invalid}"
