"""The stream processors on the real broker and database.

Records are published by a plain aiokafka producer (any Kafka client, not the hub's device client)
for sites of the test demonstration DEMO-T01, whose 1-minute KPIs are judged within seconds with
the fast worker settings. Each scenario owns its partitions (event time is per partition) and
ends with one "pusher" event per site past the window's end plus lateness, which closes it.
"""

from __future__ import annotations

import base64
import gzip
import json
import signal
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from hub import principals, topics
from hub.registry.files import read_registry
from hub.settings import Settings
from tests.conftest import FAST_WORKER_ENV, TEST_DEMO, WorkerProcess
from tests.support import (
    committed_offsets,
    end_offsets,
    eventually,
    fetch,
    install_test_keys,
    partition_of,
    read_since,
    record,
    send_all,
)

LATENESS_MS = int(FAST_WORKER_ENV["HUB_ALLOWED_LATENESS"]) * 1000
MINUTE_MS = 60_000
T = TypeVar("T")


def sites_in(partition: int, region: str, partitions: int, skip: int = 0) -> str:
    """A site of ``region`` whose records land on ``partition``."""
    matches = [
        s.site_id
        for s in read_registry().sites
        if s.region == region and partition_of(s.site_id, partitions) == partition
    ]
    return matches[skip]


def next_minute(after_ms: int) -> int:
    return after_ms - after_ms % MINUTE_MS + MINUTE_MS


def scenario_minute(
    workers: WorkerProcess | list[WorkerProcess],
    partitions: list[int],
    within_ms: int = MINUTE_MS + 2000,
) -> int:
    """The first minute whose events are not late on these partitions: after the wall clock and
    after any watermark an earlier run's pushers left ahead of it. If that minute is more than
    ``within_ms`` away (a fast rerun), wait for the wall clock, so that every event of the
    scenario stays well inside the 5 minutes of clock skew the tests allow."""
    names = [f'hub_watermark_lag_seconds{{partition="{p}"}}' for p in partitions]
    deadline = time.monotonic() + 240
    while True:  # a worker reports a partition's watermark after its first batch or tick
        samples = {
            k: v
            for w in (workers if isinstance(workers, list) else [workers])
            for k, v in w.metrics().items()
        }
        now = int(time.time() * 1000)
        if all(name in samples for name in names):
            ahead = [now - int(samples[name] * 1000) for name in names]
            minute = next_minute(max([now + 2000, *(w + LATENESS_MS for w in ahead)]))
            if minute - now <= within_ms:
                return minute
        assert time.monotonic() < deadline, f"partitions {partitions} stayed ahead of the clock"
        time.sleep(0.5)


async def publish(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    await send_all(settings, topics.TELEMETRY, records, sign=True)


async def window_counts(
    settings: Settings, sites: list[str], metric: str, bucket_ms: int
) -> dict[str, int] | None:
    rows = await fetch(
        settings.database_url,
        "SELECT site_id, count FROM site_aggregates WHERE site_id = ANY($1) AND metric = $2 "
        "AND bucket = $3",
        sites,
        metric,
        datetime.fromtimestamp(bucket_ms / 1000, UTC),
    )
    counts = {r["site_id"]: r["count"] for r in rows}
    return counts if len(counts) == len(sites) else None


# -- scenario 1: a known stream with every kind of trouble ---------------------------------------


@dataclass
class Outcome:
    minute_ms: int
    a: str  # Gwangju site: a known latency series (KPI pass)
    b: str  # South Jeolla site
    c: str  # Gwangju site: out of order, a duplicate, slow (KPI fail, breach)
    bad: dict[str, bytes] = field(default_factory=dict)
    late: bytes = b""
    aggregates: list[asyncpg.Record] = field(default_factory=list)
    kpis: list[asyncpg.Record] = field(default_factory=list)
    alerts: list[asyncpg.Record] = field(default_factory=list)
    dlq: list[dict[str, Any]] = field(default_factory=list)
    partner: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # The wall clock before any record was sent: rejections are dated by their arrival, which
    # can come before the scenario's minute - 1 (that minute is up to 62 s ahead of the clock).
    began_ms: int = field(default_factory=lambda: int(time.time() * 1000) - 1000)


# Pushers carry a metric of their own, so they never add to the counts a test checks.
PUSH = {"test_push": 1.0}
A_LATENCIES = [60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 200.0]


@pytest.fixture(scope="module")
async def outcome(worker: WorkerProcess, registry_with_test_demo: Settings) -> Outcome:
    settings = registry_with_test_demo
    n = settings.partitions
    out = Outcome(
        minute_ms=scenario_minute(worker, [0, 1, 2]),
        a=sites_in(0, "gwangju", n),
        b=sites_in(1, "jeonnam", n),
        c=sites_in(2, "gwangju", n),
    )
    m = out.minute_ms
    watched = [
        topics.DLQ,
        *(
            topics.partner_topic(r, d)
            for r in ("gwangju", "jeonnam")
            for d in ("kpi-results", "kpi-alerts")
        ),
    ]
    starts = {t: await end_offsets(settings, t) for t in watched}

    records: list[tuple[str, bytes]] = [
        (
            out.a,
            record(
                out.a,
                m + 1000 * (i + 1),
                {"test_latency_ms": v, "test_online": 1},
                event_id=f"{out.a}-{m}-{i}",
            ),
        )
        for i, v in enumerate(A_LATENCIES)
    ]
    c_events = {
        i: record(
            out.c,
            m + 10_000 * i,
            {"test_latency_ms": 500.0, "test_online": 1},
            event_id=f"{out.c}-{m}-{i}",
        )
        for i in range(1, 6)
    }
    records += [(out.c, c_events[i]) for i in (3, 1, 5, 2, 4)]  # out of order
    records.append((out.c, c_events[3]))  # a device retry: the same bytes again
    records += [
        (
            out.b,
            record(
                out.b,
                m + 5000 * (i + 1),
                {"test_latency_ms": 50.0, "test_online": 1},
                event_id=f"{out.b}-{m}-{i}",
            ),
        )
        for i in range(3)
    ]
    out.bad = {
        "malformed_json": b'{"schema": "telemetry/1", "event_id": ',
        "too_large": record(out.c, m + 1000, {"test_online": 1})[:-1]
        + b', "padding": "'
        + b"x" * 70_000
        + b'"}',
        "unknown_device": record(out.c, m + 1000, {"test_online": 1}, device="GJ-NOPE-0001-TST1"),
        "site_mismatch": record(out.c, m + 1000, {"test_online": 1}, device=f"{out.b}-TST1"),
        "schema_violation": json.dumps(
            {
                **json.loads(record(out.c, m + 1000, {"test_online": 1})),
                "metrics": {"test_online": "one"},
            }
        ).encode(),
        "clock_skew": record(out.c, int(time.time() * 1000) + 600_000, {"test_online": 1}),
    }
    records += [(out.c, value) for value in out.bad.values()]
    # C's next minute is fast: fail then pass, so a breach and a recovery whatever came before.
    records += [
        (
            out.c,
            record(
                out.c,
                m + MINUTE_MS + 1000 * i,
                {"test_latency_ms": 50.0},
                event_id=f"{out.c}-{m}-next-{i}",
            ),
        )
        for i in range(1, 6)
    ]
    # Pushers: event time past the window's end plus lateness closes the scenario's minutes.
    push = m + MINUTE_MS + LATENESS_MS + 1000
    records += [(site, record(site, push, PUSH)) for site in (out.a, out.b)]
    records.append((out.c, record(out.c, push + MINUTE_MS, PUSH)))
    out.late = record(out.c, m + 15_000, {"test_online": 1}, event_id=f"{out.c}-{m}-late")
    records.append((out.c, out.late))
    await publish(settings, records)

    sites = [out.a, out.b, out.c]

    async def kpis_judged() -> list[asyncpg.Record] | None:
        rows = await fetch(
            settings.database_url,
            "SELECT * FROM kpi_results WHERE demonstration_id = $1 AND site_id = ANY($2) "
            "AND window_start = $3 ORDER BY site_id, kpi_id",
            TEST_DEMO,
            sites,
            datetime.fromtimestamp(m / 1000, UTC),
        )
        recovered = await fetch(
            settings.database_url,
            "SELECT 1 FROM kpi_results WHERE demonstration_id = $1 AND site_id = $2 "
            "AND kpi_id = 'latency_p50' AND window_start = $3",
            TEST_DEMO,
            out.c,
            datetime.fromtimestamp((m + MINUTE_MS) / 1000, UTC),
        )
        return rows if len(rows) == 6 and recovered else None

    out.kpis = await eventually(kpis_judged, "the KPI results of the scenario's minute")
    out.aggregates = await fetch(
        settings.database_url,
        "SELECT * FROM site_aggregates WHERE site_id = ANY($1) AND bucket = $2",
        sites,
        datetime.fromtimestamp(m / 1000, UTC),
    )
    out.alerts = await fetch(
        settings.database_url,
        "SELECT * FROM kpi_alerts WHERE demonstration_id = $1 AND site_id = ANY($2) "
        "AND ts BETWEEN $3 AND $4 ORDER BY ts",
        TEST_DEMO,
        sites,
        datetime.fromtimestamp((m + MINUTE_MS) / 1000, UTC),
        datetime.fromtimestamp((m + 2 * MINUTE_MS) / 1000, UTC),
    )

    expected = {**out.bad, "late": out.late}
    missing: list[str] = []

    async def dlq_arrived() -> list[Any] | None:
        rows = await read_since(settings, starts[topics.DLQ])
        found = {base64.b64decode(r["value_b64"]) for r in rows}
        missing[:] = [name for name, value in expected.items() if value not in found]
        return rows if not missing else None

    try:
        out.dlq = await eventually(dlq_arrived, "the scenario's rejected records in the DLQ")
    except AssertionError as error:
        raise AssertionError(f"{error}; still missing: {missing}") from None
    out.partner = {t: await read_since(settings, starts[t]) for t in watched[1:]}
    return out


def test_a_known_stream_gives_exact_aggregates(outcome: Outcome) -> None:
    got = {(r["site_id"], r["metric"]): r for r in outcome.aggregates}
    a = got[(outcome.a, "test_latency_ms")]
    assert (a["count"], a["sum"], a["min"], a["max"]) == (7, sum(A_LATENCIES), 60.0, 200.0)
    assert a["p50"] == pytest.approx(90.0, rel=0.01)  # DDSketch: within 1 %
    # Five events out of order plus one repeated event_id: five, once each.
    assert got[(outcome.c, "test_online")]["count"] == 5
    assert got[(outcome.b, "test_online")]["count"] == 3


async def test_the_worker_commits_what_it_processed(
    worker: WorkerProcess, outcome: Outcome, registry_with_test_demo: Settings
) -> None:
    """Records reach the hub in fetched batches, outside Faust's streams: their offsets must
    still be committed, or every restart would read the backlog again and the group's lag in
    Kafka would grow for ever."""
    settings = registry_with_test_demo

    async def committed_to_the_end() -> dict[Any, int] | None:
        end = await end_offsets(settings, topics.TELEMETRY)
        committed = await committed_offsets(settings, worker.env["HUB_APP_ID"], topics.TELEMETRY)
        return committed if committed == end else None

    await eventually(committed_to_the_end, "the worker's commits to reach the log end")


def test_kpis_are_judged_as_computed_by_hand(outcome: Outcome) -> None:
    got = {(r["site_id"], r["kpi_id"]): r for r in outcome.kpis}
    a_p50 = got[(outcome.a, "latency_p50")]
    assert a_p50["status"] == "pass"
    assert a_p50["value"] == pytest.approx(90.0, rel=0.01)
    assert a_p50["samples"] == 7
    assert got[(outcome.a, "events")]["value"] == 7
    assert got[(outcome.c, "latency_p50")]["status"] == "fail"
    assert got[(outcome.c, "events")]["status"] == "pass"
    assert got[(outcome.b, "events")]["value"] == 3
    assert (got[(outcome.b, "events")]["status"], got[(outcome.b, "latency_p50")]["status"]) == (
        "pass",
        "insufficient_data",
    )  # 3 samples, fewer than min_samples 5


def test_a_failing_kpi_breaches_and_a_passing_one_recovers_and_resolves_it(
    outcome: Outcome,
) -> None:
    c = [
        (r["kpi_id"], r["transition"], r["status"])
        for r in outcome.alerts
        if r["site_id"] == outcome.c and r["kpi_id"] == "latency_p50"
    ]
    # The breach is resolved by the recovery that follows it.
    assert c == [("latency_p50", "breach", "resolved"), ("latency_p50", "recovered", "resolved")]


def test_every_bad_record_lands_in_the_dlq_with_its_reason_and_bytes(outcome: Outcome) -> None:
    by_value = {base64.b64decode(r["value_b64"]): r for r in outcome.dlq}
    for reason, value in outcome.bad.items():
        assert by_value[value]["reason"] == reason, reason
        assert by_value[value]["topic"] == topics.TELEMETRY
    assert by_value[outcome.late]["reason"] == "late"
    assert "closed" in by_value[outcome.late]["detail"]
    assert by_value[outcome.bad["schema_violation"]]["detail"].startswith("metrics.test_online")


async def test_each_devices_minute_counts_its_accepted_records_exactly(
    outcome: Outcome, registry_with_test_demo: Settings
) -> None:
    """The scenario's minute: A's device 7 records, C's 5 (out of order, one repeated, the bad
    and late ones not counted), B's 3; each with its newest event time."""
    rows = await fetch(
        registry_with_test_demo.database_url,
        "SELECT device_id, demonstration_id, records, last_event_at FROM device_minutes "
        "WHERE device_id = ANY($1) AND bucket = $2",
        [f"{s}-TST1" for s in (outcome.a, outcome.b, outcome.c)],
        datetime.fromtimestamp(outcome.minute_ms / 1000, UTC),
    )
    m = outcome.minute_ms
    assert {
        (r["device_id"], r["demonstration_id"], r["records"], r["last_event_at"].timestamp() * 1000)
        for r in rows
    } == {
        (f"{outcome.a}-TST1", TEST_DEMO, 7, m + 7000),
        (f"{outcome.c}-TST1", TEST_DEMO, 5, m + 50_000),
        (f"{outcome.b}-TST1", TEST_DEMO, 3, m + 15_000),
    }


def gzipped_lines(url: str, token: str) -> list[str]:
    """A CSV export asked for compressed: it must come compressed."""
    request = urllib.request.Request(
        url, headers={"authorization": f"Bearer {token}", "accept-encoding": "gzip"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["content-encoding"] == "gzip"
        return gzip.decompress(response.read()).decode().splitlines()


async def test_a_company_reads_why_its_records_were_refused_and_its_competitor_does_not(
    outcome: Outcome, registry_with_test_demo: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.api.conftest import ApiServer, get, issue_token

    suffix = uuid.uuid4().hex[:8]
    own = await issue_token({}, "company:Test Co", f"testco-{suffix}")
    rival = await issue_token({}, "company:ParkEye", f"parkeye-{suffix}")
    log = tmp_path_factory.mktemp("self-service") / "api.log"
    api = ApiServer({}, log, token=own)
    try:
        api.wait_serving()
        device = f"{outcome.c}-TST1"
        start_ms = min(outcome.minute_ms - MINUTE_MS, outcome.began_ms)
        start = datetime.fromtimestamp(start_ms / 1000, UTC).isoformat()
        query = f"/api/v1/rejections?device_id={device}&from={start.replace('+', '%2B')}"
        # (Rejections are dated by their arrival: now, whatever minute the records name.)
        status, seen = get(api, query)
        assert status == 200, seen
        reasons = {r["reason"] for r in seen}
        assert {"clock_skew", "schema_violation", "late", "too_large"} <= reasons
        by_reason = {r["reason"]: r for r in seen}
        assert by_reason["schema_violation"]["detail"].startswith("metrics.test_online")
        assert by_reason["late"]["site_id"] == outcome.c
        status, mismatch = get(api, query.replace(device, f"{outcome.b}-TST1"))
        assert "site_mismatch" in {r["reason"] for r in mismatch}
        assert get(api, query, rival) == (200, [])
        assert get(api, query + "&reason=no_such_reason")[0] == 422

        status, devices = get(api, f"/api/v1/devices?demonstration_id={TEST_DEMO}")
        assert status == 200
        mine = {d["device_id"]: d for d in devices}
        assert mine[device]["rejected_today_by_reason"].keys() >= {"clock_skew", "late"}
        assert mine[f"{outcome.a}-TST1"]["last_seen"] is not None
        assert get(api, f"/api/v1/devices?demonstration_id={TEST_DEMO}", rival)[0] == 404
        assert get(api, "/api/v1/devices", rival)[0] == 200
        assert device not in json.dumps(get(api, "/api/v1/devices", rival)[1])

        # The scenario's minute may lie ahead of the clock (after an earlier run's pushers).
        end = datetime.fromtimestamp((outcome.minute_ms + 5 * MINUTE_MS) / 1000, UTC)
        span = f"from={start.replace('+', '%2B')}&to={end.isoformat().replace('+', '%2B')}"
        lines = gzipped_lines(
            f"{api.base}/api/v1/export/demonstrations/{TEST_DEMO}/aggregates?{span}", own
        )
        assert lines[0].startswith("site_id,demonstration_id,metric,bucket,count")
        bucket = datetime.fromtimestamp(outcome.minute_ms / 1000, UTC).isoformat()
        assert f"{outcome.a},{TEST_DEMO},test_latency_ms,{bucket},7," in "\n".join(lines)
        assert {line.split(",")[1] for line in lines[1:]} == {TEST_DEMO}
    finally:
        api.stop()


def test_partner_topics_hold_only_their_region(outcome: Outcome) -> None:
    for topic, messages in outcome.partner.items():
        region = topic.split(".")[1]
        assert {m["region"] for m in messages} <= {region}, topic
        prefix = "GJ-" if region == "gwangju" else "JN-"
        assert all(m["site_id"].startswith(prefix) for m in messages), topic
    gwangju = {m["site_id"] for m in outcome.partner["partner.gwangju.kpi-results.v1"]}
    jeonnam = {m["site_id"] for m in outcome.partner["partner.jeonnam.kpi-results.v1"]}
    assert {outcome.a, outcome.c} <= gwangju
    assert outcome.b in jeonnam
    assert outcome.c in {m["site_id"] for m in outcome.partner["partner.gwangju.kpi-alerts.v1"]}


# -- scenario 2: a worker killed mid-stream and restarted ----------------------------------------


async def test_a_killed_and_restarted_worker_continues_with_exact_counts(
    worker: WorkerProcess, registry_with_test_demo: Settings
) -> None:
    settings = registry_with_test_demo
    sites = [
        sites_in(3, "gwangju", settings.partitions),
        sites_in(4, "gwangju", settings.partitions),
    ]
    m = scenario_minute(worker, [3, 4])
    first = [
        (s, record(s, m + 1000 * i, {"test_online": 1}, event_id=f"{s}-{m}-{i}"))
        for s in sites
        for i in range(1, 11)
    ]
    second = [
        (s, record(s, m + 1000 * i, {"test_online": 1}, event_id=f"{s}-{m}-{i}"))
        for s in sites
        for i in range(11, 21)
    ]
    before = worker.metrics()
    accepted = sum(v for k, v in before.items() if k.startswith("hub_records_accepted_total"))
    await publish(settings, first)

    async def first_half_taken() -> bool | None:
        now = sum(
            v for k, v in worker.metrics().items() if k.startswith("hub_records_accepted_total")
        )
        return True if now >= accepted + len(first) else None

    await eventually(first_half_taken, "the worker to accept the first half")
    worker.stop(signal.SIGKILL)  # no goodbye: offsets may lag what was processed
    # While it is down: the second half, and every first-half event again (device retries).
    await publish(settings, second + first)
    worker.start().wait_ready()
    push = m + MINUTE_MS + LATENESS_MS + 1000
    await publish(settings, [(s, record(s, push, PUSH)) for s in sites])

    counts = await eventually(
        lambda: window_counts(settings, sites, "test_online", m),
        "the minute's windows after the restart",
    )
    assert counts == {s: 20 for s in sites}


# -- scenario 3: two workers share the partitions -------------------------------------------------


async def test_two_workers_share_the_partitions_and_count_exactly(
    worker: WorkerProcess, registry_with_test_demo: Settings, worker_logs: Any
) -> None:
    settings = registry_with_test_demo
    second = WorkerProcess(1, worker_logs, {"HUB_APP_ID": worker.env["HUB_APP_ID"]}).start()
    try:
        second.wait_ready()

        async def balanced() -> bool | None:
            owned = [w.metrics().get("hub_partitions_assigned", 0) for w in (worker, second)]
            return True if all(owned) and sum(owned) == settings.partitions else None

        await eventually(balanced, "both workers to own partitions")
        received = [w.metrics().get("hub_records_received_total", 0) for w in (worker, second)]
        sites = [sites_in(p, "gwangju", settings.partitions) for p in range(5, 12)]
        m = scenario_minute([worker, second], list(range(5, 12)))
        records = [
            (s, record(s, m + 1000 * i, {"test_online": 1}, event_id=f"{s}-{m}-{i}"))
            for s in sites
            for i in range(1, 7)
        ]
        push = m + MINUTE_MS + LATENESS_MS + 1000
        records += [(s, record(s, push, PUSH)) for s in sites]
        await publish(settings, records)

        counts = await eventually(
            lambda: window_counts(settings, sites, "test_online", m),
            "the windows of seven partitions",
        )
        assert counts == {s: 6 for s in sites}
        after = [w.metrics().get("hub_records_received_total", 0) for w in (worker, second)]
        assert all(a > b for a, b in zip(after, received, strict=True)), (received, after)
    finally:
        second.stop()

    async def taken_back() -> bool | None:
        owned = worker.metrics().get("hub_partitions_assigned", 0)
        return True if owned == settings.partitions else None

    await eventually(taken_back, "the remaining worker to take every partition back")


# -- scenario 4: a registry fix picked up live, then the DLQ replayed -----------------------------


async def test_a_registry_fix_is_picked_up_and_a_replayed_record_counts_once(
    worker: WorkerProcess, registry_with_test_demo: Settings, tmp_path: Any
) -> None:
    from tests.conftest import registry_dir_with_test_demo, run_hub_async

    settings = registry_with_test_demo
    site = sites_in(0, "gwangju", settings.partitions, skip=1)
    device = f"{site}-NEW1"
    # Partition 0's event time stands up to two minutes ahead after the first scenario's pushers
    # (an idle partition's clock waits for the wall clock): take the minute after it, up to
    # 3 minutes ahead, rather than wait for the wall clock. The last scenario on partition 0.
    m = scenario_minute(worker, [0], within_ms=3 * MINUTE_MS)
    orphan = record(site, m + 1000, {"test_online": 1}, device=device, event_id=f"{device}-{m}")
    await publish(settings, [(site, orphan)])

    async def rejected() -> bool | None:
        listed = await run_hub_async(
            "dlq",
            "list",
            "--reason",
            "unknown_device",
            "--json",
            "--since",
            "5m",
            "--limit",
            "0",
            "--hub",
            worker.env["HUB_APP_ID"],
        )
        values = [
            base64.b64decode(json.loads(line)["value_b64"]) for line in listed.stdout.splitlines()
        ]
        return True if orphan in values else None

    await eventually(rejected, "the unregistered device's record in `hub dlq list`")

    fixed = registry_dir_with_test_demo(tmp_path / "registry")
    with (fixed / "devices.csv").open("a") as out:
        out.write(f"{device},{site},{TEST_DEMO},test\n")
    load = await run_hub_async("registry", "load", "--dir", str(fixed))
    assert load.returncode == 0, load.stderr
    await install_test_keys(settings.database_url)  # its key, as `hub access add-device` issues
    loaded_before = time.time()

    async def refreshed() -> bool | None:
        now = worker.metrics().get("hub_registry_loaded_timestamp_seconds", 0)
        return True if now > loaded_before else None

    await eventually(refreshed, "the running worker to reload the registry")
    try:
        for _ in range(2):  # the second replay is a repeat of the same event_id
            replay = await run_hub_async(
                "dlq",
                "replay",
                "--reason",
                "unknown_device",
                "--since",
                "5m",
                "--hub",
                worker.env["HUB_APP_ID"],
            )
            assert replay.returncode == 0, replay.stderr
            assert "replayed" in replay.stdout
        push = m + MINUTE_MS + LATENESS_MS + 1000
        await publish(settings, [(site, record(site, push, PUSH))])
        counts = await eventually(
            lambda: window_counts(settings, [site], "test_online", m),
            "the replayed record's window",
        )
        assert counts == {site: 1}
    finally:
        restored = await run_hub_async(
            "registry", "load", "--dir", str(registry_dir_with_test_demo(tmp_path / "again"))
        )
        assert restored.returncode == 0, restored.stderr


async def test_dlq_list_skips_what_is_not_a_rejected_record(stack: Settings) -> None:
    """The DLQ topic is shared: whatever another producer wrote there must not break the tool."""
    from tests.conftest import run_hub_async

    producer = AIOKafkaProducer(**principals.client(stack))
    await producer.start()
    try:
        await producer.send_and_wait(topics.DLQ, b'{"not": "a rejected record"}', partition=0)
    finally:
        await producer.stop()
    listed = await run_hub_async("dlq", "list", "--since", "2m", "--limit", "1", "--hub", "any")
    assert listed.returncode == 0, listed.stderr
    assert "not rejected records" in listed.stderr
