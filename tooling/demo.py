"""``hub demo``: the main job end to end on the local stack.

Stack up, registry loaded, two workers and the API started, every registered site of Gwangju and
South Jeolla simulated at 1 Hz with a live progress line, the last windows closed, the accounting
checked against TimescaleDB, and the management overview printed. What the demo started is
stopped at the end unless ``--keep``.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
import urllib.request
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from hub import evidence, principals, topics
from hub.db import connect
from hub.dlq import DlqRecord
from hub.dlq import decode as decode_dlq
from hub.registry.model import district_label
from hub.settings import Settings
from tooling.localrun import Process, drop_hub_topics, fresh_hub, scrape, total, wait_for
from tooling.simulate import SimulationOptions, simulate
from tooling.simulate.fleet import Tally, digest

# Short lateness so a two-minute demo sees its windows closed and judged; `hub worker` defaults
# to 120 s for real devices.
DEMO_WORKER_ENV = {"HUB_ALLOWED_LATENESS": "10", "HUB_IDLE_TIMEOUT": "5", "HUB_TICK_INTERVAL": "1"}


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration_s: float = 120.0
    rate_hz: float = 1.0
    workers: int = 2
    bad_fraction: float = 0.005
    keep: bool = False


class Demo:
    def __init__(self, settings: Settings, options: DemoOptions, say: Callable[[str], None]):
        self.settings = settings
        self.options = options
        self.say = say
        # A hub of its own, reading from the topic's end: records of earlier runs (a bench, a
        # soak) are another hub's backlog, not this demo's.
        self.app_id = f"demo-{uuid.uuid4().hex[:8]}"
        self.logs = settings.home / "demo"
        self.processes: list[Process] = []
        self.worker_ports = [settings.worker_web_port + i for i in range(options.workers)]

    def worker_samples(self) -> list[dict[str, float]]:
        return [scrape(port) for port in self.worker_ports]

    def start_processes(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        asyncio.run(fresh_hub(self.settings, self.app_id))
        for index in range(self.options.workers):
            self.processes.append(
                Process(
                    f"worker {index}",
                    ["worker", "--index", str(index)],
                    self.logs / f"worker-{index}.log",
                    {**DEMO_WORKER_ENV, "HUB_APP_ID": self.app_id},
                )
            )
        self.processes.append(Process("api", ["api"], self.logs / "api.log", {}))

        def ready() -> bool:
            owned = [s.get("hub_partitions_assigned", 0) for s in self.worker_samples()]
            return all(owned) and sum(owned) == self.settings.partitions

        wait_for(ready, "the workers to share the partitions", 180, self.processes)
        wait_for(self._api_answers, "the API", 60, self.processes)
        self.say(f"{self.options.workers} workers and the API are up (logs in {self.logs})")

    def _api_answers(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.settings.api_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def progress(self, elapsed: float, tally: Tally) -> None:
        samples = self.worker_samples()
        line = (
            f"[{elapsed:4.0f}/{self.options.duration_s:.0f} s] sent {tally.sent:,} · "
            f"accepted {total(samples, 'hub_records_accepted_total'):,.0f} · "
            f"rejected {total(samples, 'hub_records_rejected_total'):,.0f} · "
            f"windows closed {total(samples, 'hub_windows_closed_total'):,.0f} · "
            f"KPIs judged {total(samples, 'hub_kpi_results_total'):,.0f} · "
            f"alerts {total(samples, 'hub_kpi_alerts_total'):,.0f}"
        )
        if sys.stdout.isatty():
            print(f"\r{line}", end="", flush=True)
        elif int(elapsed) % 10 == 0:
            print(line, flush=True)

    def wait_for_last_windows(self, last_event_s: float) -> None:
        """Until every partition has written the window holding the last simulated event."""
        minute_end = (int(last_event_s) // 60 + 1) * 60
        until = time.strftime("%H:%M:%S", time.gmtime(minute_end))
        self.say(f"closing the last windows (event time up to {until} UTC)")

        def closed() -> bool:
            through = [
                v
                for s in self.worker_samples()
                for k, v in s.items()
                if k.startswith("hub_windows_closed_through_timestamp_seconds")
            ]
            return len(through) == self.settings.partitions and min(through) >= minute_end

        wait_for(closed, "the last windows to close", 240, self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


async def accounting(settings: Settings, since_s: float, accepted: float) -> str:
    conn = await connect(settings)
    try:
        counted = await conn.fetchval(
            "SELECT coalesce(sum(count), 0) FROM site_aggregates WHERE metric = 'online' "
            "AND bucket >= to_timestamp($1) AND site_id NOT LIKE '%-TST%'",
            float(int(since_s) // 60 * 60),
        )
    finally:
        await conn.close()
    verdict = "exact" if int(counted) == int(accepted) else "MISMATCH"
    return (
        f"accounting: {int(accepted):,} records accepted by the workers, {int(counted):,} "
        f"counted in site_aggregates: {verdict}"
    )


async def dlq_offsets(settings: Settings) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**principals.client(settings))
    await consumer.start()
    try:
        tps = [TopicPartition(topics.DLQ, p) for p in range(settings.partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def rejected_by_this_hub(
    settings: Settings, start: dict[TopicPartition, int], hub: str
) -> list[DlqRecord]:
    """The DLQ records the demo's workers wrote (the topic is shared with other hubs)."""
    consumer = AIOKafkaConsumer(**principals.client(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        end = await consumer.end_offsets(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        out: list[DlqRecord] = []
        remaining = {tp for tp in start if end[tp] > start[tp]}
        deadline = time.monotonic() + 120
        while remaining and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(*remaining, timeout_ms=2000)).items():
                for message in messages:
                    if message.offset < end[tp] and message.value:
                        with suppress(msgspec.DecodeError):
                            record = decode_dlq(message.value)
                            if record.hub == hub:
                                out.append(record)
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


def rejections_table(rejected: list[DlqRecord], tally: Tally) -> str:
    """Rejected records by reason: the simulator's deliberate faults, its devices' outage
    backlogs, and anything else (which a healthy hub and simulator never show)."""
    table: dict[str, Counter[str]] = {}
    for record in rejected:
        cause = tally.marked.get(digest(record.value))
        column = "deliberate" if cause not in (None, "outage") else (cause or "other")
        table.setdefault(record.reason, Counter())[column] += 1
    lines = [
        f"{'rejected by reason':20} {'total':>7} {'deliberate':>11} {'outage':>7} {'other':>6}"
    ]
    for reason, counts in sorted(table.items()):
        lines.append(
            f"{reason:20} {sum(counts.values()):7,} {counts['deliberate']:11,} "
            f"{counts['outage']:7,} {counts['other']:6,}"
        )
    other = sum(c["other"] for c in table.values())
    lines.append(
        f"deliberate: bad records the simulator sent ({sum(tally.bad.values()):,}); outage: "
        "held back by a device during a simulated outage and sent on reconnect, after the "
        f"window closed; other: {other:,} {'(look at `hub dlq list`)' if other else ''}".rstrip()
    )
    return "\n".join(lines)


async def demonstrations_table(settings: Settings, since_s: float) -> str:
    """KPI windows judged during the demo, per demonstration, and at the sites demonstrations
    share (each judged on its own devices)."""
    conn = await connect(settings)
    try:
        since = datetime.fromtimestamp(since_s, UTC)
        rows = await conn.fetch(
            """SELECT r.demonstration_id, d.company, count(*) AS judged,
                      count(*) FILTER (WHERE r.status = 'pass') AS passed,
                      count(*) FILTER (WHERE r.status = 'fail') AS failed,
                      count(*) FILTER (WHERE r.status = 'insufficient_data') AS insufficient
                 FROM kpi_results r JOIN demonstrations d USING (demonstration_id)
                WHERE r.judged_at >= $1
                GROUP BY 1, 2 ORDER BY 1""",
            since,
        )
        shared = await conn.fetchrow(
            """WITH shared AS (SELECT site_id FROM devices GROUP BY site_id
                               HAVING count(DISTINCT demonstration_id) > 1)
               SELECT (SELECT count(*) FROM shared) AS sites,
                      (SELECT count(*) FROM site_last_seen l JOIN shared USING (site_id)
                        WHERE l.last_event_at >= $1) AS reporting,
                      (SELECT count(*) FROM kpi_results r JOIN shared USING (site_id)
                        WHERE r.judged_at >= $1) AS judged,
                      (SELECT count(DISTINCT (r.site_id, r.demonstration_id))
                         FROM kpi_results r JOIN shared USING (site_id)
                        WHERE r.judged_at >= $1) AS pairs""",
            since,
        )
    finally:
        await conn.close()
    lines = [
        "KPI windows judged during this run, per demonstration (the table above counts the "
        "last 24 h):",
        f"{'demonstration':14} {'company':22} {'KPI windows':>11} {'pass':>7} {'fail':>7} "
        f"{'no data':>7} {'compliance':>10}",
    ]
    for r in rows:
        decided = r["passed"] + r["failed"]
        compliance = f"{100 * r['passed'] / decided:.1f}%" if decided else "-"
        lines.append(
            f"{r['demonstration_id']:14} {r['company'][:22]:22} {r['judged']:11,} "
            f"{r['passed']:7,} {r['failed']:7,} {r['insufficient']:7,} {compliance:>10}"
        )
    assert shared is not None
    lines.append(
        f"shared sites: {shared['reporting']:,} of {shared['sites']:,} sites hosting several "
        f"demonstrations reported; {shared['judged']:,} KPI windows were judged there, for "
        f"{shared['pairs']:,} (site, demonstration) pairs, each on its own devices only"
    )
    return "\n".join(lines)


EVIDENCE_OF = "DEMO-001"


async def evidence_line(settings: Settings, demonstration_id: str) -> str:
    """How large a demonstration's evidence pack would be, were it to end now (nothing is
    ended or kept: the figure of a pack, for the demo)."""
    conn = await connect(settings)
    try:
        archive = await evidence.preview(conn, demonstration_id)
    finally:
        await conn.close()
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        sizes = {i.filename: i.file_size for i in opened.infolist()}
    return (
        f"evidence: {demonstration_id}'s pack, were it to end now, {len(archive):,} bytes "
        f"zipped ({sizes.get('aggregates.csv', 0):,} bytes of minute aggregates, "
        f"{sizes.get('kpi_results.csv', 0):,} of KPI results), signed (Ed25519)"
    )


async def overview_table(settings: Settings) -> str:
    conn = await connect(settings)
    try:
        rows = await conn.fetch("SELECT * FROM management_overview ORDER BY region, district")
    finally:
        await conn.close()
    lines = [
        f"{'region':8} {'district':12} {'sites':>6} {'reporting':>9} {'KPI pass':>9} "
        f"{'KPI fail':>9} {'compliance':>10}"
    ]
    for r in rows:
        compliance = "-" if r["compliance_pct"] is None else f"{r['compliance_pct']:.1f}%"
        lines.append(
            f"{r['region']:8} {district_label(r['region'], r['district']):12} {r['sites']:6,} "
            f"{r['sites_reporting']:9,} {r['kpi_pass']:9,} {r['kpi_fail']:9,} {compliance:>10}"
        )
    return "\n".join(lines)


async def demo_token(settings: Settings) -> str:
    """A fresh operator token for the demo's reader (the last demo's is withdrawn)."""
    from hub.tokens import add_token, revoke_token

    conn = await connect(settings)
    try:
        await revoke_token(conn, "demo-operator")
        return await add_token(conn, "operator", "demo-operator")
    finally:
        await conn.close()


def run_demo(settings: Settings, options: DemoOptions, say: Callable[[str], None]) -> None:
    from hub.registry.load import load_files
    from tooling.stack import Stack

    stack = Stack(settings)
    before = {s.name for s in stack.status() if s.state == "running"}
    stack.up(say)
    report = asyncio.run(load_files(settings))
    say(
        f"registry {report.digest} loaded ({report.counts['sites']:,} sites, "
        f"{report.counts['devices']:,} devices)"
    )
    demo = Demo(settings, options, say)
    try:
        demo.start_processes()
        started = time.time()
        accepted_before = total(demo.worker_samples(), "hub_records_accepted_total")
        dlq_start = asyncio.run(dlq_offsets(settings))
        sim = SimulationOptions(
            sites=0,
            rate_hz=options.rate_hz,
            duration_s=options.duration_s,
            bad_fraction=options.bad_fraction,
            seed=int(started),
        )
        say(
            f"simulating every registered site at {options.rate_hz:g} Hz for "
            f"{options.duration_s:.0f} s"
        )
        tally = asyncio.run(simulate(settings, sim, demo.progress))
        print(flush=True)
        demo.wait_for_last_windows(time.time())
        samples = demo.worker_samples()
        say(
            f"sent {tally.sent:,} records ({sum(tally.bad.values()):,} deliberately bad); "
            f"accepted {total(samples, 'hub_records_accepted_total'):,.0f}, "
            f"rejected {total(samples, 'hub_records_rejected_total'):,.0f} (see `hub dlq list`), "
            f"repeats {total(samples, 'hub_records_duplicate_total'):,.0f}"
        )
        accepted = total(samples, "hub_records_accepted_total") - accepted_before
        say(asyncio.run(accounting(settings, started, accepted)))
        say("")
        rejected = asyncio.run(rejected_by_this_hub(settings, dlq_start, demo.app_id))
        say(rejections_table(rejected, tally))
        say("")
        say("compliance per region and district (KPI windows of the last 24 h, each judged on")
        say("its own demonstration's devices):")
        say(asyncio.run(overview_table(settings)))
        say("")
        say(asyncio.run(demonstrations_table(settings, started)))
        say(asyncio.run(evidence_line(settings, EVIDENCE_OF)))
        say("")
        token = asyncio.run(demo_token(settings))
        say(f"web page   http://127.0.0.1:{settings.api_port}/#token={token}")
        say(f"API        http://127.0.0.1:{settings.api_port}/docs (Authorization: Bearer {token})")
        say(f"Prometheus http://{settings.prometheus_address}/")
    finally:
        if options.keep:
            say(
                f"--keep: the stack, workers (HUB_APP_ID={demo.app_id}) and API stay up; "
                "`hub stack down` and "
                f"kill {' '.join(str(p.proc.pid) for p in demo.processes)} to stop them"
            )
        else:
            demo.stop()
            asyncio.run(drop_hub_topics(settings, demo.app_id))
            started_here = [s.name for s in stack.status() if s.name not in before]
            if started_here:
                stack.down(say, started_here)
