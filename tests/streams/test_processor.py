"""One partition's processing step with plain values: records in, rows and messages out."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from hub import signing, telemetry, topics
from hub.registry.model import KST, Demonstration, Device, Kpi, Registry, Site
from streams import processor as processor_module
from streams import state
from streams.processor import (
    SWEEP_PER_BATCH,
    BatchResult,
    PartitionProcessor,
    ProcessorConfig,
    Record,
)
from streams.snapshot import (
    FOREVER_MS,
    KeySpan,
    KpiVersion,
    Programme,
    Snapshot,
    build_snapshot,
)
from streams.state import KpiKey
from streams.windows import MINUTE_MS, JournalEntry, event_digest, id_hash

T0 = 1_795_600_200_000 - 1_795_600_200_000 % 300_000  # a 5-minute boundary
LATENCY = Kpi("lat", "latency", "latency_ms", "max", "<=", 100.0, "5m", 1)
PRECISION = Kpi("precision", "p", "tp", "ratio", ">=", 0.9, "5m", 1, ("tp", "fp"))


def demo(demo_id: str, company: str, *kpis: Kpi, starts: str = "2026-01-01") -> Demonstration:
    return Demonstration(
        demo_id, company, demo_id, "t", starts, "2027-12-31", kpis, ("latency_ms", "online")
    )


def site(site_id: str, region: str, district: str) -> Site:
    return Site(site_id, region, district, "school_zone", "", 35.1, 126.9)


REGISTRY = Registry(
    (
        site("GJ-BUK-0001", "gwangju", "buk"),
        site("GJ-BUK-0002", "gwangju", "buk"),
        site("JN-MOKPO-0001", "jeonnam", "mokpo"),
    ),
    (
        Device("GJ-BUK-0001-CAM1", "GJ-BUK-0001", "DEMO-A", ""),
        Device("JN-MOKPO-0001-CAM1", "JN-MOKPO-0001", "DEMO-A", ""),
        # A site two companies share: each company's devices judge its own KPIs only.
        Device("GJ-BUK-0002-CAM1", "GJ-BUK-0002", "DEMO-A", ""),
        Device("GJ-BUK-0002-SEN1", "GJ-BUK-0002", "DEMO-B", ""),
    ),
    (demo("DEMO-A", "Company A", LATENCY, PRECISION), demo("DEMO-B", "Company B", LATENCY)),
    "test",
)
KEYS = {d.device_id: d.device_id.encode().ljust(32, b"k") for d in REGISTRY.devices}
SNAPSHOT = build_snapshot(REGISTRY, KEYS)


def record(
    offset: int,
    site_id: str,
    ts_ms: int,
    latency: float,
    event_id: str | None = None,
    key: str | None = None,
    device: str | None = None,
    signing_key: bytes | None = None,
    metrics: dict[str, float] | None = None,
    arrival_ms: int | None = None,
) -> Record:
    """A signed record from the site's CAM1 device, arriving when it was made."""
    device = device or f"{site_id}-CAM1"
    value = telemetry.encode(
        event_id=event_id or f"e{offset}",
        device_id=device,
        site_id=site_id,
        ts=datetime.fromtimestamp(ts_ms / 1000, UTC),
        kind="measurement",
        metrics=metrics or {"latency_ms": latency},
    )
    sign_with = signing_key or KEYS.get(device, b"unknown device key")
    return Record(
        topics.TELEMETRY,
        0,
        offset,
        (key or site_id).encode(),
        value,
        ts_ms if arrival_ms is None else arrival_ms,
        signing.headers(sign_with, value),
    )


def raw(offset: int, value: bytes, key: bytes = b"GJ-BUK-0001") -> Record:
    return Record(topics.TELEMETRY, 0, offset, key, value, T0)


def processor(partitions: int = 1) -> PartitionProcessor:
    config = ProcessorConfig(lateness_ms=120_000, dedup_horizon_ms=600_000, partitions=partitions)
    return PartitionProcessor(0, config)


def dlq(result: BatchResult) -> list[dict[str, object]]:
    return [json.loads(o.value) for o in result.outgoing if o.topic == topics.DLQ]


def test_a_known_stream_gives_exact_rows_results_and_partner_copies() -> None:
    p = processor()
    records = [record(i, "GJ-BUK-0001", T0 + i * 20_000, 50.0 + i) for i in range(15)]
    records += [record(100 + i, "JN-MOKPO-0001", T0 + i * 60_000, 150.0) for i in range(5)]
    # Event time moves past T0 + 5 min + 2 min lateness: the first 5-minute KPI window is due.
    records.append(record(200, "GJ-BUK-0001", T0 + 7 * MINUTE_MS, 10.0))
    result = p.process(records, SNAPSHOT, now_ms=T0 + 7 * MINUTE_MS)

    buk = sorted(
        (r.bucket.timestamp() * 1000, r.demonstration_id, r.count_, r.sum)
        for r in result.aggregate_rows
        if r.site_id == "GJ-BUK-0001"
    )
    # 15 events 20 s apart: 3 per minute over 5 minutes, latencies 50..64.
    assert buk == [
        (T0 + m * MINUTE_MS, "DEMO-A", 3, sum(50.0 + i for i in range(3 * m, 3 * m + 3)))
        for m in range(5)
    ]
    statuses = {(r.site_id, r.kpi_id, r.status) for r in result.kpi_rows}
    assert ("GJ-BUK-0001", "lat", "pass") in statuses
    assert ("JN-MOKPO-0001", "lat", "fail") in statuses
    breaches = [(a.site_id, a.kpi_id) for a in result.alert_rows if a.transition == "breach"]
    assert breaches == [("JN-MOKPO-0001", "lat")]

    by_topic: dict[str, list[dict[str, object]]] = {}
    for out in result.outgoing:
        by_topic.setdefault(out.topic, []).append(json.loads(out.value))
    gwangju = {m["site_id"] for m in by_topic["partner.gwangju.kpi-results.v1"]}
    assert gwangju <= {"GJ-BUK-0001", "GJ-BUK-0002"}
    assert {m["site_id"] for m in by_topic["partner.jeonnam.kpi-results.v1"]} == {"JN-MOKPO-0001"}
    assert len(by_topic[topics.SITE_AGGREGATES]) == len(result.aggregate_rows)
    assert {m["demonstration_id"] for m in by_topic[topics.SITE_AGGREGATES]} == {"DEMO-A"}


def test_at_a_shared_site_each_demonstration_is_judged_on_its_own_devices_only() -> None:
    """Company B's devices fail the latency KPI at GJ-BUK-0002, Company A's pass it: neither
    verdict, nor any aggregate, mixes the two."""
    p = processor()
    records = []
    for i in range(10):
        ts = T0 + i * 20_000
        records.append(record(2 * i, "GJ-BUK-0002", ts, 40.0, event_id=f"a{i}"))
        records.append(
            record(2 * i + 1, "GJ-BUK-0002", ts, 900.0, event_id=f"b{i}", device="GJ-BUK-0002-SEN1")
        )
    records.append(record(99, "GJ-BUK-0002", T0 + 8 * MINUTE_MS, 40.0, event_id="push"))
    result = p.process(records, SNAPSHOT, now_ms=T0 + 8 * MINUTE_MS)

    rows = {(r.demonstration_id, r.bucket.timestamp() * 1000): r for r in result.aggregate_rows}
    assert {(d, r.count_, r.max) for (d, _), r in rows.items() if _ == T0} == {
        ("DEMO-A", 3, 40.0),
        ("DEMO-B", 3, 900.0),
    }
    verdicts = {
        (r.demonstration_id, r.kpi_id): (r.status, r.value)
        for r in result.kpi_rows
        if r.site_id == "GJ-BUK-0002" and r.window_start.timestamp() * 1000 == T0
    }
    assert verdicts[("DEMO-A", "lat")] == ("pass", 40.0)
    assert verdicts[("DEMO-B", "lat")] == ("fail", 900.0)
    # Counted exactly, whatever the demonstration: 10 + 10 + 1 accepted, every one in a row.
    assert result.counts.accepted == 21


def test_a_ratio_kpi_is_judged_from_its_metrics_windows() -> None:
    p = processor()
    records = [
        record(i, "GJ-BUK-0001", T0 + i * 10_000, 0.0, metrics={"tp": 1.0, "fp": 0.0})
        for i in range(19)
    ]
    records.append(record(19, "GJ-BUK-0001", T0 + 200_000, 0.0, metrics={"tp": 0.0, "fp": 1.0}))
    records.append(record(20, "GJ-BUK-0001", T0 + 8 * MINUTE_MS, 10.0))
    result = p.process(records, SNAPSHOT, now_ms=T0 + 8 * MINUTE_MS)
    precision = [
        r for r in result.kpi_rows if r.kpi_id == "precision" and r.site_id == "GJ-BUK-0001"
    ]
    assert [(r.window_start.timestamp() * 1000, r.value, r.status) for r in precision] == [
        (T0, 19 / 20, "pass")
    ]


def test_rejections_go_to_the_dlq_with_original_bytes_headers_and_source() -> None:
    p = processor()
    good = record(1, "GJ-BUK-0001", T0, 10.0)
    wrong_key = record(2, "GJ-BUK-0001", T0, 10.0, key="JN-MOKPO-0001")
    garbage = raw(3, b"\xff not json")
    result = p.process([good, wrong_key, garbage], SNAPSHOT, now_ms=T0)
    rejected = dlq(result)
    assert [(d["reason"], d["offset"], d["origin"]) for d in rejected] == [
        ("site_mismatch", 2, f"{topics.TELEMETRY}/0/2"),
        ("malformed_json", 3, f"{topics.TELEMETRY}/0/3"),
    ]
    assert base64.b64decode(str(rejected[1]["value_b64"])) == b"\xff not json"
    name, value = rejected[0]["headers"][0]  # type: ignore[index]
    assert (name, base64.b64decode(value)) == wrong_key.headers[0]
    assert result.counts.accepted == 1


def test_a_record_is_counted_only_when_signed_by_the_device_it_names() -> None:
    p = processor()
    competitor = KEYS["GJ-BUK-0002-SEN1"]  # Company B's credential posing as A's camera
    records = [
        replace(record(1, "GJ-BUK-0002", T0, 1.0), headers=()),
        record(2, "GJ-BUK-0002", T0, 1.0, signing_key=competitor),
        record(3, "GJ-BUK-0002", T0, 1.0, device="GJ-BUK-0002-SEN1"),  # its own: accepted
    ]
    result = p.process(records, SNAPSHOT, now_ms=T0)
    assert [(d["reason"], d["offset"]) for d in dlq(result)] == [
        ("unauthenticated", 1),
        ("unauthenticated", 2),
    ]
    assert result.counts.accepted == 1


def test_undeclared_metrics_out_of_range_values_and_wrong_partitions_are_rejected() -> None:
    p = processor(partitions=12)
    assert SNAPSHOT.partition_of("GJ-BUK-0001", 12) != 0  # its records belong elsewhere
    on_wrong_partition = record(1, "GJ-BUK-0001", T0, 1.0)
    p2 = processor()
    flood = record(2, "GJ-BUK-0001", T0, 1.0, metrics={"latency_ms": 1.0, "anything_new": 1.0})
    poison = record(3, "GJ-BUK-0001", T0, 1.0, metrics={"latency_ms": 1.7976931348623157e308})
    result = p.process([on_wrong_partition], SNAPSHOT, now_ms=T0)
    rest = p2.process([flood, poison], SNAPSHOT, now_ms=T0)
    assert [d["reason"] for d in dlq(result)] == ["wrong_partition"]
    assert [(d["reason"], d["detail"]) for d in dlq(rest)] == [
        ("undeclared_metric", "metrics.anything_new: not declared by demonstration DEMO-A"),
        (
            "schema_violation",
            "metrics.latency_ms: 1.7976931348623157e+308 is outside the accepted range -1e15..1e15",
        ),
    ]


def test_a_future_dated_record_makes_no_other_site_late() -> None:
    """One record dated now+290 s, then other sites' on-time records: all accepted."""
    p = processor()
    now = T0 + 30_000
    ahead = record(0, "GJ-BUK-0001", now + 290_000, 1.0, arrival_ms=now)
    on_time = [
        record(i, "JN-MOKPO-0001", now - 60_000 + i * 1000, 1.0, arrival_ms=now + i * 1000)
        for i in range(1, 30)
    ]
    result = p.process([ahead, *on_time], SNAPSHOT, now_ms=now + 30_000)
    assert (result.counts.accepted, dlq(result)) == (30, [])
    assert p.clock_ahead == {"GJ-BUK-0001-CAM1": 290_000}


def test_restore_from_its_own_state_writes_continues_exactly() -> None:
    """A crash after a batch: a new processor restored from the written state re-consumes the
    batch (its offsets were not committed) and writes nothing twice, not even to the DLQ."""
    first = processor()
    batch = [record(i, "GJ-BUK-0001", T0 + i * 1000, 20.0) for i in range(10)]
    batch.append(raw(10, b"not json"))
    result = first.process(batch, SNAPSHOT, now_ms=T0 + 10_000)
    table = {k: v for k, v in result.state_writes if v is not None}

    second = processor()
    second.restore(table.items(), SNAPSHOT, now_ms=T0 + 20_000)
    replay = second.process(batch, SNAPSHOT, now_ms=T0 + 20_000)
    assert replay.counts.redelivered == 11
    assert (replay.counts.accepted, replay.outgoing) == (0, [])
    final = second.process(
        [record(50, "GJ-BUK-0001", T0 + 8 * MINUTE_MS, 1.0)], SNAPSHOT, now_ms=T0 + 8 * MINUTE_MS
    )
    rows = {
        (r.bucket.timestamp() * 1000, r.metric): r.count_
        for r in final.aggregate_rows
        if r.site_id == "GJ-BUK-0001"
    }
    assert rows == {(T0, "latency_ms"): 10}


def applied(table: dict[bytes, bytes], result: BatchResult) -> dict[bytes, bytes]:
    """The state table after a batch's writes, in order."""
    for key, value in result.state_writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def test_kpi_states_written_an_entry_each_before_groups_go_on_and_their_entries_go() -> None:
    """A partition restored from KPI states written one entry a state (before groups) judges
    its KPIs as one that never stopped, writes the states' groups, then deletes the old entries
    (after the groups: a crash between them leaves the groups' copies, which win)."""
    sites = ("GJ-BUK-0001", "GJ-BUK-0002", "JN-MOKPO-0001")
    minutes = [
        [
            record(m * 100 + i * 10 + n, s, T0 + m * MINUTE_MS + n * 15_000, 40.0 + m * 9 + n)
            for i, s in enumerate(sites)
            for n in range(4)
            if m < 3 or s != "JN-MOKPO-0001"  # silent: its states unchanged when restored
        ]
        for m in range(16)
    ]
    steady, table = processor(), dict[bytes, bytes]()
    for m in range(6):
        applied(table, steady.process(minutes[m], SNAPSHOT, now_ms=T0 + (m + 1) * MINUTE_MS))
    layout = state.Layout(0)
    old: dict[bytes, bytes] = {}
    for key, value in table.items():
        if layout.kind(key)[0] != b"K":
            old[key] = value
            continue
        for kpi_key, kpi_state in state.decode_kpi_part(value)[1]:
            old[layout.kpi(kpi_key)] = state.encode_kpi_state(kpi_state)
    entries = {k for k in old if layout.kind(k)[0] == b"k"}
    assert len(entries) == 7  # DEMO-A's two KPIs at three sites, DEMO-B's one at one

    restored = processor()
    restored.restore(old.items(), SNAPSHOT, now_ms=T0 + 6 * MINUTE_MS)
    results = {"steady": [], "restored": []}  # type: dict[str, list[BatchResult]]
    for m in range(6, 16):
        for name, p in (("steady", steady), ("restored", restored)):
            results[name].append(p.process(minutes[m], SNAPSHOT, now_ms=T0 + (m + 1) * MINUTE_MS))
    judged = {
        name: [
            (r.window_start, r.demonstration_id, r.kpi_id, r.site_id, r.value, r.status)
            for res in rs
            for r in res.kpi_rows
        ]
        for name, rs in results.items()
    }
    assert judged["restored"] == judged["steady"]
    assert len(judged["steady"]) >= 10
    first = next(r for r in results["restored"] if r.state_writes)
    kinds = [layout.kind(k)[0] for k, _ in first.state_writes]
    deleted = [k for k, v in first.state_writes if v is None and layout.kind(k)[0] == b"k"]
    assert set(deleted) == entries
    assert max(i for i, k in enumerate(kinds) if k == b"K") < kinds.index(b"k")
    again = processor()  # from the table as that first write left it
    again.restore(applied(dict(old), first).items(), SNAPSHOT, now_ms=T0 + 7 * MINUTE_MS)
    assert again.kpi_states.keys() == restored.kpi_states.keys()
    for result in results["restored"]:
        applied(old, result)
    for result in results["steady"]:
        applied(table, result)
    assert not [k for k in old if layout.kind(k)[0] == b"k"]
    assert kpi_contents(old) == kpi_contents(table) != {}


def kpi_contents(table: dict[bytes, bytes]) -> dict[tuple[int, KpiKey], bytes]:
    """(group, KPI) -> state, of a table holding one generation of each group, in one part."""
    layout = state.Layout(0)
    contents, seen = {}, []
    for key, value in table.items():
        kind, rest = layout.kind(key)
        if kind == b"K":
            group, _, part = rest.split(b"|")
            seen.append(int(group))
            assert part == b"000"
            for kpi_key, kpi_state in state.decode_kpi_part(value)[1]:
                contents[(int(group), kpi_key)] = state.encode_kpi_state(kpi_state)
    assert len(seen) == len(set(seen))
    return contents


def test_a_crash_between_journal_and_progress_still_counts_once() -> None:
    """Only a prefix of a batch's state writes survived (the journal, not the progress record):
    the re-consumed events are recognised by their ids."""
    first = processor()
    batch = [record(i, "GJ-BUK-0001", T0 + i * 1000, 20.0) for i in range(10)]
    result = first.process(batch, SNAPSHOT, now_ms=T0 + 10_000)
    journal = [(k, v) for k, v in result.state_writes if v is not None and b"|j|" in k]

    second = processor()
    second.restore(journal, SNAPSHOT, now_ms=T0 + 20_000)
    replay = second.process(batch, SNAPSHOT, now_ms=T0 + 20_000)
    assert (replay.counts.duplicate, replay.counts.accepted) == (10, 0)


def test_an_idle_partition_runs_on_with_the_wall_clock_but_never_past_it() -> None:
    p = processor()
    p.process([record(1, "GJ-BUK-0001", T0 + 1000, 10.0)], SNAPSHOT, now_ms=T0 + 1000)
    assert p.tick(SNAPSHOT, now_ms=T0 + 20_000).aggregate_rows == []  # not idle long enough
    # Idle past the timeout: event time runs on from the last record at wall-clock speed.
    closing = p.tick(SNAPSHOT, now_ms=T0 + 1000 + MINUTE_MS + 120_000)
    assert [(r.site_id, r.count_) for r in closing.aggregate_rows] == [("GJ-BUK-0001", 1)]


def test_a_site_that_never_reports_is_judged_insufficient_with_a_no_data_alert() -> None:
    """A partition where only one site reports: the other sites' KPIs are judged anyway."""
    p = processor()
    p.process([record(1, "GJ-BUK-0001", T0 + 1000, 10.0)], SNAPSHOT, now_ms=T0 + 1000)
    result = p.tick(SNAPSHOT, now_ms=T0 + 1000 + 10 * MINUTE_MS)
    silent = {
        (r.demonstration_id, r.site_id, r.kpi_id, r.status)
        for r in result.kpi_rows
        if r.window_start.timestamp() * 1000 == T0
    }
    assert ("DEMO-B", "GJ-BUK-0002", "lat", "insufficient_data") in silent
    assert ("DEMO-A", "JN-MOKPO-0001", "lat", "insufficient_data") in silent
    no_data = {(a.demonstration_id, a.site_id, a.kpi_id) for a in result.alert_rows}
    assert ("DEMO-B", "GJ-BUK-0002", "lat") in no_data
    assert ("DEMO-A", "GJ-BUK-0001", "lat") not in no_data


def test_kpis_are_judged_inside_the_demonstration_period_only() -> None:
    """A one-day demonstration: only its records dated inside the day count (the others go to
    the DLQ as not_active), only the KPI windows inside the day are judged, and then its state
    goes."""
    day = Registry(
        REGISTRY.sites,
        (Device("GJ-BUK-0001-CAM1", "GJ-BUK-0001", "DEMO-D", ""),),
        (
            Demonstration(
                "DEMO-D", "D", "D", "t", "2026-12-01", "2026-12-01", (LATENCY,), ("latency_ms",)
            ),
        ),
        "day",
    )
    snapshot = build_snapshot(day, KEYS)
    starts = int(datetime(2026, 12, 1, tzinfo=KST).timestamp() * 1000)
    ends = starts + 24 * 3600_000
    p = processor()
    times = [starts - 10 * MINUTE_MS + i * MINUTE_MS for i in range(20)]
    times += [ends - 10 * MINUTE_MS + i * MINUTE_MS for i in range(20)]
    results = [
        p.process([record(i, "GJ-BUK-0001", ts, 10.0)], snapshot, now_ms=ts)
        for i, ts in enumerate(times)
    ]
    results.append(p.tick(snapshot, now_ms=ends + 60 * MINUTE_MS))
    judged = sorted(r.window_start.timestamp() * 1000 for res in results for r in res.kpi_rows)
    assert (judged[0], judged[-1] + 300_000, len(judged)) == (starts, ends, 288)
    aggregated = {r.bucket.timestamp() * 1000 for res in results for r in res.aggregate_rows}
    assert aggregated == {t for t in times if starts <= t < ends}
    outside = [d for res in results for d in dlq(res)]
    assert {d["reason"] for d in outside} == {"not_active"}
    assert len(outside) == sum(1 for t in times if not starts <= t < ends)
    assert "outside the active period of demonstration DEMO-D" in str(outside[0]["detail"])
    assert p.kpi_states == {}  # the ended demonstration's state is released
    assert any(v is None and b"|K|" in k for res in results for k, v in res.state_writes)


def test_records_a_previous_owner_already_rejected_are_not_rejected_again() -> None:
    """The previous owner sent a batch's DLQ records, then died before its progress record was
    durable: the new owner re-consumes the batch, and the DLQ holds each rejection once."""
    first = processor()
    done = first.process([record(0, "GJ-BUK-0001", T0, 20.0)], SNAPSHOT, now_ms=T0 + 1_000)
    durable = {k: v for k, v in done.state_writes if v is not None}
    lost = [
        record(1, "GJ-BUK-0001", T0 + 1_000, 20.0),
        raw(2, b"not json"),
        raw(3, b"not json either"),
    ]
    sent = first.process(lost, SNAPSHOT, now_ms=T0 + 2_000)
    assert [o.partition for o in sent.outgoing if o.topic == topics.DLQ] == [0, 0]

    second = processor()
    second.restore(durable.items(), SNAPSHOT, now_ms=T0 + 20_000)
    assert (second.next_offset, second.progress_ms) == (1, T0 + 1_000)
    read_back = {2}  # what the runtime read back from the DLQ
    replay = second.process(lost, SNAPSHOT, now_ms=T0 + 20_000, already_rejected=read_back)
    assert [d["offset"] for d in dlq(replay)] == [3]
    assert read_back == set()  # each skipped once
    assert (replay.counts.accepted, replay.counts.redelivered) == (1, 1)


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
    state = ((k, v) for k, v in result.state_writes if v is not None)
    second.restore(state, SNAPSHOT, now_ms=T0 + 9000)
    assert last_seen(second.tick(SNAPSHOT, now_ms=T0 + 9000)) == {"GJ-BUK-0001": T0 + 2000}


def test_a_record_whose_processing_fails_is_rejected_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever fails for one record (here: the windows, for one event id) sends that record
    to the DLQ as unprocessable; the batch and the partition go on."""
    p = processor()
    judge = p.windows.judge

    def failing(ts: int, arrival: int, digest: int) -> Any:
        if digest == event_digest("GJ-BUK-0001-CAM1", "cursed"):
            raise OverflowError("math range error")
        return judge(ts, arrival, digest)

    monkeypatch.setattr(p.windows, "judge", failing)
    ids = ["e0", "cursed", "e2", "e3"]
    records = [record(i, "GJ-BUK-0001", T0 + i, 1.0, event_id=e) for i, e in enumerate(ids)]
    result = p.process(records, SNAPSHOT, now_ms=T0)
    assert [(d["reason"], d["offset"]) for d in dlq(result)] == [("unprocessable", 1)]
    assert "OverflowError" in str(dlq(result)[0]["detail"])
    assert result.counts.accepted == 3


def test_two_devices_may_use_the_same_event_id_and_each_counts() -> None:
    """Event ids are unique per device: another company's device numbering its events 1, 2,
    3... on the same partition suppresses nothing; a device's own retry is still a repeat."""
    p = processor()
    a = record(0, "GJ-BUK-0002", T0 + 1000, 10.0, event_id="42", device="GJ-BUK-0002-CAM1")
    b = record(1, "GJ-BUK-0002", T0 + 2000, 20.0, event_id="42", device="GJ-BUK-0002-SEN1")
    retry = record(2, "GJ-BUK-0002", T0 + 9000, 30.0, event_id="42", device="GJ-BUK-0002-SEN1")
    result = p.process([a, b, retry], SNAPSHOT, now_ms=T0 + 9000)
    assert (result.counts.accepted, result.counts.duplicate) == (2, 1)
    assert dlq(result) == []


def test_a_journal_of_event_ids_alone_still_recognises_repeats_after_the_upgrade() -> None:
    """State written before ids were per device (a V2 journal: digests of the event id alone)
    is migrated on restore: a repeat re-consumed after the upgrade is not counted again."""
    p = processor()
    entry = JournalEntry("GJ-BUK-0001", "DEMO-A", T0 + 1000, T0 + 1000, id_hash("e7"), {})
    v2 = state.V2 + state.encode_journal([entry])[1:]
    p.restore([(p.layout.journal(0), v2)], SNAPSHOT, now_ms=T0 + 2000)
    repeat = record(7, "GJ-BUK-0001", T0 + 1000, 1.0, event_id="e7", arrival_ms=T0 + 2000)
    fresh = record(8, "GJ-BUK-0001", T0 + 1500, 1.0, event_id="e8", arrival_ms=T0 + 2000)
    result = p.process([repeat, fresh], SNAPSHOT, now_ms=T0 + 2000)
    assert (result.counts.accepted, result.counts.duplicate) == (1, 1)
    # What it writes now is per device.
    written = [v for k, v in result.state_writes if v is not None and b"|j|" in k]
    assert written
    assert not any(state.legacy_digests(v) for v in written)


# -- keys by the time the broker appended a record ------------------------------------------------

CAM = "GJ-BUK-0001-CAM1"
OLD_KEY, NEW_KEY = b"o" * 32, b"n" * 32


def keyed(as_of_ms: int, *spans: KeySpan) -> Snapshot:
    """The registry as a worker read it at ``as_of_ms``, CAM1 at GJ-BUK-0001 holding ``spans``."""
    keys: dict[str, list[KeySpan]] = {d: [KeySpan(0, FOREVER_MS, k)] for d, k in KEYS.items()}
    keys[CAM] = list(spans)
    return build_snapshot(REGISTRY, keys, as_of_ms=as_of_ms)


def test_a_key_newer_than_the_snapshot_stops_the_batch_for_a_newer_registry() -> None:
    """The worker read the registry at T0; the device got a new key at T0 + 20 s and signs with
    it. Its record (appended at T0 + 30 s) is not rejected on the old snapshot: processing stops
    before it, and with the newer registry it is accepted. What came before stands."""
    p = processor()
    before = record(1, "GJ-BUK-0001", T0 + 10_000, 1.0, signing_key=OLD_KEY)
    after = record(2, "GJ-BUK-0001", T0 + 30_000, 1.0, signing_key=NEW_KEY)
    then = record(3, "GJ-BUK-0001", T0 + 31_000, 1.0, signing_key=NEW_KEY)
    old = keyed(T0, KeySpan(0, FOREVER_MS, OLD_KEY))
    first = p.process([before, after, then], old, now_ms=T0 + 32_000)
    assert (first.resume_at, first.counts.accepted, dlq(first)) == (1, 1, [])
    assert p.next_offset == 2
    rotated = keyed(
        T0 + 32_000, KeySpan(0, T0 + 20_000, OLD_KEY), KeySpan(T0 + 20_000, FOREVER_MS, NEW_KEY)
    )
    rest = p.process([after, then], rotated, now_ms=T0 + 32_000, registry_final=True)
    assert (rest.resume_at, rest.counts.accepted, dlq(rest)) == (None, 2, [])


def test_a_rotated_key_still_signs_what_was_appended_before_the_rotation() -> None:
    rotated = keyed(
        T0 + 60_000, KeySpan(0, T0 + 20_000, OLD_KEY), KeySpan(T0 + 20_000, FOREVER_MS, NEW_KEY)
    )
    backlog = record(1, "GJ-BUK-0001", T0 + 10_000, 1.0, signing_key=OLD_KEY)
    stolen = record(2, "GJ-BUK-0001", T0 + 40_000, 1.0, signing_key=OLD_KEY)
    result = processor().process([backlog, stolen], rotated, now_ms=T0 + 60_000)
    assert result.counts.accepted == 1
    assert [(d["reason"], d["offset"]) for d in dlq(result)] == [("unauthenticated", 2)]
    assert "held when the record was appended" in str(dlq(result)[0]["detail"])


def test_a_miss_the_snapshot_already_knew_about_is_rejected_at_once() -> None:
    """A forged signature on a record appended well before the registry was read is final: no
    reread, whatever the device sends (bounded work for a forger)."""
    snapshot = keyed(T0 + 60_000, KeySpan(0, FOREVER_MS, OLD_KEY))
    forged = record(1, "GJ-BUK-0001", T0, 1.0, signing_key=b"f" * 32)
    unknown = record(2, "GJ-BUK-0001", T0, 1.0, device="GJ-BUK-0001-NEW9")
    result = processor().process([forged, unknown], snapshot, now_ms=T0 + 61_000)
    assert result.resume_at is None
    assert [d["reason"] for d in dlq(result)] == ["unauthenticated", "unknown_device"]


# -- replay identity: only the hub's mark counts --------------------------------------------------

HUB_KEY = b"h" * 32


def test_a_device_cannot_claim_another_records_identity_in_the_dlq() -> None:
    """A device that sets ``hub-replayed-from`` itself (to replace a victim's rejected record in
    `hub dlq replay`) gets its own identity; so does a mark made with another key."""
    snapshot = replace(SNAPSHOT, replay_key=HUB_KEY)
    victim = f"{topics.TELEMETRY}/0/7"
    bogus = record(1, "GJ-BUK-0001", T0, 1.0, device="GJ-BUK-0001-NEW9")
    made_up = replace(bogus, headers=[*bogus.headers, (signing.REPLAYED_FROM, victim.encode())])
    value = bogus.value or b""
    wrong_key = replace(
        bogus,
        offset=2,
        headers=[*bogus.headers, *signing.replay_headers(b"x" * 32, victim, 5, value)],
    )
    result = processor().process([made_up, wrong_key], snapshot, now_ms=T0)
    assert [d["origin"] for d in dlq(result)] == [
        f"{topics.TELEMETRY}/0/1",
        f"{topics.TELEMETRY}/0/2",
    ]


def test_a_replay_marked_by_the_hub_keeps_its_identity_and_its_first_append_time() -> None:
    """`hub dlq replay` marks a record with its origin and first append time: rejected again it
    keeps both, and it is judged by the key its device held when first appended (since rotated)."""
    origin = f"{topics.TELEMETRY}/0/3"
    rotated = replace(
        keyed(
            T0 + 60_000, KeySpan(0, T0 + 20_000, OLD_KEY), KeySpan(T0 + 20_000, FOREVER_MS, NEW_KEY)
        ),
        replay_key=HUB_KEY,
    )
    first = record(9, "GJ-BUK-0001", T0 + 10_000, 1.0, signing_key=OLD_KEY, arrival_ms=T0 + 50_000)
    value = first.value or b""
    marked = replace(
        first,
        headers=[*first.headers, *signing.replay_headers(HUB_KEY, origin, T0 + 10_000, value)],
    )
    accepted = processor().process([marked], rotated, now_ms=T0 + 50_000)
    assert (accepted.counts.accepted, dlq(accepted)) == (1, [])
    # Rejected again (here: its window closed meanwhile), it keeps where and when it came first.
    p = processor()
    later = T0 + 10 * MINUTE_MS
    p.process([record(1, "GJ-BUK-0001", later, 1.0, signing_key=NEW_KEY)], rotated, now_ms=later)
    late = p.process([replace(marked, offset=10, timestamp=later)], rotated, now_ms=later)
    [again] = dlq(late)
    assert (again["reason"], again["origin"]) == ("late", origin)
    assert again["appended_at"] == datetime.fromtimestamp((T0 + 10_000) / 1000, UTC).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")


def test_one_back_dated_device_opens_no_empty_windows_for_its_partition() -> None:
    """The first record a fresh partition sees is dated a day back (a device with a wrong
    clock): observation starts at its arrival, not at its date, so no site of the partition is
    judged insufficient over the past day and none raises a no_data alert for it."""
    p = processor()
    day = 24 * 3600_000
    back_dated = record(1, "GJ-BUK-0001", T0 - day, 10.0, arrival_ms=T0)
    on_time = [record(2 + i, "GJ-BUK-0001", T0 + i * MINUTE_MS, 10.0) for i in range(12)]
    results = [p.process([back_dated], SNAPSHOT, now_ms=T0)]
    results += [p.process([r], SNAPSHOT, now_ms=r.timestamp) for r in on_time]
    judged = [row for res in results for row in res.kpi_rows]
    assert judged  # windows after the arrival are judged
    assert min(row.window_start.timestamp() * 1000 for row in judged) >= T0
    assert p.observed_from_ms == T0
    # The back-dated record itself is counted in its own (past) minute.
    buckets = {row.bucket.timestamp() * 1000 for res in results for row in res.aggregate_rows}
    assert T0 - day in buckets


def test_a_backlog_minute_just_before_the_first_arrival_is_judged_for_its_site() -> None:
    """Records of the minute before the partition's first arrival (a backlog at start-up, within
    the lateness): that site's observation starts with them, and its first window is judged
    from there, not from the arrival."""
    p = processor()
    backlog = [
        record(i, "GJ-BUK-0001", T0 + i * 10_000, 50.0, arrival_ms=T0 + MINUTE_MS + 5_000)
        for i in range(6)
    ]
    later = T0 + 8 * MINUTE_MS
    results = [p.process(backlog, SNAPSHOT, now_ms=T0 + MINUTE_MS + 5_000)]
    results.append(p.process([record(9, "GJ-BUK-0001", later, 50.0)], SNAPSHOT, now_ms=later))
    first = next(
        row
        for res in results
        for row in res.kpi_rows
        if row.site_id == "GJ-BUK-0001" and row.kpi_id == "lat" and row.demonstration_id == "DEMO-A"
    )
    assert first.window_start.timestamp() * 1000 == T0
    assert (first.status, first.samples) == ("pass", 6)


def test_a_kpi_window_is_judged_by_the_version_valid_when_it_started() -> None:
    """The threshold of LATENCY changed from 100 to 40 at T0 + 5 min: the window before keeps
    the first version (and says so), the window after is judged by the second."""
    v1 = KpiVersion(1, -FOREVER_MS, T0 + 5 * MINUTE_MS, 100.0, 1)
    v2 = KpiVersion(2, T0 + 5 * MINUTE_MS, FOREVER_MS, 40.0, 1)
    strict = replace(LATENCY, threshold=40.0, version=2)
    changed = Registry(
        REGISTRY.sites,
        REGISTRY.devices,
        (
            demo("DEMO-A", "Company A", strict, PRECISION),
            demo("DEMO-B", "Company B", LATENCY),
        ),
        "changed",
    )
    programme = {"DEMO-A": Programme(kpi_versions={"lat": (v1, v2)})}
    snapshot = build_snapshot(changed, KEYS, programme=programme)
    p = processor()
    times = [T0 + i * MINUTE_MS for i in range(10)] + [T0 + 13 * MINUTE_MS]
    results = [
        p.process([record(i, "GJ-BUK-0001", ts, 50.0)], snapshot, now_ms=ts)
        for i, ts in enumerate(times)
    ]
    judged = sorted(
        (r.window_start.timestamp() * 1000, r.kpi_version, r.threshold, r.status)
        for res in results
        for r in res.kpi_rows
        if r.site_id == "GJ-BUK-0001" and r.kpi_id == "lat" and r.demonstration_id == "DEMO-A"
    )
    assert judged[:2] == [(T0, 1, 100.0, "pass"), (T0 + 5 * MINUTE_MS, 2, 40.0, "fail")]


def test_each_devices_records_are_counted_by_minute_when_the_minute_closes() -> None:
    """Two companies' devices at a shared site, and a repeat: each device's minute counts its
    own accepted records once, with its newest event time; a worker restarted from the state
    written before the minute closed counts the same."""
    minute = T0 + 10 * MINUTE_MS
    records = [
        record(0, "GJ-BUK-0002", minute + 1_000, 1.0),
        record(1, "GJ-BUK-0002", minute + 9_000, 1.0),
        record(2, "GJ-BUK-0002", minute + 5_000, 1.0, event_id="e1"),  # a repeat of offset 1
        record(3, "GJ-BUK-0002", minute + 4_000, 1.0, device="GJ-BUK-0002-SEN1"),
    ]
    closer = [record(4, "GJ-BUK-0002", minute + 3 * MINUTE_MS, 1.0)]

    def counted(result: BatchResult) -> set[tuple[str, str, int, float, float]]:
        return {
            (
                r.device_id,
                r.demonstration_id,
                r.records,
                r.bucket.timestamp() * 1000,
                r.last_event_at.timestamp() * 1000,
            )
            for r in result.device_minute_rows
        }

    first = processor()
    before = first.process(records, SNAPSHOT, now_ms=minute + 10_000)
    assert before.device_minute_rows == []  # the minute is still open
    expected = {
        ("GJ-BUK-0002-CAM1", "DEMO-A", 2, minute, minute + 9_000),
        ("GJ-BUK-0002-SEN1", "DEMO-B", 1, minute, minute + 4_000),
    }
    assert counted(first.process(closer, SNAPSHOT, now_ms=minute + 3 * MINUTE_MS)) == expected

    restarted = processor()
    durable = [(k, v) for k, v in before.state_writes if v is not None]
    restarted.restore(durable, SNAPSHOT, now_ms=minute + 20_000)
    again = restarted.process(closer, SNAPSHOT, now_ms=minute + 3 * MINUTE_MS)
    assert counted(again) == expected


def test_a_rejection_names_the_device_it_claims_to_be_from_and_where_the_broker_put_it() -> None:
    p = processor()
    garbage = raw(7, b'{"device_id": "GJ-BUK-0001-CAM1", "site_id": 5, "ts": "yesterday"}')
    forged = record(8, "GJ-BUK-0001", T0, 1.0, signing_key=b"x" * 32)
    result = p.process([garbage, forged], SNAPSHOT, now_ms=T0 + 1_000)
    rows = {r.offset: r for r in result.rejection_rows}
    assert set(rows) == {7, 8}
    assert (rows[7].device_id, rows[7].site_id, rows[7].event_ts) == (
        "GJ-BUK-0001-CAM1",
        None,
        None,
    )
    assert (rows[8].device_id, rows[8].site_id) == ("GJ-BUK-0001-CAM1", "GJ-BUK-0001")
    assert rows[8].event_ts is not None
    assert rows[8].event_ts.timestamp() * 1000 == T0
    assert [r.reason for r in sorted(result.rejection_rows)] == [d["reason"] for d in dlq(result)]


def test_a_regional_hub_judges_its_own_region_only_and_refuses_another_regions_records() -> None:
    """A federation's regional hub (HUB_REGIONS): a record of another region's site goes to the
    DLQ as site_mismatch naming the region, and that region's silent sites are not judged here
    (their own hub judges them: two hubs must not write verdicts on one site)."""
    config = ProcessorConfig(partitions=1, regions=frozenset({"gwangju"}))
    p = PartitionProcessor(0, config)
    records = [
        record(0, "GJ-BUK-0001", T0 + 1000, 10.0),
        record(1, "JN-MOKPO-0001", T0 + 2000, 10.0),
    ]
    result = p.process(records, SNAPSHOT, now_ms=T0 + 2000)
    assert result.counts.accepted == 1
    (refused,) = dlq(result)
    assert (refused["reason"], refused["offset"]) == ("site_mismatch", 1)
    assert "region jeonnam" in str(refused["detail"])
    ticked = p.tick(SNAPSHOT, now_ms=T0 + 2000 + 10 * MINUTE_MS)
    judged = {r.site_id for r in ticked.kpi_rows}
    assert judged == {"GJ-BUK-0001", "GJ-BUK-0002"}


def test_a_journal_chunk_goes_once_no_longer_needed_and_none_needed_goes() -> None:
    """A chunk is needed until its windows are emitted and its ids are past the de-duplication
    horizon: after every batch none that is obsolete is kept, none is deleted before, and each
    deletion is a tombstone in the state, in that batch or the few after it. (The sweep runs
    only when that horizon moves.)"""
    config = ProcessorConfig(lateness_ms=5_000, dedup_horizon_ms=120_000, partitions=1)
    p = PartitionProcessor(0, config)
    written: dict[bytes, bytes | None] = {}
    deleted = 0
    for second in range(8 * 60):
        ts = T0 + second * 1000
        kept = dict(p.chunks)
        result = p.process([record(second, "GJ-BUK-0001", ts, 5.0)], SNAPSHOT, now_ms=ts)
        written.update(result.state_writes)
        gone = kept.keys() - p.chunks.keys()
        assert all(p.windows.journal_is_obsolete(*kept[seq]) for seq in gone)
        assert not any(p.windows.journal_is_obsolete(*c) for c in p.chunks.values()), second
        deleted += len(gone)
    journal = {k for k, v in written.items() if b"|j|" in k}
    assert deleted > 4 * 60  # the chunks of the first minutes, past the horizon
    assert {k for k in journal if written[k] is not None} == {
        p.layout.journal(seq) for seq in [*p.chunks, *p.unswept]
    }
    assert len(p.unswept) <= 60  # at most the last close's


def test_a_close_leaves_the_deletion_of_the_chunks_it_found_obsolete_to_the_batches_after() -> None:
    """At 1 Hz a sweep finds up to a minute of chunks obsolete (one a batch): their deletions,
    each a RocksDB read and delete and a changelog record, would hold the worker's loop in the
    close, between the partitions' closing writes. No batch deletes more than SWEEP_PER_BATCH
    beyond the one chunk it writes while a sweep leaves more waiting; every one is deleted once,
    oldest first."""
    config = ProcessorConfig(lateness_ms=5_000, dedup_horizon_ms=120_000, partitions=1)
    p = PartitionProcessor(0, config)
    deleted: list[bytes] = []
    closes = waiting = 0
    for second in range(8 * 60):
        ts = T0 + second * 1000
        result = p.process([record(second, "GJ-BUK-0001", ts, 5.0)], SNAPSHOT, now_ms=ts)
        tombstones = [k for k, v in result.state_writes if b"|j|" in k and v is None]
        assert len(tombstones) <= SWEEP_PER_BATCH + 1  # + the batch's own chunk
        if result.aggregate_rows:
            closes += 1
            assert not p.windows.journal_is_obsolete(*p.chunks[min(p.chunks)])
            waiting = len(p.unswept)
        deleted += tombstones
    assert waiting > SWEEP_PER_BATCH  # a close's finds, left to the batches after it
    assert closes >= 7
    assert len(deleted) > 4 * 60
    assert len(set(deleted)) == len(deleted)
    seqs = [int(k.rsplit(b"|", 1)[1]) for k in deleted]
    assert seqs == sorted(seqs)  # oldest first


def test_a_partition_whose_every_batch_closes_still_deletes_its_obsolete_chunks() -> None:
    """A site reporting every two minutes alone on its partition: every batch closes a window.
    What one close found obsolete is deleted by the next batch at the latest: the journal keeps
    only the chunks still needed."""
    config = ProcessorConfig(lateness_ms=5_000, dedup_horizon_ms=120_000, partitions=1)
    p = PartitionProcessor(0, config)
    written: dict[bytes, bytes | None] = {}
    for i in range(30):
        ts = T0 + i * 2 * MINUTE_MS
        result = p.process([record(i, "GJ-BUK-0001", ts, 5.0)], SNAPSHOT, now_ms=ts)
        assert i < 2 or result.aggregate_rows, i
        written.update(result.state_writes)
    live = {k for k, v in written.items() if b"|j|" in k and v is not None}
    assert live == {p.layout.journal(seq) for seq in [*p.chunks, *p.unswept]}
    assert len(live) <= 4  # of 30 chunks written


def test_batches_of_many_chunks_delete_as_many_as_they_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch may write more chunks than SWEEP_PER_BATCH (HUB_BATCH_MAX above a few
    JOURNAL_CHUNKs; here a chunk per record): it deletes that many more, so what waits for
    deletion stays within one sweep's finds and the journal within what is needed."""
    monkeypatch.setattr(processor_module, "JOURNAL_CHUNK", 1)
    config = ProcessorConfig(lateness_ms=5_000, dedup_horizon_ms=120_000, partitions=1)
    p = PartitionProcessor(0, config)
    written: dict[bytes, bytes | None] = {}
    per_batch = 4 * SWEEP_PER_BATCH
    most_waiting = 0
    for second in range(10 * 60):
        ts = T0 + second * 1000
        batch = [
            record(second * per_batch + i, "GJ-BUK-0001", ts + i, 5.0) for i in range(per_batch)
        ]
        result = p.process(batch, SNAPSHOT, now_ms=ts)
        assert result.counts.accepted == per_batch
        written.update(result.state_writes)
        if second >= 5 * 60:
            most_waiting = max(most_waiting, len(p.unswept))
    live = {k for k, v in written.items() if b"|j|" in k and v is not None}
    assert live == {p.layout.journal(seq) for seq in [*p.chunks, *p.unswept]}
    assert most_waiting <= 70 * per_batch  # about a minute of chunks, not growing
    assert len(live) <= (120 + 70 + 70) * per_batch  # the horizon's, one sweep's, the lateness
