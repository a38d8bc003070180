"""An application checked whole, with plain values: every problem named, devices named by the
hub when counted, nothing another demonstration holds taken."""

from __future__ import annotations

from typing import Any

import pytest

from hub.programme.application import ApplicationError, Known, check

KNOWN = Known(
    sites={"GJ-DONG-0001", "GJ-DONG-0002", "JN-MOKPO-0001"},
    devices={"GJ-DONG-0001-SZC1", "GJ-DONG-0002-CAM1"},
    demonstrations={"DEMO-001"},
)


def application(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "demonstration_id": "DEMO-014",
        "company": "SchoolSafe",
        "title": "School-zone cameras",
        "technology": "computer vision",
        "starts_on": "2027-01-04",
        "ends_on": "2027-06-30",
        "metrics": ["online"],
        "kpis": [
            {
                "kpi_id": "latency_p95",
                "metric": "inference_latency_ms",
                "aggregation": "p95",
                "op": "<=",
                "threshold": 250,
                "window": "5m",
                "min_samples": 20,
            }
        ],
        "sites": [
            {"site_id": "GJ-DONG-0001", "count": 2, "prefix": "SZC"},
            {"site_id": "JN-MOKPO-0001", "devices": ["JN-MOKPO-0001-SZC1"]},
        ],
    }
    document.update(changes)
    return document


def test_a_sound_application_names_its_devices_around_those_that_exist() -> None:
    checked = check(application(), KNOWN)
    # GJ-DONG-0001-SZC1 exists (another company's): the hub names the next free ones.
    assert [d.device_id for d in checked.devices] == [
        "GJ-DONG-0001-SZC2",
        "GJ-DONG-0001-SZC3",
        "JN-MOKPO-0001-SZC1",
    ]
    assert {d.demonstration_id for d in checked.devices} == {"DEMO-014"}
    demo = checked.demonstration
    assert demo.declared_metrics == {"online", "inference_latency_ms"}
    assert checked.sites == ("GJ-DONG-0001", "JN-MOKPO-0001")


def test_every_problem_is_named_at_once() -> None:
    broken = application(
        demonstration_id="DEMO-001",
        ends_on="2026-12-01",
        kpis=[
            {
                "kpi_id": "x",
                "metric": "m",
                "aggregation": "p97",
                "op": "=<",
                "threshold": "high",
                "window": "7m",
            },
            {
                "kpi_id": "r",
                "metric": "tp",
                "aggregation": "ratio",
                "op": ">=",
                "threshold": 0.9,
                "window": "1h",
            },
        ],
        sites=[
            {"site_id": "GJ-NOWHERE-0001", "count": 1},
            {"site_id": "GJ-DONG-0002", "devices": ["GJ-DONG-0002-CAM1", "bad id"]},
            {"site_id": "GJ-DONG-0001", "count": 1, "devices": ["GJ-DONG-0001-X1"]},
        ],
    )
    with pytest.raises(ApplicationError) as refused:
        check(broken, KNOWN)
    problems = refused.value.problems
    expected = [
        "demonstration_id 'DEMO-001': exists already",
        "ends_on 2026-12-01: before starts_on 2027-01-04",
        "kpis[0] (x): aggregation 'p97' is not one of",
        "kpis[0] (x): op '=<' is not one of",
        "kpis[0] (x): threshold 'high' is not a number",
        "kpis[0] (x): window '7m' is not one of",
        "kpis[1] (r): a ratio needs a denominator",
        "sites[0] (GJ-NOWHERE-0001): unknown site 'GJ-NOWHERE-0001'",
        "sites[1] (GJ-DONG-0002): device 'GJ-DONG-0002-CAM1' exists already",
        "sites[1] (GJ-DONG-0002): device 'bad id' is not an id",
        "sites[2] (GJ-DONG-0001): give its devices (a list of ids) or a count, one of them",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)
    assert len(problems) == len(expected)


def test_a_company_token_applies_for_its_own_company_only() -> None:
    with pytest.raises(ApplicationError, match="may apply for 'Rival Co' only"):
        check(application(), KNOWN, company="Rival Co")
    assert check(application(), KNOWN, company="SchoolSafe").demonstration.company == "SchoolSafe"


def test_devices_listed_twice_in_one_application_are_refused() -> None:
    twice = application(
        sites=[
            {"site_id": "GJ-DONG-0001", "devices": ["GJ-DONG-0001-N1"]},
            {"site_id": "GJ-DONG-0002", "devices": ["GJ-DONG-0001-N1"]},
        ]
    )
    with pytest.raises(ApplicationError, match="'GJ-DONG-0001-N1' exists already"):
        check(twice, KNOWN)
