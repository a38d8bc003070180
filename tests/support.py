"""Helpers shared by the tests that cross the real broker and database."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from hub import principals, signing, telemetry
from hub.settings import Settings
from tests.conftest import run_hub_async

T = TypeVar("T")


def partition_of(site_id: str, partitions: int) -> int:
    """Where Kafka's default partitioner puts a record keyed by ``site_id``."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(site_id.encode(), every, every))


def test_key(device_id: str) -> bytes:
    """The signing key tests give a device: derived from its id, the same in every database a
    test loads (`install_test_keys` puts it there)."""
    return hashlib.sha256(b"hub-test-key|" + device_id.encode()).digest()


async def install_test_keys(database_url: str) -> None:
    """Every registered device of the database gets its test key (as `hub access add-device`
    would issue one)."""
    conn = await asyncpg.connect(database_url)
    try:
        devices = [r["device_id"] for r in await conn.fetch("SELECT device_id FROM devices")]
        # A device whose current key is not its test key gets it (a rotation); one that
        # holds it keeps it, with its history.
        pairs = [(d, test_key(d)) for d in devices]
        async with conn.transaction():
            await conn.executemany(
                "UPDATE device_keys SET revoked_at = now() "
                "WHERE device_id = $1 AND revoked_at IS NULL AND secret <> $2",
                pairs,
            )
            await conn.executemany(
                "INSERT INTO device_keys (device_id, secret) VALUES ($1, $2) "
                "ON CONFLICT (device_id) WHERE revoked_at IS NULL DO NOTHING",
                pairs,
            )
    finally:
        await conn.close()


async def remove_demonstration(database_url: str, demonstration_id: str) -> None:
    """Every row of a test demonstration, gone: `hub registry load` never deletes (nothing is
    deleted by cascade), so the suite removes what it added itself, and `make demo` after
    `make test` reports the programme's demonstrations only."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            for table in (
                "kpi_alerts",
                "kpi_results",
                "site_aggregates",
                "site_aggregates_hourly",
                "evidence_aggregates",
                "evidence_packs",
            ):
                await conn.execute(
                    f"DELETE FROM {table} WHERE demonstration_id = $1", demonstration_id
                )
            await conn.execute(
                "DELETE FROM device_keys WHERE device_id IN "
                "(SELECT device_id FROM devices WHERE demonstration_id = $1)",
                demonstration_id,
            )
            for table in ("devices", "kpi_versions", "kpis", "demonstrations"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE demonstration_id = $1", demonstration_id
                )
            await conn.execute("UPDATE registry_state SET changed_at = now()")
    finally:
        await conn.close()


async def send_all(
    settings: Settings, topic: str, items: list[tuple[str, bytes]], sign: bool = False
) -> None:
    """Each (key, value) to ``topic`` in order, acknowledged by every replica; with ``sign``,
    signed by the device each value names (``signed``)."""
    producer = AIOKafkaProducer(**principals.client(settings), acks="all")
    await producer.start()
    try:
        for key, value in items:
            headers = signed(value) if sign else None
            await producer.send_and_wait(topic, value=value, key=key.encode(), headers=headers)
    finally:
        await producer.stop()


def signed(value: bytes) -> list[tuple[str, bytes]]:
    """The headers of ``value`` as its device signs it (no signature if it names no device)."""
    try:
        device = json.loads(value).get("device_id")
    except (ValueError, AttributeError):
        return []
    return signing.headers(test_key(device), value) if isinstance(device, str) else []


def record(
    site: str,
    ts_ms: int,
    metrics: dict[str, float],
    event_id: str | None = None,
    device: str | None = None,
    kind: str = "measurement",
) -> bytes:
    """A telemetry v1 record from the site's test device (send it with ``signed(value)``)."""
    return telemetry.encode(
        event_id=event_id or str(uuid.uuid4()),
        device_id=device or f"{site}-TST1",
        site_id=site,
        ts=datetime.fromtimestamp(ts_ms / 1000, UTC),
        kind=kind,
        metrics=metrics,
    )


async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 90
) -> T:
    """Poll ``check`` until it returns something, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.5)


async def end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**principals.client(settings))
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def committed_offsets(
    settings: Settings, group: str, topic: str
) -> dict[TopicPartition, int]:
    """What consumer group ``group`` has committed on ``topic``: where a restart resumes, and
    what operators see as its lag."""
    consumer = AIOKafkaConsumer(**principals.client(settings), group_id=group)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return {tp: await consumer.committed(tp) or 0 for tp in tps}
    finally:
        await consumer.stop()


@asynccontextmanager
async def scratch_topic(settings: Settings, name: str, partitions: int) -> AsyncIterator[str]:
    """A topic of its own for one test (``name`` plus a random suffix), deleted after it."""
    topic = f"{name}.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**principals.client(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
        try:
            yield topic
        finally:
            await admin.delete_topics([topic])
    finally:
        await admin.close()


async def read_since(settings: Settings, start: dict[TopicPartition, int]) -> list[Any]:
    """Records appended to a topic since ``start``, as parsed JSON."""
    consumer = AIOKafkaConsumer(
        **principals.client(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = list(start)
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, start[tp])
        out: list[Any] = []
        want = sum(end[tp] - start[tp] for tp in tps)
        deadline = time.monotonic() + 30
        while len(out) < want and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend(json.loads(m.value) for m in messages)
        return out
    finally:
        await consumer.stop()


async def read_committed_since(
    options: dict[str, Any], start: dict[TopicPartition, int]
) -> list[Any]:
    """Committed records (parsed JSON) from ``start`` to the end offsets as of the call, read
    with the client ``options`` (the hub's login or a partner's). Read up to each partition's end
    position, not a count of records: transaction markers take offsets too."""
    consumer = AIOKafkaConsumer(
        **options, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = list(start)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp])
        end = await consumer.end_offsets(tps)
        out: list[Any] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend(json.loads(m.value) for m in messages)
        return out
    finally:
        await consumer.stop()


async def fetch(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_database(
    stack: Settings, registry_dir: Path | None = None, *, load: bool = True
) -> AsyncIterator[str]:
    """A fresh database with the schema and a registry (the repository's, or ``registry_dir``),
    or with nothing at all unless ``load``; dropped afterwards. Yields its URL."""
    name = f"hub_test_{uuid.uuid4().hex[:10]}"
    target = stack.database
    admin = await asyncpg.connect(stack.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"postgresql://{target.user}:{target.password}@{target.host}:{target.port}/{name}"
    try:
        if load:
            args = ["registry", "load", *(["--dir", str(registry_dir)] if registry_dir else [])]
            loaded = await run_hub_async(*args, env={"HUB_DATABASE_URL": url})
            assert loaded.returncode == 0, loaded.stderr
            await install_test_keys(url)
        yield url
    finally:
        await drop_database(stack, name)


async def drop_database(stack: Settings, name: str, timeout_s: float = 60) -> None:
    """Drop a scratch database, waiting out an autovacuum worker in it: ``WITH (FORCE)`` ends
    the hub role's sessions, but only a superuser or ``pg_signal_backend`` may end autovacuum's,
    and the hub role is neither (a fresh-clone CI run failed on it). Autovacuum ends on its own."""

    async def dropped() -> bool | None:
        admin = await asyncpg.connect(stack.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
            return None
        finally:
            await admin.close()
        return True

    await eventually(dropped, f"database {name} to be dropped", timeout_s)
