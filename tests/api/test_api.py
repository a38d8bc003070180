"""The management API on a real TimescaleDB: numbers equal hand-computed ones from seeded rows."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from hub.registry.files import read_registry
from hub.settings import Settings
from streams.rows import AlertRow
from streams.sink import SinkBatch, TimescaleSink
from tests.api.conftest import ApiServer, Scratch, get, post
from tests.conftest import run_hub
from tooling.stack import prereqs

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def sites(district: str, n: int) -> list[str]:
    return [s.site_id for s in read_registry().sites if s.district == district][:n]


DONG = sites("dong", 4)
BUK = sites("buk", 1)
MOKPO = sites("mokpo", 2)
# (site, window start in minutes ago, status): 5-minute windows of DEMO-001's latency_p95.
RESULTS = [
    (DONG[0], 180, "pass"),
    (DONG[0], 120, "pass"),
    (DONG[0], 60, "pass"),
    (DONG[1], 180, "pass"),
    (DONG[1], 120, "fail"),
    (DONG[1], 60, "pass"),
    (DONG[2], 60, "fail"),
    (DONG[2], 30, "pass"),
    (BUK[0], 30, "fail"),
    (MOKPO[0], 60, "pass"),
    (MOKPO[0], 30, "pass"),
    (MOKPO[1], 30, "pass"),
    (DONG[3], 2 * 24 * 60, "pass"),  # ended two days ago: in the scorecard, not the overview
]
LAST_SEEN = {DONG[0]: 10, DONG[1]: 20, DONG[2]: 30, DONG[3]: 120, MOKPO[0]: 5, MOKPO[1]: 15}


@pytest.fixture(scope="module")
async def seeded(scratch: Scratch) -> Scratch:
    conn = await asyncpg.connect(scratch.url)
    try:
        await conn.executemany(
            "INSERT INTO kpi_results (window_start, window_end, demonstration_id, site_id, kpi_id,"
            " value, threshold, status, samples) VALUES ($1, $2, 'DEMO-001', $3, 'latency_p95',"
            " $4, 250, $5, 40)",
            [
                (ago(m), ago(m - 5), site, 100.0 if status == "pass" else 400.0, status)
                for site, m, status in RESULTS
            ],
        )
        await conn.executemany(
            "INSERT INTO site_last_seen (site_id, last_event_at) VALUES ($1, $2)",
            [(site, ago(m)) for site, m in LAST_SEEN.items()],
        )
        # The newer minute arrives first, the older one later: "latest" is by event time.
        for bucket, count in ((ago(5), 10), (ago(10), 20)):
            await conn.execute(
                "INSERT INTO site_aggregates (bucket, site_id, demonstration_id, metric, count,"
                " sum, min, max, p50, p95, p99) VALUES ($1, $2, 'DEMO-001',"
                " 'inference_latency_ms', $3, $4, 50, 150, 90, 140, 149)",
                bucket,
                DONG[0],
                count,
                count * 90.0,
            )
    finally:
        await conn.close()
    return scratch


def test_overview_equals_the_hand_computed_numbers(seeded: Scratch, api: ApiServer) -> None:
    status, rows = get(api, "/api/v1/overview")
    assert status == 200
    by = {(r["region"], r["district"]): r for r in rows}
    assert len(by) == 5 + 22
    dong, buk, mokpo = by[("gwangju", "dong")], by[("gwangju", "buk")], by[("jeonnam", "mokpo")]
    assert (dong["sites"], dong["sites_reporting"], dong["kpi_pass"], dong["kpi_fail"]) == (
        244,
        3,
        6,
        2,
    )
    assert dong["compliance_pct"] == 75.0
    assert datetime.fromisoformat(dong["last_event_at"]) == ago(10)
    assert (buk["sites_reporting"], buk["kpi_pass"], buk["kpi_fail"], buk["compliance_pct"]) == (
        0,
        0,
        1,
        0.0,
    )
    assert (mokpo["sites_reporting"], mokpo["kpi_pass"], mokpo["compliance_pct"]) == (2, 3, 100.0)
    assert by[("gwangju", "seo")]["compliance_pct"] is None
    assert sum(r["sites"] for r in rows if r["region"] == "gwangju") == 3375


def test_overview_by_region(seeded: Scratch, api: ApiServer) -> None:
    status, rows = get(api, "/api/v1/overview?region=jeonnam")
    assert status == 200
    assert {r["region"] for r in rows} == {"jeonnam"}
    assert len(rows) == 22


def test_scorecard_equals_the_hand_computed_numbers(seeded: Scratch, api: ApiServer) -> None:
    status, card = get(api, "/api/v1/demonstrations/DEMO-001/scorecard")
    assert status == 200
    assert (card["company"], card["technology"]) == ("Company A", "traffic_hazard_detection")
    kpis = {k["kpi_id"]: k for k in card["kpis"]}
    p95 = kpis["latency_p95"]
    assert (p95["windows_judged"], p95["passed"], p95["failed"], p95["insufficient"]) == (
        13,
        10,
        3,
        0,
    )
    assert p95["pass_rate_pct"] == pytest.approx(76.9)
    # The newest window (30 minutes ago): Buk-gu failed it, so its status is fail.
    assert datetime.fromisoformat(p95["latest_window_start"]) == ago(30)
    assert p95["latest_status"] == "fail"
    assert (kpis["availability"]["windows_judged"], kpis["availability"]["latest_status"]) == (
        0,
        None,
    )


def test_report_command_agrees_with_the_api(seeded: Scratch, api: ApiServer) -> None:
    _, card = get(api, "/api/v1/demonstrations/DEMO-001/scorecard")
    as_json = run_hub("report", "DEMO-001", "--format", "json", env=seeded.env)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == card
    as_csv = run_hub("report", "DEMO-001", "--format", "csv", env=seeded.env)
    lines = as_csv.stdout.splitlines()
    assert lines[0].startswith("demonstration_id,company,title,technology,starts_on,ends_on,sites")
    row = next(line for line in lines if ",latency_p95," in line)
    assert ",13,10,3,0,0,76.9,fail," in row
    unknown = run_hub("report", "DEMO-404", env=seeded.env)
    assert unknown.returncode == 1
    assert "DEMO-404" in unknown.stderr


def test_a_site_shows_its_newest_minute_by_event_time(seeded: Scratch, api: ApiServer) -> None:
    status, site = get(api, f"/api/v1/sites/{DONG[0]}")
    assert status == 200
    assert site["district"] == "dong"
    assert site["devices"]
    latest = {a["metric"]: a for a in site["latest_aggregates"]}
    assert datetime.fromisoformat(latest["inference_latency_ms"]["bucket"]) == ago(5)
    assert latest["inference_latency_ms"]["count"] == 10
    statuses = {(k["demonstration_id"], k["kpi_id"]): k for k in site["kpi_statuses"]}
    assert datetime.fromisoformat(statuses[("DEMO-001", "latency_p95")]["window_start"]) == ago(60)


async def test_alert_lifecycle_open_acknowledged_resolved(
    seeded: Scratch, api: ApiServer, stack: Settings
) -> None:
    pool = await asyncpg.create_pool(seeded.url, min_size=1, max_size=2)
    assert pool is not None
    sink = TimescaleSink(pool)
    try:
        breach = AlertRow(
            "alert-breach-1",
            ago(55),
            "DEMO-001",
            DONG[2],
            "latency_p95",
            "breach",
            400.0,
            250.0,
            "open",
        )
        await sink.write(SinkBatch([], [], [breach]))
        status, open_alerts = get(api, "/api/v1/alerts?status=open")
        assert status == 200
        assert [a["alert_id"] for a in open_alerts] == ["alert-breach-1"]

        body = json.dumps({"by": "kim.operator", "note": "camera lens cleaned"}).encode()
        status, acked = post(api, "/api/v1/alerts/alert-breach-1/ack", body)
        assert status == 200
        assert (acked["status"], acked["acknowledged_by"], acked["note"]) == (
            "acknowledged",
            "kim.operator",
            "camera lens cleaned",
        )
        again, _ = post(api, "/api/v1/alerts/alert-breach-1/ack", body)
        assert again == 200
        assert get(api, "/api/v1/alerts?status=open")[1] == []

        recovered = AlertRow(
            "alert-recovered-1",
            ago(25),
            "DEMO-001",
            DONG[2],
            "latency_p95",
            "recovered",
            100.0,
            250.0,
            "resolved",
        )
        await sink.write(SinkBatch([], [], [recovered]))
        # A replayed breach (a worker restart) keeps what the operator did.
        await sink.write(SinkBatch([], [], [breach]))
        _, resolved = get(api, "/api/v1/alerts?status=resolved")
        by_id = {a["alert_id"]: a for a in resolved}
        assert by_id["alert-breach-1"]["acknowledged_by"] == "kim.operator"
        assert datetime.fromisoformat(by_id["alert-breach-1"]["resolved_at"]) == ago(25)
        conflict, error = post(api, "/api/v1/alerts/alert-breach-1/ack", body)
        assert conflict == 409
        assert "resolved" in error["detail"]
    finally:
        await pool.close()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/sites/GJ-NOWHERE-0001",
        "/api/v1/demonstrations/DEMO-404/scorecard",
        "/api/v1/overview?region=mars",  # the form of a region code, not one of the hub's
        "/api/v1/sites/%27%3B%20DROP%20TABLE%20sites%3B--",
        "/api/v1/no-such-endpoint",
    ],
)
def test_unknown_ids_answer_404_with_json(seeded: Scratch, api: ApiServer, path: str) -> None:
    status, body = get(api, path)
    assert status == 404
    assert "detail" in body


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/overview?region=Mars!",
        "/api/v1/alerts?status=closed",
        "/api/v1/alerts?limit=0",
        "/api/v1/alerts?limit=abc",
        "/api/v1/alerts?limit=100000",
        "/api/v1/sites/" + "X" * 200,
        "/api/v1/overview?regoin=jeonnam",  # a mistyped filter, not everything unfiltered
        "/api/v1/alerts?status=open&status=resolved",
        "/api/v1/alerts?site_id=",
    ],
)
def test_malformed_parameters_answer_422_with_json(
    seeded: Scratch, api: ApiServer, path: str
) -> None:
    status, body = get(api, path)
    assert status == 422
    assert body["detail"]


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"by": ""}', b'{"by": 5}', b"[]"])
def test_a_malformed_ack_answers_422(seeded: Scratch, api: ApiServer, body: bytes) -> None:
    status, _ = post(api, "/api/v1/alerts/alert-breach-1/ack", body)
    assert status == 422


def test_openapi_documents_the_contract_paths(api: ApiServer) -> None:
    status, document = get(api, "/openapi.json")
    assert status == 200
    assert {
        "/api/v1/overview",
        "/api/v1/sites/{site_id}",
        "/api/v1/demonstrations/{demonstration_id}/scorecard",
        "/api/v1/alerts",
        "/api/v1/alerts/{alert_id}/ack",
        "/api/v1/sites/{site_id}/aggregates",
        "/api/v1/demonstrations/{demonstration_id}/kpi-results",
        "/api/v1/export/site-aggregates",
        "/healthz",
    } <= set(document["paths"])


def test_healthz_answers_200_when_both_answer(api: ApiServer) -> None:
    status, body = get(api, "/healthz")
    assert (status, body["checks"]) == (200, {"database": "ok", "kafka": "ok"})


def test_any_rate_of_health_probes_costs_one_check_every_few_seconds(api: ApiServer) -> None:
    """/healthz is open (probes carry no token): it answers from its last check of the database
    and Kafka, made at most every 5 s, so a flood of calls opens no client per call."""

    def checks() -> float:
        with urllib.request.urlopen(f"{api.base}/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("hub_api_health_checks_total")
        )

    before = checks()
    began = time.monotonic()
    answers = {get(api, "/healthz")[0] for _ in range(50)}
    took = time.monotonic() - began
    assert answers == {200}
    assert checks() - before <= math.ceil(took / 5) + 1


def test_healthz_answers_503_naming_what_failed(scratch: Scratch, tmp_path: Any) -> None:
    server = ApiServer({**scratch.env, "HUB_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, tmp_path / "api.log")
    try:
        server.wait_serving()
        status, body = get(server, "/healthz")
    finally:
        server.stop()
    assert status == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["kafka"].startswith("error")


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(*args: str, profile: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_the_page_in_headless_chromium_shows_every_district(
    seeded: Scratch, api: ApiServer, tmp_path: Any
) -> None:
    prereqs.ensure([prereqs.CHROMIUM], print)
    # The link `hub access add-token` prints: the page trades the token for its cookie.
    rendered = chromium(
        "--virtual-time-budget=5000",
        "--dump-dom",
        f"{api.base}/#token={api.token}",
        profile=tmp_path / "profile",
    )
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = rendered.stdout.decode()
    districts = re.findall(
        r'data-region="(\w+)" data-district="(\w+)" data-compliance="([^"]+)"', dom
    )
    shown = {(region, district): compliance for region, district, compliance in districts}
    assert len(shown) == 5 + 22
    assert shown[("gwangju", "dong")] == "75.0%"
    assert shown[("gwangju", "buk")] == "0.0%"
    assert shown[("jeonnam", "mokpo")] == "100.0%"
    assert shown[("gwangju", "seo")] == "no data"
    assert "DEMO-001" in dom  # a failing demonstration
    # Five sites reported in the last hour: three in Dong-gu, two in Mokpo.
    assert "<b>5</b> of 3,705 sites reporting" in dom

    screenshot = tmp_path / "management-view.png"
    shot = chromium(
        "--window-size=1280,1600",
        f"--screenshot={screenshot}",
        api.base + "/",
        profile=tmp_path / "profile",
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000
