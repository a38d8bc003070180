"""The programme on the real database, through `hub demonstrations` as an operator runs it: a new
demonstration over 50 sites (20 shared with others) applied, checked, approved, its KPI changed,
ended and archived, and nothing of anyone else's changes: devices, keys, KPIs, verdicts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from hub.registry.files import read_registry
from hub.settings import Settings
from tests.conftest import run_hub_async
from tests.support import scratch_database

NEW = "DEMO-914"


@pytest.fixture(scope="module")
async def programme(stack: Settings) -> AsyncIterator[dict[str, str]]:
    """A database of its own with the shipped registry, test keys, and verdicts of DEMO-001."""
    async with scratch_database(stack) as url:
        conn = await asyncpg.connect(url)
        try:
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            await conn.executemany(
                "INSERT INTO kpi_results (window_start, window_end, demonstration_id, site_id,"
                " kpi_id, value, threshold, status, samples) VALUES ($1, $2, 'DEMO-001', $3,"
                " 'latency_p95', $4, 250, $5, 30)",
                [
                    (
                        now - timedelta(minutes=5 * (k + 1)),
                        now - timedelta(minutes=5 * k),
                        site,
                        200.0 + k,
                        "pass",
                    )
                    for k in range(6)
                    for site in ("GJ-DONG-0001", "GJ-DONG-0002")
                ],
            )
        finally:
            await conn.close()
        yield {"HUB_DATABASE_URL": url, "HUB_ACTOR": "ops-kim"}


async def others(env: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Everything of every demonstration but the new one."""
    conn = await asyncpg.connect(env["HUB_DATABASE_URL"])
    try:
        queries = {
            "demonstrations": "SELECT demonstration_id, company, title, starts_on, ends_on, "
            "status FROM demonstrations WHERE demonstration_id <> $1 ORDER BY 1",
            "devices": "SELECT * FROM devices WHERE demonstration_id <> $1 ORDER BY device_id",
            "keys": "SELECT k.device_id, k.secret, k.issued_at, k.revoked_at FROM device_keys k "
            "JOIN devices d USING (device_id) WHERE d.demonstration_id <> $1 ORDER BY 1, 3",
            "kpis": "SELECT * FROM kpis WHERE demonstration_id <> $1 ORDER BY 1, 2",
            "versions": "SELECT * FROM kpi_versions WHERE demonstration_id <> $1 ORDER BY 1, 2, 3",
            "results": "SELECT * FROM kpi_results WHERE demonstration_id <> $1 "
            "ORDER BY demonstration_id, kpi_id, site_id, window_start",
        }
        return {
            name: [tuple(r) for r in await conn.fetch(query, NEW)]
            for name, query in queries.items()
        }
    finally:
        await conn.close()


def application_file(tmp_path: Path) -> Path:
    registry = read_registry()
    hosted: dict[str, set[str]] = {}
    for device in registry.devices:
        hosted.setdefault(device.site_id, set()).add(device.demonstration_id)
    shared = sorted(s for s, demos in hosted.items() if len(demos) >= 2)[:20]
    alone = sorted(s for s, demos in hosted.items() if len(demos) == 1)[:30]
    document = {
        "demonstration_id": NEW,
        "company": "SchoolSafe",
        "title": "School-zone cameras",
        "technology": "computer vision",
        "starts_on": (datetime.now(UTC) - timedelta(days=1)).date().isoformat(),
        "ends_on": (datetime.now(UTC) + timedelta(days=180)).date().isoformat(),
        "metrics": ["online"],
        "kpis": [
            {
                "kpi_id": "latency_p95",
                "title": "95th percentile latency",
                "metric": "inference_latency_ms",
                "aggregation": "p95",
                "op": "<=",
                "threshold": 250,
                "window": "5m",
                "min_samples": 20,
            }
        ],
        "sites": [{"site_id": s, "count": 2, "prefix": "SZC"} for s in shared + alone],
    }
    path = tmp_path / "application.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def hub(env: dict[str, str], *args: str) -> str:
    result = await run_hub_async(*args, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


async def test_a_new_demonstration_changes_nothing_of_anyone_else(
    programme: dict[str, str], tmp_path: Path
) -> None:
    env = programme
    before = await others(env)
    path = application_file(tmp_path)

    dry = await hub(env, "demonstrations", "apply", str(path), "--dry-run")
    assert "100 devices at 50 sites" in dry
    assert "dry run: nothing changed" in dry
    assert NEW not in await hub(env, "demonstrations", "list")

    await hub(env, "demonstrations", "apply", str(path))
    listed = await hub(env, "demonstrations", "list")
    assert f"{NEW}       applied" in listed
    again = await run_hub_async("demonstrations", "apply", str(path), env=env)
    assert again.returncode == 1
    assert f"demonstration_id '{NEW}': exists already" in again.stderr

    approved = await hub(env, "demonstrations", "approve", NEW)
    assert "100 devices registered" in approved
    assert f"{NEW}       active" in await hub(env, "demonstrations", "list")

    changed = await hub(
        env,
        "demonstrations",
        "change-kpi",
        NEW,
        "latency_p95",
        "--threshold",
        "200",
        "--reason",
        "the vendor's new model",
    )
    assert "version 2, threshold 200" in changed
    reloaded = await hub(env, "registry", "load")  # the shipped files again: the new one stays
    assert "kept, not in the files" in reloaded

    ended = await hub(env, "demonstrations", "end", NEW)
    assert ended.startswith(f"ended: {NEW} at ")
    await hub(env, "demonstrations", "archive", NEW)
    shown = json.loads(await hub(env, "demonstrations", "show", NEW))
    assert shown["status"] == "archived"
    assert shown["devices"] == 100
    assert [(v["version"], v["threshold"]) for v in shown["kpi_versions"]] == [(1, 250), (2, 200)]

    assert await others(env) == before  # nothing of anyone else changed

    trail = await hub(env, "audit", "list")
    for action in (
        "demonstration.apply",
        "demonstration.approve",
        "kpi.change",
        "demonstration.end",
        "demonstration.archive",
    ):
        assert any(
            action in line and "ops-kim" in line and NEW in line for line in trail.splitlines()
        ), (action, trail)


async def test_a_kpi_change_leaves_past_verdicts_as_they_were(programme: dict[str, str]) -> None:
    """DEMO-001's threshold changes from now: the windows judged before keep version 1 and
    their threshold, the scorecard shows both versions with their periods and verdicts."""
    env = programme
    conn = await asyncpg.connect(env["HUB_DATABASE_URL"])
    try:
        query = (
            "SELECT window_start, threshold, status, kpi_version FROM kpi_results "
            "WHERE demonstration_id = 'DEMO-001' AND kpi_id = 'latency_p95' ORDER BY 1"
        )
        before = [tuple(r) for r in await conn.fetch(query)]
        await hub(
            env,
            "demonstrations",
            "change-kpi",
            "DEMO-001",
            "latency_p95",
            "--threshold",
            "150",
            "--reason",
            "procurement asks for 150 ms",
        )
        after = [tuple(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()
    assert after == before
    assert {(t, v) for _, t, _, v in after} == {(250, 1)}
    card = json.loads(await hub(env, "report", "DEMO-001", "--format", "json"))
    kpi = next(k for k in card["kpis"] if k["kpi_id"] == "latency_p95")
    assert kpi["threshold"] == 150
    assert [(v["version"], v["threshold"], v["windows_judged"]) for v in kpi["versions"]] == [
        (1, 250, 12),
        (2, 150, 0),
    ]
    assert kpi["versions"][0]["valid_until"] == kpi["versions"][1]["valid_from"]
    past = await run_hub_async(
        "demonstrations",
        "change-kpi",
        "DEMO-001",
        "latency_p95",
        "--threshold",
        "100",
        "--reason",
        "r",
        "--from",
        "2026-01-01T00:00:00+09:00",
        env=env,
    )
    assert past.returncode == 1
    assert "in the past (verdicts given keep their version)" in past.stderr


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
async def test_the_audit_trail_is_append_only(programme: dict[str, str], statement: str) -> None:
    """The hub's own login (the tables' owner) cannot rewrite or erase the trail."""
    code = f"trail{len(statement)}"  # a region of its own, so that the trail is not empty
    await hub(programme, "regions", "add", code, "A region added for the trail")
    conn = await asyncpg.connect(programme["HUB_DATABASE_URL"])
    try:
        before = [tuple(r) for r in await conn.fetch("SELECT * FROM audit_log ORDER BY id")]
        with pytest.raises(asyncpg.RaiseError, match="audit_log is append-only"):
            await conn.execute(statement)
        after = [tuple(r) for r in await conn.fetch("SELECT * FROM audit_log ORDER BY id")]
    finally:
        await conn.close()
    assert before
    assert after == before
