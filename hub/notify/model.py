"""What the notifier delivers and to whom. Pure: no I/O, so routing is tested with plain values.

A notice is one thing a person should hear about: a KPI alert transition, an incident reported
by a device, a platform alert from Alertmanager, or an escalation of a breach left open. Its id
is stable (a replay or a second Alertmanager send yields the same id), which is what
de-duplicates deliveries. A receiver gets a notice when its scope covers it: an operator every
notice, a partner its region's site notices, a company its demonstrations' notices; platform
alerts and escalations go to operators only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from hub.errors import HubError
from hub.tokens import TokenError, parse_role

Kind = Literal["kpi_alert", "incident", "platform", "escalation"]
WATCHDOG: Final = "HubAlertingPipeline"
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A first retry after 5 s, doubling to at most 10 minutes between attempts.
FIRST_RETRY_S: Final = 5.0
LONGEST_RETRY_S: Final = 600.0


class ReceiverError(HubError):
    """A receiver `hub notify` refuses to add; says which field and why."""


@dataclass(frozen=True, slots=True)
class Receiver:
    name: str
    kind: Literal["webhook", "email"]
    target: str
    role: str  # operator, partner or company
    scope: str = ""  # the partner's region, or the company

    @property
    def label(self) -> str:
        return f"{self.role}:{self.scope}" if self.scope else self.role


@dataclass(frozen=True, slots=True)
class Notice:
    notice_id: str
    kind: Kind
    subject: str
    body: dict[str, Any] = field(default_factory=dict)
    region: str | None = None
    company: str | None = None
    operators_only: bool = False


def receiver(name: str, kind: Literal["webhook", "email"], target: str, scope: str) -> Receiver:
    """A receiver as `hub notify add-webhook|add-email` takes it, checked field by field."""
    if not NAME.fullmatch(name):
        raise ReceiverError(f"NAME {name!r}: letters, digits, '.', '_', '-' (at most 64)")
    if kind == "webhook" and not re.fullmatch(r"https?://[^\s/]+\S*", target):
        raise ReceiverError(f"URL {target!r}: an http:// or https:// address")
    if kind == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", target):
        raise ReceiverError(f"ADDRESS {target!r}: an e-mail address")
    try:
        role, value = parse_role(scope)
    except TokenError as error:
        raise ReceiverError(f"--scope: {error}") from None
    return Receiver(name, kind, target, role, value)


def covers(receiver: Receiver, notice: Notice) -> bool:
    if receiver.role == "operator":
        return True
    if notice.operators_only:
        return False
    if receiver.role == "partner":
        return notice.region == receiver.scope
    return notice.company is not None and notice.company == receiver.scope


def retry_after_s(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``, after ``attempts`` failed ones."""
    return float(min(FIRST_RETRY_S * 2.0 ** max(0, attempts - 1), LONGEST_RETRY_S))


def from_kpi_alert(message: dict[str, Any], company: str | None) -> Notice:
    """A kpi-alert/1 message (testbed.kpi-alerts.v1)."""
    value = message.get("value")
    shown = "no value" if value is None else f"{value:g}"
    subject = (
        f"[{message['transition']}] {message['demonstration_id']} {message['kpi_id']} at "
        f"{message['site_id']}: {shown} (threshold {message['threshold']:g})"
    )
    return Notice(
        f"alert:{message['alert_id']}",
        "kpi_alert",
        subject,
        message,
        region=message.get("region"),
        company=company,
    )


def from_incident(message: dict[str, Any], company: str | None) -> Notice:
    """An incident reported by a device (hub.internal.incidents), as intake accepted it."""
    subject = (
        f"[incident] {message['demonstration_id']} at {message['site_id']} "
        f"({message['device_id']}, {message['ts']})"
    )
    return Notice(
        f"incident:{message['event_id']}",
        "incident",
        subject,
        message,
        region=message.get("region"),
        company=company,
    )


def from_alertmanager(payload: dict[str, Any]) -> tuple[list[Notice], int]:
    """Alertmanager's webhook payload (version 4) as operator notices, and how many of its
    alerts were the watchdog (counted, never delivered)."""
    notices, watchdogs = [], 0
    for alert in payload.get("alerts", []):
        labels = alert.get("labels", {})
        if labels.get("alertname") == WATCHDOG:
            watchdogs += 1
            continue
        status = alert.get("status", "firing")
        summary = alert.get("annotations", {}).get("summary", "")
        notices.append(
            Notice(
                f"platform:{alert.get('fingerprint', '')}:{alert.get('startsAt', '')}:{status}",
                "platform",
                f"[{status}] {labels.get('alertname', '?')}: {summary}".strip(),
                alert,
                operators_only=True,
            )
        )
    return notices, watchdogs


def escalation(alert: dict[str, Any], open_for_s: float) -> Notice:
    """A KPI breach still open, unacknowledged, after the escalation time."""
    minutes = open_for_s / 60
    return Notice(
        f"escalation:{alert['alert_id']}",
        "escalation",
        f"[unacknowledged {minutes:.0f} min] {alert['demonstration_id']} {alert['kpi_id']} at "
        f"{alert['site_id']}: acknowledge it (POST /api/v1/alerts/{alert['alert_id']}/ack)",
        alert,
        operators_only=True,
    )
