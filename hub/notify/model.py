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
from typing import Annotated, Any, Final, Literal

import msgspec

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
    if role == "procurement":
        raise ReceiverError(
            "--scope: procurement is told nothing (notices go to operator, partner:<region> or "
            "company:<company>); procurement reads scorecards and comparisons"
        )
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


# What the notifier reads from Kafka, checked before anything is built from it: the topics are
# the hub's, but a value that is not what the hub writes (another producer, a bug) must cost one
# skipped record, never the notifier. Text fields are bounded; unknown fields are kept.
Text = Annotated[str, msgspec.Meta(max_length=256)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class KpiAlertMessage(msgspec.Struct, frozen=True):
    """kpi-alert/1 (schemas/kpi-alert-v1.schema.json), the fields a notice is made of."""

    alert_id: Id
    transition: Literal["breach", "recovered", "no_data"]
    demonstration_id: Id
    kpi_id: Id
    site_id: Id
    threshold: float
    value: float | None = None
    region: Text | None = None


class IncidentMessage(msgspec.Struct, frozen=True):
    """incident/1 (hub.internal.incidents), as intake accepted it."""

    event_id: Id
    device_id: Id
    site_id: Id
    demonstration_id: Id
    ts: Text
    region: Text | None = None
    arrived_at: Text | None = None


class BadMessage(HubError):
    """A record on an internal topic that is not what the hub writes: counted and skipped."""


def parse(topic_kind: Kind, raw: bytes) -> tuple[dict[str, Any], Any]:
    """The message as JSON and its checked fields; BadMessage names what is wrong."""
    kind = KpiAlertMessage if topic_kind == "kpi_alert" else IncidentMessage
    try:
        document = msgspec.json.decode(raw)
        if not isinstance(document, dict):
            raise BadMessage(f"not a JSON object ({type(document).__name__})")
        return document, msgspec.convert(document, kind)
    except msgspec.ValidationError as error:
        raise BadMessage(str(error)) from None
    except msgspec.DecodeError as error:
        raise BadMessage(f"not JSON ({error})") from None


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]+")


def one_line(text: str, limit: int = 200) -> str:
    """Device data made safe for a subject line: control characters (CR, LF...) become spaces,
    and it is cut to ``limit`` characters. Non-ASCII stays (mail encodes it, RFC 2047)."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def from_kpi_alert(message: dict[str, Any], company: str | None) -> Notice:
    """A kpi-alert/1 message (testbed.kpi-alerts.v1); ``message`` as :func:`parse` checked it."""
    alert = msgspec.convert(message, KpiAlertMessage)
    shown = "no value" if alert.value is None else f"{alert.value:g}"
    subject = one_line(
        f"[{alert.transition}] {alert.demonstration_id} {alert.kpi_id} at "
        f"{alert.site_id}: {shown} (threshold {alert.threshold:g})"
    )
    return Notice(
        f"alert:{alert.alert_id}",
        "kpi_alert",
        subject,
        message,
        region=alert.region,
        company=company,
    )


def from_incident(message: dict[str, Any], company: str | None) -> Notice:
    """An incident reported by a device (hub.internal.incidents), as intake accepted it. Event
    ids are unique per device: the notice is the device's event."""
    incident = msgspec.convert(message, IncidentMessage)
    subject = one_line(
        f"[incident] {incident.demonstration_id} at {incident.site_id} "
        f"({incident.device_id}, {incident.ts})"
    )
    return Notice(
        f"incident:{incident.device_id}:{incident.event_id}",
        "incident",
        subject,
        message,
        region=incident.region,
        company=company,
    )


@dataclass(slots=True)
class IncidentLimiter:
    """How many incidents of one device are notified: a token bucket per device, ``burst``
    deep, refilled at ``per_hour``. A device quiet for a while always has its next incident
    delivered; a device reporting a storm is heard ``per_hour`` times an hour, and each notice
    that goes out says how many were held back since the last. (Every incident is still
    accepted and counted as telemetry: only the notifications are limited.)"""

    burst: int
    per_hour: float
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # tokens, at (s)
    held: dict[str, int] = field(default_factory=dict)
    limit_devices: int = 100_000

    def allow(self, device_id: str, at_s: float) -> tuple[bool, int]:
        """Whether this incident is notified, and (if so) how many were held back before it."""
        tokens, last = self.buckets.get(device_id, (float(self.burst), at_s))
        tokens = min(float(self.burst), tokens + max(0.0, at_s - last) * self.per_hour / 3600)
        if tokens < 1.0:
            self.buckets[device_id] = (tokens, max(last, at_s))
            self.held[device_id] = self.held.get(device_id, 0) + 1
            return False, 0
        if len(self.buckets) >= self.limit_devices and device_id not in self.buckets:
            self._forget_quiet(at_s)
        self.buckets[device_id] = (tokens - 1.0, max(last, at_s))
        return True, self.held.pop(device_id, 0)

    def _forget_quiet(self, at_s: float) -> None:
        """Devices whose bucket is full again are as good as new: their entries go."""
        refill = 3600 / self.per_hour if self.per_hour > 0 else float("inf")
        for device, (tokens, last) in list(self.buckets.items()):
            if tokens + (at_s - last) / refill >= self.burst and device not in self.held:
                del self.buckets[device]


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
