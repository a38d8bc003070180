"""The programme over the real API: a company applies for itself (never for another), operators
decide and end, every step lands in the audit trail with the token's name; bad input is 4xx."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from hub import evidence
from tests.api.conftest import ApiServer, Scratch, get, post


def application(demo_id: str, company: str, **changes: Any) -> bytes:
    document: dict[str, Any] = {
        "demonstration_id": demo_id,
        "company": company,
        "title": "Crosswalk sensors",
        "technology": "radar",
        "starts_on": "2026-12-01",
        "ends_on": "2027-05-31",
        "metrics": ["online"],
        "kpis": [
            {
                "kpi_id": "uptime",
                "metric": "online",
                "aggregation": "availability",
                "op": ">=",
                "threshold": 0.95,
                "window": "1h",
                "min_samples": 1,
            }
        ],
        "sites": [{"site_id": "GJ-SEO-0001", "count": 1, "prefix": "RAD"}],
    }
    document.update(changes)
    return json.dumps(document).encode()


def test_a_company_applies_for_itself_and_operators_decide(
    scratch: Scratch, api: ApiServer
) -> None:
    company = scratch.tokens["company-a"]
    status, body = post(
        api, "/api/v1/demonstrations", application("DEMO-821", "Company A"), company
    )
    assert (status, body["status"], body["devices"]) == (201, "applied", 1)
    status, body = post(api, "/api/v1/demonstrations", application("DEMO-822", "ParkEye"), company)
    assert status == 422
    assert any("may apply for 'Company A' only" in p for p in body["detail"])
    partner = scratch.tokens["jeonnam"]
    assert post(api, "/api/v1/demonstrations", application("DEMO-823", "X"), partner)[0] == 403

    assert post(api, "/api/v1/demonstrations/DEMO-821/approve", b"", company)[0] == 403
    status, body = post(api, "/api/v1/demonstrations/DEMO-821/approve", b"")
    assert (status, body["status"], body["devices"]) == (200, "approved", 1)
    assert post(api, "/api/v1/demonstrations/DEMO-821/approve", b"")[0] == 409
    assert post(api, "/api/v1/demonstrations/DEMO-999/approve", b"")[0] == 404
    status, body = post(api, "/api/v1/demonstrations/DEMO-821/end", b"")
    assert (status, body["status"]) == (200, "ended")
    assert get(api, "/api/v1/demonstrations/DEMO-821/scorecard")[1]["status"] == "ended"

    status, body = post(
        api, "/api/v1/demonstrations", application("DEMO-824", "Company A"), company
    )
    assert status == 201
    reason = json.dumps({"reason": "outside the programme's call"}).encode()
    status, body = post(api, "/api/v1/demonstrations/DEMO-824/reject", reason)
    assert (status, body["status"]) == (200, "rejected")

    status, trail = get(api, "/api/v1/audit")
    assert status == 200
    steps = [
        (e["actor"], e["action"], e["subject"]) for e in trail if e["subject"].startswith("DEMO-82")
    ]
    assert steps == [
        ("token:company-a", "demonstration.apply", "DEMO-821"),
        ("token:operator", "demonstration.approve", "DEMO-821"),
        ("token:operator", "demonstration.end", "DEMO-821"),
        ("token:company-a", "demonstration.apply", "DEMO-824"),
        ("token:operator", "demonstration.reject", "DEMO-824"),
    ]
    assert get(api, "/api/v1/audit", company)[0] == 403


def test_a_broken_application_is_refused_naming_every_problem(api: ApiServer) -> None:
    broken = application(
        "demo 9", "Company A", starts_on="someday", kpis=[], sites=[{"site_id": "GJ-NOPE"}]
    )
    status, body = post(api, "/api/v1/demonstrations", broken)
    assert status == 422
    problems = body["detail"]
    for want in (
        "demonstration_id 'demo 9'",
        "starts_on 'someday'",
        "kpis: at least one",
        "unknown site 'GJ-NOPE'",
    ):
        assert any(want in p for p in problems), (want, problems)
    assert post(api, "/api/v1/demonstrations", b"[1, 2]")[0] == 422
    assert post(api, "/api/v1/demonstrations", b"not json")[0] in (400, 422)


def test_an_ended_demonstrations_evidence_is_its_companys_and_checks_with_the_public_key(
    scratch: Scratch, api: ApiServer
) -> None:
    company = scratch.tokens["company-a"]
    body = application("DEMO-825", "Company A")
    assert post(api, "/api/v1/demonstrations", body, company)[0] == 201
    assert post(api, "/api/v1/demonstrations/DEMO-825/approve", b"")[0] == 200
    assert get(api, "/api/v1/demonstrations/DEMO-825/evidence", company)[0] == 409  # running
    assert post(api, "/api/v1/demonstrations/DEMO-825/end", b"")[0] == 200
    request = urllib.request.Request(
        f"{api.base}/api/v1/demonstrations/DEMO-825/evidence",
        headers={"authorization": f"Bearer {company}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["content-type"] == "application/zip"
        archive = response.read()
    assert get(api, "/api/v1/demonstrations/DEMO-825/evidence", scratch.tokens["parkeye"])[0] == 404
    with urllib.request.urlopen(f"{api.base}/api/v1/evidence/public-key", timeout=10) as response:
        key = json.loads(response.read())  # open: anyone may check a pack
    assert key["algorithm"] == "Ed25519"
    verdict = evidence.verify(archive, evidence.load_public(key["public_key_pem"]))
    assert verdict.sound, verdict.detail
