"""``hub demo``: the main job end to end on the local stack.

Stack up, registry loaded, two workers and the API started, every registered site of Gwangju and
South Jeolla simulated at 1 Hz with a live progress line, the last windows closed, the accounting
checked against TimescaleDB, and the management overview printed. What the demo started is
stopped at the end unless ``--keep``.
"""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from hub.api.page import district_label
from hub.db import connect
from hub.localrun import Process, drop_hub_topics, fresh_hub, scrape, total, wait_for
from hub.settings import Settings
from hub.simulate import SimulationOptions, simulate
from hub.simulate.fleet import Tally

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
    from hub.stack import Stack

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
        say(asyncio.run(overview_table(settings)))
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
