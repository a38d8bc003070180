"""The API's response and request bodies: what /openapi.json documents and clients rely on."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["pass", "fail", "insufficient_data"]
Lifecycle = Literal["open", "acknowledged", "resolved"]


class ErrorBody(BaseModel):
    detail: str


class OverviewRow(BaseModel):
    region: Literal["gwangju", "jeonnam"]
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
    p50: float | None
    p95: float | None
    p99: float | None


class KpiStatus(BaseModel):
    demonstration_id: str
    kpi_id: str
    window_start: datetime
    window_end: datetime
    value: float | None
    threshold: float
    status: Status
    samples: int


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


class ScorecardKpi(BaseModel):
    kpi_id: str
    title: str
    metric: str
    aggregation: str
    denominator: list[str] = Field(description="ratio: the metrics whose sums divide metric's")
    op: str
    threshold: float
    window: str
    windows_judged: int = Field(description="(site, window) pairs judged inside the period")
    passed: int
    failed: int
    insufficient: int
    not_attributable: int = Field(
        description="windows judged before verdicts were per demonstration, at a shared site: "
        "left out of every other figure"
    )
    pass_rate_pct: float | None = Field(description="passed / (passed + failed), percent")
    latest_window_start: datetime | None
    latest_status: Status | None


class Scorecard(BaseModel):
    demonstration_id: str
    company: str
    title: str
    technology: str
    starts_on: date
    ends_on: date
    period_start: datetime = Field(description="starts_on 00:00 Korean time")
    period_end: datetime = Field(description="the day after ends_on, 00:00 Korean time")
    sites: int
    minutes_outside_period: int = Field(
        description="site-minutes its devices reported outside the period: aggregated, not "
        "judged (KPIs are judged only on windows inside the period)"
    )
    kpis: list[ScorecardKpi]


class DemonstrationSummary(BaseModel):
    demonstration_id: str
    company: str
    title: str
    technology: str
    sites: int
    kpi_pass_24h: int
    kpi_fail_24h: int
    open_alerts: int


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
