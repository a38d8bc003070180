"""Two companies at one site, on the real broker and database: the devices of one send values
that fail the KPI both demonstrations judge, the other's pass. Each demonstration's windows,
verdicts and alerts hold its own devices only, and each company's token reads only its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.settings import Settings
from tests.api.conftest import issue_token
from tests.conftest import TEST_DEMO, registry_dir_with_test_demo, run_hub_async, t01_sites
from tests.hostile.conftest import publish
from tests.isolated import IsolatedHub, start_hub, stop_hub
from tests.support import eventually, fetch, partition_of, record, scratch_database

RIVAL = "DEMO-T02"
RECORDS = 10  # per device and site, within one minute


def with_rival(directory: Path, sites: list[str]) -> Path:
    """DEMO-T01's registry plus DEMO-T02 (another company) at ``sites``, judging the same KPI."""
    registry_dir_with_test_demo(directory)
    with (directory / "demonstrations.yaml").open("a") as out:
        out.write(
            f"- demonstration_id: {RIVAL}\n"
            "  company: Rival Co\n"
            "  title: A competitor at the same sites\n"
            "  technology: test\n"
            "  starts_on: '2026-01-01'\n"
            "  ends_on: '2027-12-31'\n"
            "  metrics: []\n"
            "  kpis:\n"
            "  - {kpi_id: latency_p50, title: t, metric: test_latency_ms, aggregation: p50,\n"
            "     op: '<=', threshold: 120, window: 1m, min_samples: 5}\n"
        )
    with (directory / "devices.csv").open("a") as out:
        for site in sites:
            out.write(f"{site}-RIV1,{site},{RIVAL},test\n")
    return directory


@dataclass
class Shared:
    hub: IsolatedHub
    sites: list[str]
    minute_s: int
    env: dict[str, str]


@pytest.fixture(scope="module")
async def shared(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Shared]:
    partitions = stack.partitions
    sites = [
        min(s for s in t01_sites(partitions) if partition_of(s, partitions) == p) for p in (0, 5)
    ]
    registry = with_rival(tmp_path_factory.mktemp("shared-registry"), sites)
    async with scratch_database(stack, registry) as url:
        hub = await start_hub(stack, url, tmp_path_factory.mktemp("shared-logs"), None)
        try:
            worker = hub.worker()
            await asyncio.to_thread(worker.wait_ready)
            # The minute just past, closed by a later record.
            minute = int(time.time()) // 60 * 60 - 60
            records = []
            for site in sites:
                for i in range(RECORDS):
                    ts = (minute + 5 * i + 1) * 1000
                    ours = {"test_latency_ms": 50.0 + i, "test_online": 1.0}
                    theirs = {"test_latency_ms": 500.0 + i}
                    records.append((site, record(site, ts, ours)))
                    records.append((site, record(site, ts, theirs, device=f"{site}-RIV1")))
            # Then one record a site past the minute's end plus the 5 s lateness (on a metric of
            # its own): the minute closes now, not when the idle rule's clock gets there.
            close = (minute + 60 + 6) * 1000
            records += [(site, record(site, close, {"test_push": 1.0})) for site in sites]
            assert await publish(stack, records) == [None] * len(records)

            async def judged() -> bool | None:
                rows = await fetch(
                    url,
                    "SELECT count(*) AS n FROM kpi_results WHERE window_start = to_timestamp($1) "
                    "AND kpi_id = 'latency_p50' AND site_id = ANY($2::text[])",
                    float(minute),
                    sites,
                )
                return True if rows[0]["n"] == 2 * len(sites) else None

            try:
                await eventually(judged, "both demonstrations' verdicts at both sites", 120)
            except AssertionError:
                seen = {k: v for k, v in worker.metrics().items() if "records_" in k}
                rows = await fetch(url, "SELECT * FROM kpi_results ORDER BY window_start")
                raise AssertionError(f"worker counted {seen}; kpi_results {rows[:10]}") from None
            yield Shared(hub, sites, minute, {"HUB_DATABASE_URL": url})
        finally:
            await stop_hub(hub)


async def test_each_demonstration_counts_only_its_own_devices(shared: Shared) -> None:
    rows = await fetch(
        shared.hub.database_url,
        "SELECT site_id, demonstration_id, metric, count, p50 FROM site_aggregates "
        "WHERE bucket = to_timestamp($1) AND site_id = ANY($2::text[]) "
        "ORDER BY site_id, demonstration_id, metric",
        float(shared.minute_s),
        shared.sites,
    )
    got = {(r["site_id"], r["demonstration_id"], r["metric"]): r for r in rows}
    for site in shared.sites:
        assert set(k for k in got if k[0] == site) == {
            (site, TEST_DEMO, "test_latency_ms"),
            (site, TEST_DEMO, "test_online"),
            (site, RIVAL, "test_latency_ms"),
        }
        ours = got[(site, TEST_DEMO, "test_latency_ms")]
        theirs = got[(site, RIVAL, "test_latency_ms")]
        assert (ours["count"], theirs["count"]) == (RECORDS, RECORDS)
        assert 50 <= ours["p50"] < 60
        assert 500 <= theirs["p50"] < 510


async def test_each_demonstration_is_judged_on_its_own_rows(shared: Shared) -> None:
    verdicts = await fetch(
        shared.hub.database_url,
        "SELECT site_id, demonstration_id, status, value, samples FROM kpi_results "
        "WHERE window_start = to_timestamp($1) AND kpi_id = 'latency_p50'",
        float(shared.minute_s),
    )
    by = {(v["site_id"], v["demonstration_id"]): v for v in verdicts}
    for site in shared.sites:
        assert (by[(site, TEST_DEMO)]["status"], by[(site, RIVAL)]["status"]) == ("pass", "fail")
        assert by[(site, TEST_DEMO)]["samples"] == by[(site, RIVAL)]["samples"] == RECORDS
        assert by[(site, TEST_DEMO)]["value"] < 60 <= 500 <= by[(site, RIVAL)]["value"]
    breaches = await fetch(
        shared.hub.database_url,
        "SELECT site_id, demonstration_id FROM kpi_alerts WHERE transition = 'breach' "
        "AND kpi_id = 'latency_p50' AND site_id = ANY($1::text[])",
        shared.sites,
    )
    assert sorted((b["site_id"], b["demonstration_id"]) for b in breaches) == sorted(
        (site, RIVAL) for site in shared.sites
    )


async def test_each_company_reads_only_its_own_demonstration(shared: Shared) -> None:
    ours = await issue_token(shared.env, "company:Test Co", "test-co")
    theirs = await issue_token(shared.env, "company:Rival Co", "rival-co")
    report = await run_hub_async(
        "report", TEST_DEMO, "--format", "json", "--token", ours, env=shared.env
    )
    assert report.returncode == 0, report.stderr
    assert RIVAL not in report.stdout
    assert "Rival Co" not in report.stdout
    refused = await run_hub_async("report", RIVAL, "--token", ours, env=shared.env)
    assert refused.returncode == 1
    own = await run_hub_async(
        "report", RIVAL, "--format", "json", "--token", theirs, env=shared.env
    )
    assert own.returncode == 0, own.stderr
    assert TEST_DEMO not in own.stdout
    assert "Test Co" not in own.stdout
