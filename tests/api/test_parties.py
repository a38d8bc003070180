"""Every party at a shared site, on the real API and database: ParkEye (DEMO-005) and its
competitor Firewatch (DEMO-008) share GJ-BUK sites in Gwangju; South Jeolla's partner sees
Firewatch's demonstration over its own sites only; procurement reads everything and changes
nothing; a citizen without a token sees the public page and nothing else."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from hub.registry.files import read_registry
from hub.registry.model import KST
from tests.api.conftest import ApiServer, Scratch, get, issue_token, post

REGISTRY = read_registry()
REGION = {s.site_id: s.region for s in REGISTRY.sites}
COMPANY = {d.demonstration_id: d.company for d in REGISTRY.demonstrations}
SITES: dict[str, set[str]] = {}
for _device in REGISTRY.devices:
    SITES.setdefault(_device.demonstration_id, set()).add(_device.site_id)
SHARED = sorted(SITES["DEMO-005"] & SITES["DEMO-008"])[0]  # in Gwangju
FIREWATCH_IN_JEONNAM = sorted(s for s in SITES["DEMO-008"] if REGION[s] == "jeonnam")[0]
IN_JEONNAM = sorted(d for d, sites in SITES.items() if any(REGION[s] == "jeonnam" for s in sites))
SITE_ID = re.compile(r"\b(GJ|JN)-[A-Z]+-\d{4}\b")


@pytest.fixture(scope="module")
async def parties(scratch: Scratch) -> Scratch:
    """Tokens for Firewatch and procurement besides the module's; at the shared site a passing
    window of ParkEye's and a failing one of Firewatch's with its open alert; a passing window
    of Firewatch's in South Jeolla; one window each of DEMO-003 and DEMO-012 (one technology)."""
    tokens = {
        **scratch.tokens,
        "firewatch": await issue_token(scratch.env, "company:Firewatch", "firewatch"),
        "procurement": await issue_token(scratch.env, "procurement", "procurement-office"),
    }
    conn = await asyncpg.connect(scratch.url)
    try:
        await conn.executemany(
            "INSERT INTO kpi_results (window_start, window_end, demonstration_id, site_id,"
            " kpi_id, value, threshold, status, samples) VALUES (date_trunc('minute', now())"
            " - interval '1 hour', date_trunc('minute', now()), $1, $2, $3, $4, 1, $5, 60)",
            [
                ("DEMO-005", SHARED, "read_accuracy", 99.0, "pass"),
                ("DEMO-008", SHARED, "latency_max", 999.0, "fail"),
                ("DEMO-008", FIREWATCH_IN_JEONNAM, "latency_max", 1.0, "pass"),
                ("DEMO-003", sorted(SITES["DEMO-003"])[0], "error_mean", 1.0, "pass"),
                ("DEMO-012", sorted(SITES["DEMO-012"])[0], "error_mean", 1.0, "fail"),
            ],
        )
        await conn.execute(
            "INSERT INTO kpi_alerts (alert_id, ts, demonstration_id, site_id, kpi_id, transition,"
            " value, threshold, status) VALUES ('parties-fw', now(), 'DEMO-008', $1,"
            " 'latency_max', 'breach', 999, 1, 'open')",
            SHARED,
        )
    finally:
        await conn.close()
    return Scratch(scratch.url, scratch.env, tokens)


def own(company: str) -> set[str]:
    return {d for d, c in COMPANY.items() if c == company}


@pytest.mark.parametrize(
    ("name", "mine", "theirs"),
    [("parkeye", "DEMO-005", "DEMO-008"), ("firewatch", "DEMO-008", "DEMO-005")],
)
def test_a_company_and_its_competitor_each_see_their_own(
    parties: Scratch, api: ApiServer, name: str, mine: str, theirs: str
) -> None:
    token = parties.tokens[name]
    status, demos = get(api, "/api/v1/demonstrations", token)
    assert status == 200
    assert {d["demonstration_id"] for d in demos} == own(COMPANY[mine])
    assert get(api, f"/api/v1/demonstrations/{mine}/scorecard", token)[0] == 200
    for path in ("scorecard", "kpi-results", "evidence"):
        assert get(api, f"/api/v1/demonstrations/{theirs}/{path}", token)[0] == 404, path
    status, results = get(api, f"/api/v1/demonstrations/{mine}/kpi-results", token)
    assert status == 200
    assert {r["site_id"] for r in results} <= SITES[mine]
    status, alerts = get(api, "/api/v1/alerts", token)
    assert (status, [a["alert_id"] for a in alerts]) == (
        200,
        ["parties-fw"] if mine == "DEMO-008" else [],
    )
    assert get(api, "/api/v1/compare?technology=fire_detection", token)[0] == 403


def test_the_partner_of_the_other_region_reads_the_demonstrations_there_over_its_sites(
    parties: Scratch, api: ApiServer
) -> None:
    token = parties.tokens["jeonnam"]
    status, demos = get(api, "/api/v1/demonstrations", token)
    assert status == 200
    assert sorted(d["demonstration_id"] for d in demos) == IN_JEONNAM
    firewatch = next(d for d in demos if d["demonstration_id"] == "DEMO-008")
    in_jeonnam = {s for s in SITES["DEMO-008"] if REGION[s] == "jeonnam"}
    assert (firewatch["sites"], firewatch["kpi_pass_24h"], firewatch["kpi_fail_24h"]) == (
        len(in_jeonnam),
        1,
        0,
    )
    assert firewatch["open_alerts"] == 0  # its alert is at the Gwangju site
    status, card = get(api, "/api/v1/demonstrations/DEMO-008/scorecard", token)
    assert status == 200
    assert (card["region"], card["sites"]) == ("jeonnam", len(in_jeonnam))
    latency = next(k for k in card["kpis"] if k["kpi_id"] == "latency_max")
    assert (latency["windows_judged"], latency["passed"], latency["failed"]) == (1, 1, 0)
    status, results = get(api, "/api/v1/demonstrations/DEMO-008/kpi-results", token)
    assert (status, [r["site_id"] for r in results]) == (200, [FIREWATCH_IN_JEONNAM])
    assert get(api, "/api/v1/demonstrations/DEMO-005/scorecard", token)[0] == 404
    assert get(api, "/api/v1/demonstrations/DEMO-005/kpi-results", token)[0] == 404
    # The operator's scorecard of the same demonstration covers both regions.
    status, whole = get(api, "/api/v1/demonstrations/DEMO-008/scorecard")
    latency = next(k for k in whole["kpis"] if k["kpi_id"] == "latency_max")
    assert (whole["region"], latency["passed"], latency["failed"]) == (None, 1, 1)


# Every route that changes something, with a body it would take from an operator: procurement is
# refused each. A new mutating route fails the test until it is listed here.
MUTATIONS = {
    "/api/v1/alerts/{alert_id}/ack": b'{"by": "procurement", "note": ""}',
    "/api/v1/demonstrations": b"{}",
    "/api/v1/demonstrations/{demonstration_id}/approve": b"",
    "/api/v1/demonstrations/{demonstration_id}/reject": b'{"reason": "no"}',
    "/api/v1/demonstrations/{demonstration_id}/end": b"",
}


def test_procurement_reads_every_scorecard_and_comparison_and_changes_nothing(
    parties: Scratch, api: ApiServer
) -> None:
    token = parties.tokens["procurement"]
    status, demos = get(api, "/api/v1/demonstrations", token)
    assert (status, {d["demonstration_id"] for d in demos}) == (200, set(COMPANY))
    for demo in ("DEMO-005", "DEMO-008"):
        assert get(api, f"/api/v1/demonstrations/{demo}/scorecard", token)[0] == 200
        assert get(api, f"/api/v1/demonstrations/{demo}/kpi-results", token)[0] == 200
    assert get(api, "/api/v1/demonstrations/DEMO-008/evidence", token)[0] == 409  # running

    status, compared = get(api, "/api/v1/compare?technology=transit_prediction", token)
    assert status == 200
    side_by_side = {d["demonstration_id"]: d for d in compared["demonstrations"]}
    assert set(side_by_side) == {"DEMO-003", "DEMO-012"}
    rates = {
        demo: {k["kpi_id"]: k["pass_rate_pct"] for k in d["kpis"]}
        for demo, d in side_by_side.items()
    }
    assert (rates["DEMO-003"]["error_mean"], rates["DEMO-012"]["error_mean"]) == (100, 0)
    assert {d["evidence_sha256"] for d in side_by_side.values()} == {None}
    status, unknown = get(api, "/api/v1/compare?technology=teleportation", token)
    assert status == 404
    assert "transit_prediction" in unknown["detail"]

    for path in ("/api/v1/alerts", "/api/v1/audit"):
        assert get(api, path, token)[0] == 403, path
    assert get(api, f"/api/v1/sites/{SHARED}", token)[0] == 404

    document = get(api, "/openapi.json")[1]
    mutating = {
        path
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("post", "put", "patch", "delete") and path != "/api/v1/session"
    }
    assert mutating == set(MUTATIONS)
    for path, body in MUTATIONS.items():
        concrete = path.replace("{alert_id}", "parties-fw").replace(
            "{demonstration_id}", "DEMO-008"
        )
        status, answer = post(api, concrete, body, token)
        assert status == 403, (path, status, answer)
    assert get(api, "/api/v1/alerts?status=open")[1][0]["status"] == "open"


def test_a_citizen_sees_the_public_page_and_nothing_else(parties: Scratch, api: ApiServer) -> None:
    status, summary = get(api, "/api/v1/public/summary", "")
    assert status == 200
    assert summary["lang"] == "ko"
    text = json.dumps(summary, ensure_ascii=False)
    assert not SITE_ID.search(text)
    assert "alert" not in text
    firewatch = next(d for d in summary["demonstrations"] if d["demonstration_id"] == "DEMO-008")
    assert firewatch["technology_label"] == "화재 감지"
    assert {p["region"] for p in firewatch["districts"]} == {"gwangju", "jeonnam"}
    started = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    window_day = started.astimezone(KST).date()
    days = {d["day"]: d for d in firewatch["daily_compliance"]}
    assert len(days) == 7
    assert (days[window_day.isoformat()]["passed"], days[window_day.isoformat()]["failed"]) == (
        1,
        1,
    )
    assert days[window_day.isoformat()]["compliance_pct"] == 50.0
    english = get(api, "/api/v1/public/summary?lang=en", "")[1]
    firewatch = next(d for d in english["demonstrations"] if d["demonstration_id"] == "DEMO-008")
    assert firewatch["technology_label"] == "Fire detection"
    assert english["generated_at"].endswith("+09:00")

    with urllib.request.urlopen(api.base + "/public", timeout=10) as response:
        page = response.read().decode()
    assert '<html lang="ko">' in page
    assert "광주 AI 실증 도시" in page
    assert not SITE_ID.search(page)
    for path in ("/api/v1/demonstrations", "/api/v1/demonstrations/DEMO-008/scorecard"):
        assert get(api, path, "")[0] == 401


def test_any_rate_of_public_requests_costs_one_query_every_30_s(
    parties: Scratch, api: ApiServer
) -> None:
    def queries() -> float:
        with urllib.request.urlopen(f"{api.base}/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("hub_api_public_queries_total")
        )

    before = queries()
    began = time.monotonic()
    for n in range(200):
        path = ("/public", "/api/v1/public/summary", "/public?lang=en")[n % 3]
        with urllib.request.urlopen(api.base + path, timeout=10) as response:
            assert response.status == 200
    took = time.monotonic() - began
    assert queries() - before <= math.ceil(took / 30) + 1


def page_of(api: ApiServer, token: str, profile: Path) -> str:
    """The management page as Chromium renders it for the token's holder."""
    from tests.api.test_api import chromium

    rendered = chromium(
        "--virtual-time-budget=5000",
        "--dump-dom",
        f"{api.base}/#token={token}",
        profile=profile,
    )
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    return str(rendered.stdout.decode())


def test_each_party_in_chromium(parties: Scratch, api: ApiServer, tmp_path: Path) -> None:
    from tests.api.test_api import chromium
    from tooling.stack import prereqs

    prereqs.ensure([prereqs.CHROMIUM, prereqs.KOREAN_FONT], print)
    tokens = parties.tokens
    seen = {
        name: page_of(api, tokens[name], tmp_path / name)
        for name in ("parkeye", "firewatch", "jeonnam", "procurement")
    }
    assert "DEMO-005" in seen["parkeye"]
    assert "DEMO-008" not in seen["parkeye"]
    assert "DEMO-008" in seen["firewatch"]
    assert "DEMO-005" not in seen["firewatch"]
    assert "Your demonstrations" in seen["parkeye"]
    # The partner's header counts what its tables list.
    partner = seen["jeonnam"]
    assert "DEMO-008" in partner
    assert "DEMO-005" not in partner
    assert "<b>0</b> open alerts" in partner
    assert "Open alerts: 0" in partner
    assert 'data-region="gwangju"' not in partner
    assert 'id="compare"' in seen["procurement"]
    assert "DEMO-012" in seen["procurement"]
    assert "open alerts" not in seen["procurement"]

    public = chromium(
        "--virtual-time-budget=3000", "--dump-dom", api.base + "/public", profile=tmp_path / "anon"
    )
    assert public.returncode == 0, public.stderr[-2000:]
    dom = public.stdout.decode()
    assert 'data-demonstration="DEMO-008"' in dom
    assert not SITE_ID.search(dom)
    screenshot = tmp_path / "public.png"
    shot = chromium(
        "--window-size=390,1400",  # a phone
        f"--screenshot={screenshot}",
        api.base + "/public",
        profile=tmp_path / "anon",
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
