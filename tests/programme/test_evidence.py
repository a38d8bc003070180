"""Evidence that outlives retention, on the real database and the real commands: minutes older
than 14 days kept as evidence when retention drops them, the pack frozen at the end with the
whole period in it, checked with the hub's public key, and a tampered pack refused naming the
file that does not match."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from hub.settings import Settings
from tests.conftest import run_hub_async
from tests.support import scratch_database

DEMO = "DEMO-005"  # ParkEye, running since February: its first months are past retention


async def hub(env: dict[str, str], *args: str) -> str:
    result = await run_hub_async(*args, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def rewritten(archive: bytes, name: str, change: bytes) -> bytes:
    """The archive with ``name``'s content replaced (what someone editing a figure would do)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            target.writestr(item, change if item.filename == name else source.read(item))
    return out.getvalue()


async def test_an_ended_demonstrations_pack_holds_its_whole_period_and_detects_tampering(
    stack: Settings, tmp_path: Path
) -> None:
    async with scratch_database(stack) as url:
        env = {"HUB_DATABASE_URL": url}
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        old, recent = now - timedelta(days=30), now - timedelta(hours=2)
        conn = await asyncpg.connect(url)
        try:
            await conn.executemany(
                "INSERT INTO site_aggregates (bucket, site_id, demonstration_id, metric, count,"
                " sum, min, max) VALUES ($1, 'GJ-BUK-0002', $2, 'online', 60, 60, 1, 1)",
                [(old + timedelta(minutes=i), DEMO) for i in range(5)]
                + [(recent + timedelta(minutes=i), DEMO) for i in range(3)],
            )
        finally:
            await conn.close()
        # Retention drops the 30-day-old chunk: its minutes stay, as evidence.
        upkept = await hub(env, "upkeep")
        assert "chunks dropped: site_aggregates 1" in upkept
        assert "minutes kept as evidence 5" in upkept

        running = await run_hub_async(
            "report", DEMO, "--evidence", str(tmp_path / "x.zip"), env=env
        )
        assert running.returncode == 1
        assert "its evidence is frozen when it ends" in running.stderr

        ended = await hub(env, "demonstrations", "end", DEMO)
        assert "evidence frozen" in ended
        pack = tmp_path / "pack.zip"
        await hub(env, "report", DEMO, "--evidence", str(pack))
        archive = pack.read_bytes()
        with zipfile.ZipFile(pack) as opened:
            names = set(opened.namelist())
            minutes = list(csv.DictReader(io.StringIO(opened.read("aggregates.csv").decode())))
            registry = json.loads(opened.read("registry.json"))
        assert names == {
            "scorecard.json",
            "kpi_versions.csv",
            "kpi_results.csv",
            "aggregates.csv",
            "registry.json",
            "manifest.json",
            "manifest.sig",
        }
        assert len(minutes) == 8  # the 30-day-old ones (dropped from site_aggregates) too
        assert registry["demonstration"]["status"] == "ended"
        # The same bytes every time it is asked for.
        again = tmp_path / "again.zip"
        await hub(env, "report", DEMO, "--evidence", str(again))
        assert again.read_bytes() == archive

        key = tmp_path / "hub.pem"
        conn = await asyncpg.connect(url)
        try:
            from hub import evidence

            key.write_text(evidence.public_pem((await evidence.signing_key(conn)).public_key()))
        finally:
            await conn.close()
        checked = await hub(env, "report", "--verify", str(pack), "--public-key", str(key))
        assert "sound: 5 files match the signed manifest" in checked

        tampered = tmp_path / "tampered.zip"
        assert minutes[0]["count"] == "60"
        with zipfile.ZipFile(pack) as opened:  # one minute's count changed, 60 -> 61
            text = opened.read("aggregates.csv").decode().replace(",60,", ",61,", 1)
        tampered.write_bytes(rewritten(archive, "aggregates.csv", text.encode()))
        refused = await run_hub_async(
            "report", "--verify", str(tampered), "--public-key", str(key), env=env
        )
        assert refused.returncode == 1
        assert "aggregates.csv: its SHA-256 does not match the manifest" in refused.stdout

        forged = tmp_path / "forged.zip"
        with zipfile.ZipFile(pack) as opened:
            manifest = json.loads(opened.read("manifest.json"))
        manifest["files"]["aggregates.csv"] = "0" * 64
        forged.write_bytes(rewritten(archive, "manifest.json", json.dumps(manifest).encode()))
        refused = await run_hub_async(
            "report", "--verify", str(forged), "--public-key", str(key), env=env
        )
        assert refused.returncode == 1
        assert "manifest.json: its signature does not match" in refused.stdout
