"""API roles by bearer token, on the real API and database: who sees what.

Tokens come from `hub access add-token` (the scratch fixture issues one per role). No token or a bad
one answers 401; a whole endpoint outside a role answers 403; a site or demonstration of someone
else answers 404, exactly as one that does not exist.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from typing import Any

import asyncpg
import pytest

from hub.registry.files import read_registry
from hub.tokens import split
from tests.api.conftest import ApiServer, Scratch, get, issue_token, post
from tests.conftest import run_hub_async

REGISTRY = read_registry()
REGION = {s.site_id: s.region for s in REGISTRY.sites}
COMPANY = {d.demonstration_id: d.company for d in REGISTRY.demonstrations}
# Sites that host one of Company A's demonstrations, and a Gwangju site that hosts none.
COMPANY_A_SITES = sorted(
    {d.site_id for d in REGISTRY.devices if COMPANY[d.demonstration_id] == "Company A"}
)
OTHER_SITE = sorted(
    {d.site_id for d in REGISTRY.devices}
    - set(COMPANY_A_SITES)
    - {s for s in REGION if REGION[s] == "jeonnam"}
)[0]
JEONNAM_SITE = sorted(s for s in REGION if REGION[s] == "jeonnam")[0]
GWANGJU_SITE = sorted(s for s in REGION if REGION[s] == "gwangju")[0]
PATHS = [
    "/api/v1/overview",
    f"/api/v1/sites/{GWANGJU_SITE}",
    "/api/v1/demonstrations",
    "/api/v1/demonstrations/DEMO-001/scorecard",
    "/api/v1/alerts",
]


def raw_get(api: ApiServer, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(api.base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


@pytest.fixture(scope="module")
async def alerts(scratch: Scratch) -> Scratch:
    """One open alert at a Gwangju site of Company A's DEMO-001, one at a South Jeolla site of
    another company's demonstration."""
    other_demo = next(d for d, c in COMPANY.items() if c != "Company A")
    conn = await asyncpg.connect(scratch.url)
    try:
        await conn.executemany(
            "INSERT INTO kpi_alerts (alert_id, ts, demonstration_id, site_id, kpi_id, transition,"
            " value, threshold, status) VALUES ($1, now(), $2, $3, 'k', 'breach', 1, 0, 'open')",
            [
                ("roles-gj", "DEMO-001", COMPANY_A_SITES[0]),
                ("roles-jn", other_demo, JEONNAM_SITE),
            ],
        )
    finally:
        await conn.close()
    return scratch


@pytest.mark.parametrize("path", PATHS)
def test_without_a_valid_token_every_endpoint_answers_401(api: ApiServer, path: str) -> None:
    for headers in (
        {},
        {"authorization": "Bearer hub_0000000000000000_" + "x" * 43},
        {"authorization": "Basic b3BlcmF0b3I6aHVi"},
        {"authorization": "Bearer ' OR 1=1 --"},
    ):
        status, response_headers = raw_get(api, path, headers)
        assert status == 401, (path, headers)
        assert response_headers.get("www-authenticate") == "Bearer"


def test_a_partner_sees_its_region_only(alerts: Scratch, api: ApiServer) -> None:
    token = alerts.tokens["jeonnam"]
    status, rows = get(api, "/api/v1/overview", token)
    assert status == 200
    assert rows
    assert {r["region"] for r in rows} == {"jeonnam"}
    assert get(api, "/api/v1/overview?region=gwangju", token)[0] == 403
    assert get(api, f"/api/v1/sites/{JEONNAM_SITE}", token)[0] == 200
    status, body = get(api, f"/api/v1/sites/{GWANGJU_SITE}", token)
    assert (status, body) == (
        404,
        get(api, "/api/v1/sites/GJ-NOWHERE-0001", token)[1]
        | {"detail": f"site {GWANGJU_SITE!r} is not in the registry"},
    )
    status, seen = get(api, "/api/v1/alerts", token)
    assert (status, [a["alert_id"] for a in seen]) == (200, ["roles-jn"])
    # Demonstrations running in South Jeolla only; DEMO-001 runs in Gwangju alone.
    status, demos = get(api, "/api/v1/demonstrations", token)
    assert status == 200
    assert "DEMO-001" not in {d["demonstration_id"] for d in demos}
    assert get(api, "/api/v1/demonstrations/DEMO-001/scorecard", token)[0] == 404
    ack = json.dumps({"by": "partner", "note": ""}).encode()
    assert post(api, "/api/v1/alerts/roles-jn/ack", ack, token)[0] == 403


def test_a_company_sees_its_demonstrations_only(alerts: Scratch, api: ApiServer) -> None:
    token = alerts.tokens["company-a"]
    assert get(api, "/api/v1/overview", token)[0] == 403
    status, demos = get(api, "/api/v1/demonstrations", token)
    assert status == 200
    assert sorted(d["demonstration_id"] for d in demos) == sorted(
        d for d, c in COMPANY.items() if c == "Company A"
    )
    assert get(api, "/api/v1/demonstrations/DEMO-001/scorecard", token)[0] == 200
    other = next(d for d, c in COMPANY.items() if c != "Company A")
    assert get(api, f"/api/v1/demonstrations/{other}/scorecard", token)[0] == 404
    status, site = get(api, f"/api/v1/sites/{COMPANY_A_SITES[0]}", token)
    assert status == 200
    assert {COMPANY[d["demonstration_id"]] for d in site["devices"]} == {"Company A"}
    assert get(api, f"/api/v1/sites/{OTHER_SITE}", token)[0] == 404
    status, seen = get(api, "/api/v1/alerts", token)
    assert (status, [a["alert_id"] for a in seen]) == (200, ["roles-gj"])


# A site where ParkEye's DEMO-005 and Firewatch's DEMO-008 both have devices.
SHARED = sorted(
    {d.site_id for d in REGISTRY.devices if d.demonstration_id == "DEMO-005"}
    & {d.site_id for d in REGISTRY.devices if d.demonstration_id == "DEMO-008"}
)[0]
NEIGHBOUR = "DEMO-008"
NEIGHBOURS_VALUE = 999.0


@pytest.fixture(scope="module")
async def shared_rows(alerts: Scratch) -> Scratch:
    """Both demonstrations' windows and KPI results at the shared site, the neighbour's failing."""
    conn = await asyncpg.connect(alerts.url)
    try:
        for demo, value in (("DEMO-005", 1.0), (NEIGHBOUR, NEIGHBOURS_VALUE)):
            await conn.execute(
                "INSERT INTO site_aggregates (bucket, site_id, demonstration_id, metric, count,"
                " sum, min, max) VALUES (date_trunc('minute', now()) - interval '2 minutes', $1,"
                " $2, 'online', 60, $3, 1, 1)",
                SHARED,
                demo,
                value,
            )
            await conn.execute(
                "INSERT INTO kpi_results (window_start, window_end, demonstration_id, site_id,"
                " kpi_id, value, threshold, status) VALUES (now() - interval '1 hour', now(),"
                " $1, $2, 'availability', $3, 0.99, 'pass')",
                demo,
                SHARED,
                value,
            )
    finally:
        await conn.close()
    return alerts


def numbers(document: object) -> list[float]:
    """Every number in a JSON document (a value may not leak under another name either)."""
    if isinstance(document, dict):
        return [n for value in document.values() for n in numbers(value)]
    if isinstance(document, list):
        return [n for value in document for n in numbers(value)]
    return [float(document)] if isinstance(document, int | float) else []


def test_at_a_shared_site_a_company_sees_its_own_demonstrations_rows_only(
    shared_rows: Scratch, api: ApiServer
) -> None:
    token = shared_rows.tokens["parkeye"]
    status, site = get(api, f"/api/v1/sites/{SHARED}", token)
    assert status == 200
    assert {d["demonstration_id"] for d in site["devices"]} == {"DEMO-005"}
    assert {a["demonstration_id"] for a in site["latest_aggregates"]} == {"DEMO-005"}
    assert {k["demonstration_id"] for k in site["kpi_statuses"]} == {"DEMO-005"}
    assert NEIGHBOUR not in json.dumps(site)
    assert NEIGHBOURS_VALUE not in numbers(site)
    status, everything = get(api, f"/api/v1/sites/{SHARED}")
    assert status == 200
    assert {a["demonstration_id"] for a in everything["latest_aggregates"]} == {
        "DEMO-005",
        NEIGHBOUR,
    }


def test_the_web_page_shows_a_company_its_own_demonstrations_only(
    shared_rows: Scratch, api: ApiServer
) -> None:
    def page(token: str) -> str:
        request = urllib.request.Request(
            api.base + "/?part=main", headers={"authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.read().decode())

    others = {d for d, c in COMPANY.items() if c != COMPANY["DEMO-005"]}
    # The operator's page names another company's demonstration (its open alert)...
    assert [d for d in sorted(others) if d in page(shared_rows.tokens["operator"])]
    # ...ParkEye's names none.
    assert [d for d in sorted(others) if d in page(shared_rows.tokens["parkeye"])] == []


async def test_hub_report_answers_a_company_token_as_the_api_does(
    shared_rows: Scratch,
) -> None:
    token = shared_rows.tokens["parkeye"]
    own = await run_hub_async("report", "DEMO-005", "--token", token, env=shared_rows.env)
    assert own.returncode == 0, own.stderr
    assert NEIGHBOUR not in own.stdout
    other = await run_hub_async("report", NEIGHBOUR, "--token", token, env=shared_rows.env)
    assert other.returncode == 1
    assert "not in the registry" in other.stderr
    partner = await run_hub_async(
        "report", "DEMO-005", "--token", shared_rows.tokens["jeonnam"], env=shared_rows.env
    )
    assert partner.returncode == 1  # DEMO-005 runs in Gwangju only
    assert "not in the registry" in partner.stderr
    jeonnam = await run_hub_async(
        "report", NEIGHBOUR, "--token", shared_rows.tokens["jeonnam"], env=shared_rows.env
    )
    assert jeonnam.returncode == 0, jeonnam.stderr
    assert "every figure over jeonnam's sites only" in jeonnam.stdout


def test_the_operator_sees_everything(alerts: Scratch, api: ApiServer) -> None:
    status, seen = get(api, "/api/v1/alerts")
    assert status == 200
    assert {"roles-gj", "roles-jn"} <= {a["alert_id"] for a in seen}
    assert {r["region"] for r in get(api, "/api/v1/overview")[1]} == {"gwangju", "jeonnam"}
    assert get(api, f"/api/v1/sites/{OTHER_SITE}")[0] == 200


async def test_tokens_are_stored_hashed_and_a_revoked_one_answers_401(
    scratch: Scratch, api: ApiServer
) -> None:
    token = await issue_token(scratch.env, "partner:gwangju", "gwangju-office")
    assert get(api, "/api/v1/overview", token)[0] == 200
    conn = await asyncpg.connect(scratch.url)
    try:
        row = await conn.fetchrow("SELECT * FROM api_tokens WHERE name = 'gwangju-office'")
    finally:
        await conn.close()
    assert row is not None
    assert token not in json.dumps({k: str(v) for k, v in dict(row).items()})
    parts = split(token)
    assert parts is not None
    assert bytes(row["secret_sha256"]) == hashlib.sha256(parts[1].encode()).digest()

    revoked = await run_hub_async("access", "revoke-token", "gwangju-office", env=scratch.env)
    assert revoked.returncode == 0, revoked.stderr
    assert get(api, "/api/v1/overview", token)[0] == 401


@pytest.mark.parametrize(
    ("role", "name", "complaint"),
    [
        ("admin", "x1", "role 'admin'"),
        ("partner:Seoul!", "x2", "role 'partner:Seoul!'"),
        ("partner:seoul", "x2", "region 'seoul' is not a region of the hub (hub regions add)"),
        ("company:Nobody Inc", "x3", "company 'Nobody Inc' has no demonstration"),
        ("operator", "bad name!", "name 'bad name!'"),
        ("operator", "operator", "a token named 'operator' exists"),
    ],
)
async def test_add_token_refuses_what_it_cannot_honour(
    scratch: Scratch, role: str, name: str, complaint: str
) -> None:
    result = await run_hub_async("access", "add-token", role, name, env=scratch.env)
    assert result.returncode != 0
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr


def test_the_page_asks_for_a_token_and_a_bad_one_gets_no_cookie(api: ApiServer) -> None:
    status, _ = raw_get(api, "/", {})
    assert status == 401
    request = urllib.request.Request(
        api.base + "/api/v1/session",
        data=json.dumps({"token": "hub_0000000000000000_" + "y" * 43}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    assert "set-cookie" not in {k.lower() for k in refused.value.headers}


def test_a_valid_token_buys_an_http_only_cookie(api: ApiServer) -> None:
    request = urllib.request.Request(
        api.base + "/api/v1/session",
        data=json.dumps({"token": api.token}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
        cookie: Any = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    status, _ = raw_get(api, "/", {"cookie": cookie.split(";")[0]})
    assert status == 200


def test_metrics_answer_without_a_token_and_name_no_demonstration(
    alerts: Scratch, api: ApiServer
) -> None:
    """Prometheus scrapes /metrics without a token: it counts open alerts by region only."""
    request = urllib.request.Request(api.base + "/metrics")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    assert "DEMO-" not in text
    assert 'hub_open_alerts{region="gwangju"} 1.0' in text
    assert 'hub_open_alerts{region="jeonnam"} 1.0' in text
