"""Who hears about what, and when a failed delivery is tried again: plain values."""

from __future__ import annotations

import pytest

from hub.notify import model
from hub.notify.model import IncidentLimiter, one_line
from hub.notify.send import AddressGuard, message_id

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
    assert notice.notice_id == "incident:GJ-BUK-0002-CAM1:e1"
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
        ("ops", "webhook", "http://x", "partner:Seoul!", "--scope"),
        ("ops", "webhook", "http://x", "company:", "--scope"),
    ],
)
def test_a_bad_receiver_is_refused_naming_the_field(
    name: str, kind: str, target: str, scope: str, says: str
) -> None:
    with pytest.raises(model.ReceiverError, match=says):
        model.receiver(name, kind, target, scope)  # type: ignore[arg-type]


def test_a_device_storm_is_heard_burst_times_then_at_the_hourly_rate() -> None:
    limiter = IncidentLimiter(burst=3, per_hour=60)  # one more a minute
    told = [limiter.allow("storm", 1000.0 + i * 0.1) for i in range(10)]
    assert [ok for ok, _ in told] == [True] * 3 + [False] * 7
    # A minute on: one more, saying how many were held back since the last.
    assert limiter.allow("storm", 1061.0) == (True, 7)
    assert limiter.allow("other", 1061.0) == (True, 0)  # another device is not held back


def test_mail_headers_hold_no_device_data_that_could_break_them() -> None:
    evil = "x\r\nBcc: all@example.com\r\n\u00e9\u2028"
    assert "\n" not in one_line(evil)
    assert "\r" not in one_line(evil)
    assert one_line("é" * 300).endswith("…")
    assert message_id(f"incident:dev:{evil}").endswith("@testbed-hub>")
    assert message_id("a").isascii()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address refused, not bound)
        ("::ffff:127.0.0.1", "loopback"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_webhooks_may_not_reach_the_hubs_own_host_unless_allowed(address: str, kind: str) -> None:
    refusal = AddressGuard().refusal(address)
    assert refusal is not None
    assert kind in refusal
    allowed = AddressGuard(
        ("127.0.0.0/8", "::1/128", "169.254.0.0/16", "0.0.0.0/32", "224.0.0.0/4")
    )
    assert allowed.refusal(address) is None
    assert AddressGuard().refusal("203.0.113.7") is None
