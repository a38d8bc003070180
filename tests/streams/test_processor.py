"""One partition's processing step with plain values: records in, rows and messages out."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from hub import telemetry, topics
from hub.registry.model import Kpi
from streams.processor import BatchResult, PartitionProcessor, ProcessorConfig, Record
from streams.registry import SiteInfo, SiteKpi, Snapshot
from streams.windows import MINUTE_MS

T0 = 1_795_600_200_000 - 1_795_600_200_000 % 300_000
SNAPSHOT = Snapshot(
    digest="test",
    devices={"GJ-BUK-0001-CAM1": "GJ-BUK-0001", "JN-MOKPO-0001-CAM1": "JN-MOKPO-0001"},
    sites={
        "GJ-BUK-0001": SiteInfo("gwangju", "buk"),
        "JN-MOKPO-0001": SiteInfo("jeonnam", "mokpo"),
    },
    kpis_by_site={
        site: (SiteKpi("DEMO-X", Kpi("lat", "latency", "latency_ms", "max", "<=", 100.0, "5m", 1)),)
        for site in ("GJ-BUK-0001", "JN-MOKPO-0001")
    },
)


def record(
    offset: int,
    site: str,
    ts_ms: int,
    latency: float,
    event_id: str | None = None,
    key: str | None = None,
) -> Record:
    value = telemetry.encode(
        event_id=event_id or f"e{offset}",
        device_id=f"{site}-CAM1",
        site_id=site,
        ts=datetime.fromtimestamp(ts_ms / 1000, UTC),
        kind="measurement",
        metrics={"latency_ms": latency},
    )
    return Record(topics.TELEMETRY, 0, offset, (key or site).encode(), value)


def processor() -> PartitionProcessor:
    return PartitionProcessor(0, ProcessorConfig(lateness_ms=120_000, dedup_horizon_ms=600_000))


def test_a_known_stream_gives_exact_rows_results_and_partner_copies() -> None:
    p = processor()
    records = [record(i, "GJ-BUK-0001", T0 + i * 20_000, 50.0 + i) for i in range(15)]
    records += [record(100 + i, "JN-MOKPO-0001", T0 + i * 60_000, 150.0) for i in range(5)]
    # Event time moves past T0 + 5 min + 2 min lateness: the first 5-minute KPI window is due.
    records.append(record(200, "GJ-BUK-0001", T0 + 7 * MINUTE_MS, 10.0))
    result = p.process(records, SNAPSHOT, now_ms=T0 + 7 * MINUTE_MS)

    buk = sorted(
        (r[0].timestamp() * 1000, r[3], r[4])
        for r in result.aggregate_rows
        if r[1] == "GJ-BUK-0001"
    )
    # 15 events 20 s apart: 3 per minute over 5 minutes, latencies 50..64.
    assert buk == [
        (T0 + m * MINUTE_MS, 3, sum(50.0 + i for i in range(3 * m, 3 * m + 3))) for m in range(5)
    ]
    statuses = {(r.site_id, r.status) for r in result.kpi_rows}
    assert statuses == {("GJ-BUK-0001", "pass"), ("JN-MOKPO-0001", "fail")}
    assert [(a.site_id, a.transition, a.status) for a in result.alert_rows] == [
        ("JN-MOKPO-0001", "breach", "open")
    ]

    by_topic: dict[str, list[dict[str, object]]] = {}
    for out in result.outgoing:
        by_topic.setdefault(out.topic, []).append(json.loads(out.value))
    assert {m["site_id"] for m in by_topic["partner.gwangju.kpi-results.v1"]} == {"GJ-BUK-0001"}
    assert {m["site_id"] for m in by_topic["partner.jeonnam.kpi-results.v1"]} == {"JN-MOKPO-0001"}
    assert {m["site_id"] for m in by_topic["partner.jeonnam.kpi-alerts.v1"]} == {"JN-MOKPO-0001"}
    assert "partner.gwangju.kpi-alerts.v1" not in by_topic
    assert len(by_topic[topics.SITE_AGGREGATES]) == len(result.aggregate_rows)


def test_rejections_go_to_the_dlq_with_original_bytes_and_source() -> None:
    p = processor()
    good = record(1, "GJ-BUK-0001", T0, 10.0)
    wrong_key = record(2, "GJ-BUK-0001", T0, 10.0, key="JN-MOKPO-0001")
    garbage = Record(topics.TELEMETRY, 0, 3, b"GJ-BUK-0001", b"\xff not json")
    result = p.process([good, wrong_key, garbage], SNAPSHOT, now_ms=T0)
    dlq = [json.loads(o.value) for o in result.outgoing if o.topic == topics.DLQ]
    assert [(d["reason"], d["offset"]) for d in dlq] == [
        ("site_mismatch", 2),
        ("malformed_json", 3),
    ]
    assert base64.b64decode(dlq[1]["value_b64"]) == b"\xff not json"
    assert result.counts["accepted"] == 1


def test_restore_from_its_own_state_writes_continues_exactly() -> None:
    """A crash after a batch: a new processor restored from the written state re-consumes the
    batch (its offsets were not committed) and writes nothing twice, not even to the DLQ."""
    first = processor()
    batch = [record(i, "GJ-BUK-0001", T0 + i * 1000, 20.0) for i in range(10)]
    batch.append(Record(topics.TELEMETRY, 0, 10, b"GJ-BUK-0001", b"not json"))
    result = first.process(batch, SNAPSHOT, now_ms=T0 + 10_000)
    table = {k: v for k, v in result.state_writes if v is not None}

    second = processor()
    second.restore(table.items(), now_ms=T0 + 20_000)
    replay = second.process(batch, SNAPSHOT, now_ms=T0 + 20_000)
    assert replay.counts["redelivered"] == 11
    assert (replay.counts["accepted"], replay.outgoing) == (0, [])
    final = second.process(
        [record(50, "GJ-BUK-0001", T0 + 8 * MINUTE_MS, 1.0)], SNAPSHOT, now_ms=T0 + 8 * MINUTE_MS
    )
    rows = {(r.bucket.timestamp() * 1000, r.metric): r.count_ for r in final.aggregate_rows}
    assert rows == {(T0, "latency_ms"): 10}


def test_a_crash_between_journal_and_progress_still_counts_once() -> None:
    """Only a prefix of a batch's state writes survived (the journal, not the progress record):
    the re-consumed events are recognised by their ids."""
    first = processor()
    batch = [record(i, "GJ-BUK-0001", T0 + i * 1000, 20.0) for i in range(10)]
    result = first.process(batch, SNAPSHOT, now_ms=T0 + 10_000)
    journal = [(k, v) for k, v in result.state_writes if v is not None and b"|j|" in k]

    second = processor()
    second.restore(journal, now_ms=T0 + 20_000)
    replay = second.process(batch, SNAPSHOT, now_ms=T0 + 20_000)
    assert (replay.counts["duplicate"], replay.counts["accepted"]) == (10, 0)


def test_an_idle_partition_runs_on_with_the_wall_clock_but_never_past_it() -> None:
    p = processor()
    p.process([record(1, "GJ-BUK-0001", T0 + 1000, 10.0)], SNAPSHOT, now_ms=T0 + 1000)
    assert p.tick(SNAPSHOT, now_ms=T0 + 20_000).aggregate_rows == []  # not idle long enough
    # Idle past the timeout: event time runs on from the last record at wall-clock speed.
    closing = p.tick(SNAPSHOT, now_ms=T0 + 1000 + MINUTE_MS + 120_000)
    assert [(r.site_id, r.count_) for r in closing.aggregate_rows] == [("GJ-BUK-0001", 1)]

    ahead = processor()  # events dated two minutes ahead of the wall clock
    ahead.process([record(1, "GJ-BUK-0001", T0 + 120_000, 10.0)], SNAPSHOT, now_ms=T0)
    ahead.tick(SNAPSHOT, now_ms=T0 + 60_000)
    assert ahead.windows.watermark_ms == T0 + 120_000


def test_records_a_previous_owner_already_rejected_are_not_rejected_again() -> None:
    """The previous owner sent a batch's DLQ records, then died before its progress record was
    durable: the new owner re-consumes the batch, and the DLQ holds each rejection once."""
    first = processor()
    done = first.process([record(0, "GJ-BUK-0001", T0, 20.0)], SNAPSHOT, now_ms=T0 + 1_000)
    durable = {k: v for k, v in done.state_writes if v is not None}
    lost = [
        record(1, "GJ-BUK-0001", T0 + 1_000, 20.0),
        Record(topics.TELEMETRY, 0, 2, b"GJ-BUK-0001", b"not json"),
        Record(topics.TELEMETRY, 0, 3, b"GJ-BUK-0001", b"not json either"),
    ]
    sent = first.process(lost, SNAPSHOT, now_ms=T0 + 2_000)
    assert [o.partition for o in sent.outgoing if o.topic == topics.DLQ] == [0, 0]

    second = processor()
    second.restore(durable.items(), now_ms=T0 + 20_000)
    assert (second.next_offset, second.progress_ms) == (1, T0 + 1_000)
    second.rejected_before = {2}  # what the runtime read back from the DLQ
    replay = second.process(lost, SNAPSHOT, now_ms=T0 + 20_000)
    dlq = [json.loads(o.value)["offset"] for o in replay.outgoing if o.topic == topics.DLQ]
    assert dlq == [3]
    assert (replay.counts["accepted"], replay.counts["redelivered"]) == (1, 1)


def last_seen(result: BatchResult) -> dict[str, float]:
    return {r.site_id: r.last_event_at.timestamp() * 1000 for r in result.last_seen_rows}


def test_last_seen_is_written_at_most_every_few_seconds_and_nothing_is_dropped() -> None:
    p = processor()
    first = p.process([record(1, "GJ-BUK-0001", T0 + 1000, 1.0)], SNAPSHOT, now_ms=T0 + 1000)
    assert last_seen(first) == {"GJ-BUK-0001": T0 + 1000}
    # Within LAST_SEEN_EVERY_MS: held back, the newest time per site kept.
    batches = [
        [record(2, "GJ-BUK-0001", T0 + 2000, 1.0), record(3, "JN-MOKPO-0001", T0 + 2500, 1.0)],
        [record(4, "GJ-BUK-0001", T0 + 3000, 1.0)],
    ]
    held = [p.process(b, SNAPSHOT, now_ms=T0 + 3000) for b in batches]
    assert [last_seen(r) for r in held] == [{}, {}]
    assert last_seen(p.tick(SNAPSHOT, now_ms=T0 + 4000)) == {}
    # A tick once it is due writes what was held back, even with no record since.
    assert last_seen(p.tick(SNAPSHOT, now_ms=T0 + 6000)) == {
        "GJ-BUK-0001": T0 + 3000,
        "JN-MOKPO-0001": T0 + 2500,
    }
    assert last_seen(p.tick(SNAPSHOT, now_ms=T0 + 20_000)) == {}


def test_last_seen_held_back_at_a_crash_is_written_by_the_next_owner() -> None:
    first = processor()
    first.process([record(1, "GJ-BUK-0001", T0 + 1000, 1.0)], SNAPSHOT, now_ms=T0 + 1000)
    result = first.process([record(2, "GJ-BUK-0001", T0 + 2000, 1.0)], SNAPSHOT, now_ms=T0 + 2000)
    assert last_seen(result) == {}  # held back, then the worker dies
    second = processor()
    second.restore(((k, v) for k, v in result.state_writes if v is not None), now_ms=T0 + 9000)
    assert last_seen(second.tick(SNAPSHOT, now_ms=T0 + 9000)) == {"GJ-BUK-0001": T0 + 2000}
