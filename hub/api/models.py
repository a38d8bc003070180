"""The API's response and request bodies: what /openapi.json documents and clients rely on."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from hub.management.scorecard import Scorecard, ScorecardKpi

__all__ = ["Scorecard", "ScorecardKpi"]

Status = Literal["pass", "fail", "insufficient_data"]
Lifecycle = Literal["open", "acknowledged", "resolved"]


class ErrorBody(BaseModel):
    detail: str


class OverviewRow(BaseModel):
    region: str = Field(description="the region's code (regions are data: hub regions add)")
    district: str
    sites: int
    sites_reporting: int = Field(description="sites with an accepted event in the last hour")
    kpi_pass: int = Field(description="KPI windows passed that ended in the last 24 hours")
    kpi_fail: int = Field(description="KPI windows failed that ended in the last 24 hours")
    compliance_pct: float | None = Field(description="kpi_pass / (kpi_pass + kpi_fail), percent")
    last_event_at: datetime | None


class Device(BaseModel):
    device_id: str
    demonstration_id: str
    model: str


class Aggregate(BaseModel):
    demonstration_id: str = Field(
        description="whose devices the window holds ('': written before aggregates were per "
        "demonstration, at a site shared by several: not attributable)"
    )
    metric: str
    bucket: datetime
    count: int
    sum: float
    min: float
    max: float
    mean: float
    p50: float | None = Field(description="step=1h: null (a quantile does not roll up)")
    p95: float | None = Field(description="step=1h: the highest minute p95 of the hour")
    p99: float | None = Field(description="step=1h: null")


class KpiStatus(BaseModel):
    demonstration_id: str
    kpi_id: str
    window_start: datetime
    window_end: datetime
    value: float | None
    threshold: float
    status: Status
    samples: int


class KpiResult(BaseModel):
    window_start: datetime
    window_end: datetime
    site_id: str
    kpi_id: str
    value: float | None
    threshold: float
    status: Status
    samples: int
    attributable: bool = Field(
        description="false for windows judged before aggregates were per demonstration, at a "
        "site shared by several (left out of scorecards)"
    )


class Site(BaseModel):
    site_id: str
    region: str
    district: str
    place_type: str
    name: str
    lat: float
    lon: float
    last_event_at: datetime | None
    devices: list[Device]
    latest_aggregates: list[Aggregate] = Field(description="the newest window of each metric")
    kpi_statuses: list[KpiStatus] = Field(description="the newest judged window of each KPI")


class DemonstrationSummary(BaseModel):
    demonstration_id: str
    company: str
    title: str
    technology: str
    status: str = Field(description="applied, approved, rejected, active, ended or archived")
    starts_on: date
    ends_on: date
    sites: int = Field(description="sites hosting its devices (a partner: in its region)")
    kpi_pass_24h: int
    kpi_fail_24h: int
    open_alerts: int


class ComparedDemonstration(BaseModel):
    demonstration_id: str
    company: str
    title: str
    status: str
    starts_on: date
    ends_on: date
    sites: int
    kpis: list[ScorecardKpi] = Field(description="each KPI's definition and its verdicts")
    evidence_sha256: str | None = Field(
        description="the SHA-256 of its evidence pack once it has ended (GET "
        ".../evidence; check it with the public key), else null"
    )
    evidence_frozen_at: datetime | None


class Comparison(BaseModel):
    technology: str
    demonstrations: list[ComparedDemonstration]


class Alert(BaseModel):
    alert_id: str
    ts: datetime
    demonstration_id: str
    site_id: str
    kpi_id: str
    transition: Literal["breach", "recovered", "no_data"]
    value: float | None
    threshold: float
    status: Lifecycle
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    note: str | None
    resolved_at: datetime | None


# PostgreSQL text cannot hold a NUL character: refuse it at the door (422), not in the database.
NO_NUL = r"^[^\x00]*$"


class AckRequest(BaseModel):
    by: str = Field(min_length=1, max_length=100, pattern=NO_NUL, description="who acknowledges")
    note: str = Field(default="", max_length=2000, pattern=NO_NUL)


class SessionRequest(BaseModel):
    token: str = Field(min_length=1, max_length=200, pattern=NO_NUL, description="an API token")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


class Applied(BaseModel):
    demonstration_id: str
    status: str
    sites: int
    devices: int


class Decided(BaseModel):
    demonstration_id: str
    status: str
    devices: int = Field(description="devices registered (an approval)")
    ended_at: datetime | None = None


class Reason(BaseModel):
    reason: str = Field(default="", max_length=2000, pattern=NO_NUL)


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="the token's name (token:<name>) or the CLI user")
    action: str
    subject: str
    before: Any = None
    after: Any = None


class Problems(BaseModel):
    detail: list[Any] = Field(description="every problem found, each naming its field")


class PublicKey(BaseModel):
    algorithm: str
    public_key_pem: str


class PublicPlace(BaseModel):
    region: str
    region_label: str
    district: str
    label: str


class PublicDay(BaseModel):
    day: date = Field(description="a Korean calendar day")
    passed: int = Field(description="KPI windows judged passed that day")
    failed: int
    compliance_pct: float | None = Field(description="passed / (passed + failed); null: none")


class PublicDemonstration(BaseModel):
    demonstration_id: str
    company: str
    title: str
    technology: str
    technology_label: str
    status: str
    status_label: str
    starts_on: date
    ends_on: date
    sites: int
    districts: list[PublicPlace]
    daily_compliance: list[PublicDay]


class PublicSummary(BaseModel):
    lang: Literal["ko", "en"]
    timezone: str
    generated_at: datetime = Field(description="when the figures were read, in KST")
    demonstrations: list[PublicDemonstration]


class DeviceActivity(BaseModel):
    device_id: str
    demonstration_id: str
    site_id: str
    model: str
    last_seen: datetime | None = Field(
        description="the event time of its newest record counted (once its minute closed)"
    )
    accepted_today: int = Field(description="records accepted since 00:00 Korean time")
    rejected_today: int
    rejected_today_by_reason: dict[str, int]


class Rejection(BaseModel):
    at: datetime = Field(description="when the broker appended the record")
    device_id: str | None = Field(description="the device the record names (null: none)")
    site_id: str | None
    event_ts: datetime | None = Field(description="the record's own ts, when readable")
    reason: str
    detail: str = Field(description="what was wrong, naming the field")
    partition: int
    offset: int
