"""Regions are data: a third province joins with `hub regions add`, no release. Its site is
registered, a partner and a token of it are issued, and its results flow to its partner topics
only, read by its partner over SASL_SSL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from hub import principals, topics
from hub.settings import Settings
from tests.conftest import registry_dir_with_test_demo, run_hub_async
from tests.hostile.conftest import publish
from tests.isolated import start_hub, stop_hub
from tests.support import end_offsets, install_test_keys, read_since, record, scratch_database

SITE = "JB-JEONJU-0001"


async def hub(env: dict[str, str], *args: str) -> str:
    result = await run_hub_async(*args, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


async def read_from(
    options: dict[str, object], topic: str, start: dict[TopicPartition, int], want: str
) -> list[dict[str, object]]:
    """Messages of ``topic`` from ``start``, until one names site ``want`` (or 60 s)."""
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = list(start)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp])
        got: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(m["site_id"] == want for m in got):
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                got.extend(json.loads(m.value) for m in messages)
        return got
    finally:
        await consumer.stop()


def starts(offsets: dict[TopicPartition, int], topic: str) -> dict[TopicPartition, int]:
    return {TopicPartition(topic, tp.partition): o for tp, o in offsets.items()}


async def test_a_third_region_joins_with_no_release(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    async with scratch_database(stack, load=False) as url:
        env = {"HUB_DATABASE_URL": url}
        webhook = ("notify", "add-webhook", "jb", "https://jb.example/hook")
        early = await run_hub_async(*webhook, "--scope", "partner:jeonbuk", env=env)
        assert early.returncode != 0
        assert "region 'jeonbuk' is not a region of the hub" in early.stderr
        added = await hub(env, "regions", "add", "jeonbuk", "North Jeolla Province")
        assert "scope partner:jeonbuk" in await hub(env, *webhook, "--scope", "partner:jeonbuk")
        assert "region jeonbuk (North Jeolla Province) added" in added
        directory = registry_dir_with_test_demo(tmp_path_factory.mktemp("jeonbuk-registry"))
        with (directory / "sites.csv").open("a") as out:
            out.write(f"{SITE},jeonbuk,jeonju,school_zone,Jeonju school zone,35.82,127.15\n")
        with (directory / "devices.csv").open("a") as out:
            out.write(f"{SITE}-TST1,{SITE},DEMO-T01,test\n")
        await hub(env, "registry", "load", "--dir", str(directory))
        await install_test_keys(url)
        name = f"jb{uuid.uuid4().hex[:6]}"
        issued = await hub(env, "access", "add-partner", "jeonbuk", name)
        fields = dict(line.split(None, 1) for line in issued.splitlines() if line[:1].isalpha())
        token = await hub(env, "access", "add-token", "partner:jeonbuk", f"{name}-office")
        assert "role       partner:jeonbuk" in token

        jeonbuk = topics.partner_topic("jeonbuk", "kpi-results")
        gwangju = topics.partner_topic("gwangju", "kpi-results")
        before = await end_offsets(stack, jeonbuk)
        gwangju_before = await end_offsets(stack, gwangju)
        logs = tmp_path_factory.mktemp("jeonbuk-logs")
        isolated = await start_hub(stack, url, logs, None)
        try:
            worker = isolated.worker()
            await asyncio.to_thread(worker.wait_ready)
            # The minute just past, then a record past its end and the lateness: it closes.
            minute = int(time.time()) // 60 * 60 - 60
            values = [
                record(SITE, (minute + 5 * i + 1) * 1000, {"test_online": 1.0}) for i in range(5)
            ]
            values.append(record(SITE, (minute + 66) * 1000, {"test_push": 1.0}))
            assert await publish(stack, [(SITE, v) for v in values]) == [None] * 6
            partner = {
                "bootstrap_servers": stack.kafka_sasl_bootstrap,
                "security_protocol": "SASL_SSL",
                "ssl_context": principals.device_tls(stack),
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": fields["username"],
                "sasl_plain_password": fields["password"],
                "group_id": f"{name}.results",
            }
            results = await read_from(partner, jeonbuk, starts(before, jeonbuk), SITE)
        finally:
            await stop_hub(isolated)
        mine = [m for m in results if m["site_id"] == SITE]
        assert mine, results
        assert {m["region"] for m in results} == {"jeonbuk"}
        assert {m["demonstration_id"] for m in mine} == {"DEMO-T01"}
        elsewhere = await read_since(stack, starts(gwangju_before, gwangju))
        assert not [m for m in elsewhere if m["site_id"] == SITE]
        conn = await asyncpg.connect(url)
        try:
            view = await conn.fetch(
                "SELECT sites FROM management_overview WHERE region = 'jeonbuk'"
            )
        finally:
            await conn.close()
        assert [r["sites"] for r in view] == [1]
