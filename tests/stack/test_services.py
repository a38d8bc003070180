"""The stack's services do their real job: Kafka carries records, TimescaleDB buckets time."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hub import principals
from hub.settings import Settings
from tests.support import scratch_topic


async def test_kafka_round_trip_keeps_every_record_and_its_key(stack: Settings) -> None:
    async with scratch_topic(stack, "test.roundtrip", 3) as topic:
        producer = AIOKafkaProducer(**principals.client(stack), acks="all")
        await producer.start()
        try:
            sent = {(f"site-{i % 7}".encode(), f"value-{i}".encode()) for i in range(200)}
            for key, value in sent:
                await producer.send(topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            **principals.client(stack),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        received: set[tuple[bytes, bytes]] = set()
        partitions_by_key: dict[bytes, set[int]] = {}
        try:
            while len(received) < len(sent):
                batch = await consumer.getmany(timeout_ms=10_000)
                assert batch, f"no record within 10 s; got {len(received)} of {len(sent)}"
                for records in batch.values():
                    for record in records:
                        assert record.key is not None
                        assert record.value is not None
                        received.add((record.key, record.value))
                        partitions_by_key.setdefault(record.key, set()).add(record.partition)
        finally:
            await consumer.stop()
        assert received == sent
        # Keyed records stay on one partition per key: the basis of per-site ordering.
        assert all(len(parts) == 1 for parts in partitions_by_key.values())


async def test_hypertable_time_bucket_sums_by_minute(stack: Settings) -> None:
    table = f"test_bucket_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(
            f"CREATE TABLE {table} (ts timestamptz NOT NULL, site_id text NOT NULL, v float8)"
        )
        await conn.execute(
            f"SELECT create_hypertable('{table}', 'ts', chunk_time_interval => interval '1 hour')"
        )
        start = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
        rows = [(start + timedelta(seconds=15 * i), "GJ-BUK-0001", float(i)) for i in range(12)]
        await conn.copy_records_to_table(table, records=rows)

        buckets = await conn.fetch(
            f"SELECT time_bucket('1 minute', ts) AS bucket, count(*) AS n, sum(v) AS total "
            f"FROM {table} GROUP BY bucket ORDER BY bucket"
        )
        # 12 readings 15 s apart: 4 a minute, values 0..11.
        assert [(b["bucket"], b["n"], b["total"]) for b in buckets] == [
            (start, 4, 0 + 1 + 2 + 3),
            (start + timedelta(minutes=1), 4, 4 + 5 + 6 + 7),
            (start + timedelta(minutes=2), 4, 8 + 9 + 10 + 11),
        ]
        dims = await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = $1",
            table,
        )
        assert dims == 1
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


def test_prometheus_cannot_be_stopped_over_http(stack: Settings) -> None:
    """Prometheus runs without its lifecycle API: POST /-/quit (where a company's webhook could
    redirect the notifier) is refused, and Prometheus keeps answering."""
    quit_request = urllib.request.Request(
        f"http://{stack.prometheus_address}/-/quit", data=b"", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(quit_request, timeout=10)
    assert refused.value.code == 403
    with urllib.request.urlopen(f"http://{stack.prometheus_address}/-/ready", timeout=10) as ok:
        assert ok.status == 200
