"""Who hears about what, and when a failed delivery is tried again: plain values."""

from __future__ import annotations

import pytest

from hub.notify import model

ALERT = {
    "schema": "kpi-alert/1",
    "alert_id": "a1",
    "transition": "breach",
    "demonstration_id": "DEMO-005",
    "kpi_id": "read_accuracy",
    "site_id": "JN-MOKPO-0001",
    "region": "jeonnam",
    "district": "mokpo",
    "value": 91.5,
    "threshold": 95,
}
OPERATOR = model.receiver("ops", "webhook", "http://ops.example/hook", "operator")
JEONNAM = model.receiver("jn", "webhook", "https://jn.example/", "partner:jeonnam")
GWANGJU = model.receiver("gj", "email", "office@gwangju.example", "partner:gwangju")
PARKEYE = model.receiver("pe", "email", "ops@parkeye.example", "company:ParkEye")
RIVAL = model.receiver("fw", "webhook", "http://fw.example/", "company:Firewatch")


def test_a_kpi_alert_reaches_operators_its_regions_partners_and_its_company_only() -> None:
    notice = model.from_kpi_alert(ALERT, "ParkEye")
    assert notice.notice_id == "alert:a1"
    assert "[breach] DEMO-005 read_accuracy at JN-MOKPO-0001: 91.5" in notice.subject
    reached = [
        r.name for r in (OPERATOR, JEONNAM, GWANGJU, PARKEYE, RIVAL) if model.covers(r, notice)
    ]
    assert reached == ["ops", "jn", "pe"]


def test_an_incident_is_routed_like_a_kpi_alert() -> None:
    incident = {
        "event_id": "e1",
        "device_id": "GJ-BUK-0002-CAM1",
        "site_id": "GJ-BUK-0002",
        "demonstration_id": "DEMO-001",
        "region": "gwangju",
        "ts": "2026-11-30T09:00:00Z",
    }
    notice = model.from_incident(incident, "Company A")
    assert notice.notice_id == "incident:e1"
    assert [r.name for r in (OPERATOR, JEONNAM, GWANGJU, PARKEYE) if model.covers(r, notice)] == [
        "ops",
        "gj",
    ]


def test_platform_alerts_go_to_operators_and_the_watchdog_to_no_one() -> None:
    payload = {
        "version": "4",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HubWorkerDown", "instance": "w0"},
                "annotations": {"summary": "hub worker w0 is not answering"},
                "startsAt": "2026-11-30T09:00:00Z",
                "fingerprint": "f1",
            },
            {"status": "firing", "labels": {"alertname": model.WATCHDOG}, "fingerprint": "w"},
        ],
    }
    notices, watchdogs = model.from_alertmanager(payload)
    assert watchdogs == 1
    assert [n.notice_id for n in notices] == ["platform:f1:2026-11-30T09:00:00Z:firing"]
    assert notices[0].subject == "[firing] HubWorkerDown: hub worker w0 is not answering"
    assert [r.name for r in (OPERATOR, JEONNAM, PARKEYE) if model.covers(r, notices[0])] == ["ops"]
    # Resolved is another notice: people hear that it is over.
    resolved = {**payload["alerts"][0], "status": "resolved"}  # type: ignore[dict-item]
    assert model.from_alertmanager({"alerts": [resolved]})[0][0].notice_id.endswith(":resolved")


def test_an_escalation_goes_to_operators_only() -> None:
    notice = model.escalation({**ALERT, "ts": None}, 3600)
    assert notice.notice_id == "escalation:a1"
    assert "[unacknowledged 60 min]" in notice.subject
    assert [r.name for r in (OPERATOR, JEONNAM, PARKEYE) if model.covers(r, notice)] == ["ops"]


def test_retries_back_off_from_5_s_to_at_most_10_minutes() -> None:
    assert [model.retry_after_s(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 320, 600]
    assert model.retry_after_s(50) == 600


@pytest.mark.parametrize(
    ("name", "kind", "target", "scope", "says"),
    [
        ("ops", "webhook", "ftp://x", "operator", "URL 'ftp://x'"),
        ("ops", "email", "nobody", "operator", "ADDRESS 'nobody'"),
        ("no spaces", "webhook", "http://x", "operator", "NAME 'no spaces'"),
        ("ops", "webhook", "http://x", "partner:seoul", "--scope"),
        ("ops", "webhook", "http://x", "company:", "--scope"),
    ],
)
def test_a_bad_receiver_is_refused_naming_the_field(
    name: str, kind: str, target: str, scope: str, says: str
) -> None:
    with pytest.raises(model.ReceiverError, match=says):
        model.receiver(name, kind, target, scope)  # type: ignore[arg-type]
