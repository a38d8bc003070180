"""`hub simulate` on the real broker: every record it says it sent is on the topic, the good ones
valid and registered, the bad ones failing for the reason it announced."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from hub import principals, telemetry
from hub.registry.load import ensure_loaded
from hub.settings import Settings
from hub.telemetry import Rejected
from hub.topics import TELEMETRY
from hub.topicsetup import ensure_topics
from streams.database import load_snapshot
from streams.intake import admit
from streams.processor import Record
from tests.conftest import run_hub_async
from tests.support import scratch_database


async def read_new_records(
    consumer: AIOKafkaConsumer, start: dict[TopicPartition, int], end: dict[TopicPartition, int]
) -> list[Record]:
    """Everything appended to the topic between two sets of end offsets."""
    for tp in end:
        consumer.seek(tp, start.get(tp, 0))
    want = sum(end[tp] - start.get(tp, 0) for tp in end)
    records: list[Record] = []
    deadline = time.monotonic() + 60
    while len(records) < want:
        assert time.monotonic() < deadline, f"read {len(records)} of {want}"
        batch = await consumer.getmany(timeout_ms=2000)
        for tp, messages in batch.items():
            records.extend(
                Record(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp, m.headers)
                for m in messages
                if m.offset < end[tp]
            )
    return records


async def test_simulated_records_all_validate_and_bad_ones_fail_as_announced(
    loaded_registry: Settings,
) -> None:
    settings = loaded_registry
    await ensure_topics(
        settings.kafka_bootstrap, settings.partitions, **principals.security(settings)
    )
    consumer = AIOKafkaConsumer(**principals.client(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(TELEMETRY, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        before = await consumer.end_offsets(tps)
        result = await run_hub_async(
            "simulate",
            "--sites",
            "40",
            "--rate",
            "5",
            "--duration",
            "3",
            "--bad-fraction",
            "0.1",
            "--json",
        )
        assert result.returncode == 0, result.stderr
        after = await consumer.end_offsets(tps)
        records = await read_new_records(consumer, before, after)
    finally:
        await consumer.stop()
    tally = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(records) == tally["sent"]

    conn = await asyncpg.connect(settings.database_url)
    try:
        snapshot = await load_snapshot(conn)  # what the database holds now, device keys too
    finally:
        await conn.close()
    good: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    for record in records:
        try:
            admitted = admit(record, record.timestamp, snapshot, settings.partitions)
        except Rejected as error:
            bad[str(error.reason)] += 1
        else:
            good[admitted.event.kind] += 1
    assert dict(bad) == tally["bad"]
    assert dict(good) == {k: v for k, v in tally["by_kind"].items() if v}
    assert sum(bad.values()) > 0
    assert set(bad) <= {str(r) for r in telemetry.Reason}


async def test_simulating_against_an_empty_database_names_the_missing_step(
    stack: Settings,
) -> None:
    async with scratch_database(stack, load=False) as url:
        result = await run_hub_async(
            "simulate", "--sites", "1", "--duration", "1", env={"HUB_DATABASE_URL": url}
        )
    assert result.returncode != 0
    assert "no registry tables: run `hub registry load` first" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_benchmark_loads_the_shipped_registry_only_into_an_empty_database(
    stack: Settings,
) -> None:
    async with scratch_database(stack, load=False) as url:
        settings = dataclasses.replace(stack, database_url=url)
        first = await ensure_loaded(settings)
        assert first is not None
        assert first.counts["sites"] == 3705
        conn = await asyncpg.connect(url)
        try:
            removed = await conn.fetchval(
                "DELETE FROM devices WHERE device_id = (SELECT min(device_id) FROM devices) "
                "RETURNING device_id"
            )
            assert await ensure_loaded(settings) is None  # a loaded registry is left as it is
            back = await conn.fetchval("SELECT count(*) FROM devices WHERE device_id = $1", removed)
        finally:
            await conn.close()
        assert back == 0
