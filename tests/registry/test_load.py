"""`hub registry load` on the real TimescaleDB: idempotent, exact on edits, refuses broken files.
A database of its own: a test whose rule were broken must not leave the shared one changed."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from hub.registry.files import DATA_DIR
from hub.settings import Settings
from tests.conftest import run_hub
from tests.support import scratch_database

TABLES = ("sites", "devices", "demonstrations", "kpis")


async def snapshot(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        keys = {
            "sites": "site_id",
            "devices": "device_id",
            "demonstrations": "demonstration_id",
            "kpis": "demonstration_id, kpi_id",
        }
        return {
            table: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY {key}")]
            for table, key in keys.items()
        } | {"state": [tuple(r) for r in await conn.fetch("SELECT * FROM registry_state")]}
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def loaded(stack: Settings) -> AsyncIterator[Settings]:
    async with scratch_database(stack) as url:
        yield replace(stack, database_url=url)


def load(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``hub registry load ARGS`` into the test's database."""
    return run_hub("registry", "load", *args, env={"HUB_DATABASE_URL": settings.database_url})


async def test_loading_twice_gives_the_same_tables(loaded: Settings) -> None:
    before = await snapshot(loaded)
    result = load(loaded)
    assert result.returncode == 0, result.stderr
    assert "unchanged" in result.stdout
    assert await snapshot(loaded) == before
    counts = {table: len(before[table]) for table in TABLES}
    gwangju = sum(1 for row in before["sites"] if row[1] == "gwangju")
    assert gwangju == 3375
    assert counts["demonstrations"] >= 10
    assert counts["devices"] >= counts["sites"]


async def test_an_edit_changes_exactly_that_row_and_reloading_restores_it(
    loaded: Settings, tmp_path: Path
) -> None:
    before = await snapshot(loaded)
    edited = tmp_path / "registry"
    shutil.copytree(DATA_DIR, edited)
    yaml_text = (edited / "demonstrations.yaml").read_text()
    (edited / "demonstrations.yaml").write_text(
        yaml_text.replace("threshold: 250", "threshold: 260", 1)
    )
    try:
        result = load(loaded, "--dir", str(edited))
        assert result.returncode == 0, result.stderr
        assert "kpis 27 (+0 ~1)" in result.stdout
        after = await snapshot(loaded)
        changed = [(a, b) for a, b in zip(before["kpis"], after["kpis"], strict=True) if a != b]
        assert len(changed) == 1
        assert changed[0][1][:2] == ("DEMO-001", "latency_p95")
        assert after["sites"] == before["sites"]
        assert after["state"][0][1] != before["state"][0][1]  # a new digest: workers reload
        # A new version of the KPI from now on; the one verdicts so far were judged by stays.
        conn = await asyncpg.connect(loaded.database_url)
        try:
            versions = await conn.fetch(
                "SELECT version, threshold, valid_until IS NULL AS open FROM kpi_versions "
                "WHERE demonstration_id = 'DEMO-001' AND kpi_id = 'latency_p95' ORDER BY version"
            )
        finally:
            await conn.close()
        assert [(v["threshold"], v["open"]) for v in versions][-2:] == [(250, False), (260, True)]
    finally:
        restored = load(loaded)
    assert restored.returncode == 0, restored.stderr
    now = await snapshot(loaded)
    assert {t: now[t] for t in TABLES} == {t: before[t] for t in TABLES}
    assert now["state"][0][1] == before["state"][0][1]  # the original digest again


async def test_a_broken_registry_changes_nothing(loaded: Settings, tmp_path: Path) -> None:
    before = await snapshot(loaded)
    broken = tmp_path / "registry"
    shutil.copytree(DATA_DIR, broken)
    devices = (broken / "devices.csv").read_text()
    (broken / "devices.csv").write_text(devices + "GJ-GHOST-0001-CAM1,GJ-GHOST-0001,DEMO-001,X\n")

    result = load(loaded, "--dir", str(broken))

    assert result.returncode == 1
    assert "devices.csv" in result.stderr
    assert "GJ-GHOST-0001-CAM1" in result.stderr
    assert "site 'GJ-GHOST-0001' is not in sites.csv" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert await snapshot(loaded) == before


async def test_a_device_never_moves_and_nothing_is_deleted(
    loaded: Settings, tmp_path: Path
) -> None:
    """Regenerating the files moved devices between companies and dropped others (with their
    keys): a move is refused, naming the device, and a row the files no longer hold is kept."""
    before = await snapshot(loaded)
    lines = (DATA_DIR / "devices.csv").read_text().splitlines(keepends=True)
    header, first, _left_out, *rest = lines
    device, site, demo, model = first.strip().split(",")
    other = "DEMO-002" if demo != "DEMO-002" else "DEMO-001"
    moved = tmp_path / "moved"
    shutil.copytree(DATA_DIR, moved)
    (moved / "devices.csv").write_text(
        header + f"{device},{site},{other},{model}\n" + "".join(rest)
    )

    refused = load(loaded, "--dir", str(moved))
    assert refused.returncode == 1
    assert f"devices: {device}: demonstration_id would change from {demo} to {other}" in (
        refused.stderr
    )
    assert "a device never moves" in refused.stderr
    assert await snapshot(loaded) == before

    dropped = tmp_path / "dropped"
    shutil.copytree(DATA_DIR, dropped)
    (dropped / "devices.csv").write_text(header + first + "".join(rest))  # one row left out
    kept = load(loaded, "--dir", str(dropped))
    assert kept.returncode == 0, kept.stderr
    assert "kept, not in the files (applied through hub demonstrations, say): devices 1" in (
        kept.stdout
    )
    now = await snapshot(loaded)
    assert {t: now[t] for t in TABLES} == {t: before[t] for t in TABLES}
    restored = load(loaded)
    assert restored.returncode == 0, restored.stderr
