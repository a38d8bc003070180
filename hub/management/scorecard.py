"""A demonstration's KPI scorecard: what a procurement officer reads (the API, `hub report`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from hub.db import Connection
from hub.errors import HubError
from hub.management import queries

Status = Literal["pass", "fail", "insufficient_data"]


class UnknownDemonstration(HubError):
    pass


class KpiVersionScore(BaseModel):
    version: int
    threshold: float
    min_samples: int
    valid_from: datetime | None = Field(description="null: from the beginning")
    valid_until: datetime | None = Field(description="null: still in force")
    reason: str
    changed_by: str
    windows_judged: int = Field(description="windows judged by this version")
    passed: int
    failed: int


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
    versions: list[KpiVersionScore] = Field(
        default_factory=list,
        description="each definition of the KPI (a threshold changed from a stated time), its "
        "period and the windows it judged: every verdict keeps the version it was judged by",
    )


class Scorecard(BaseModel):
    demonstration_id: str
    company: str
    title: str
    technology: str
    status: str = Field(
        description="applied, approved, rejected, active, ended or archived (the programme)"
    )
    starts_on: date
    ends_on: date
    period_start: datetime = Field(description="starts_on 00:00 Korean time")
    period_end: datetime = Field(description="the day after ends_on, 00:00 Korean time")
    region: str | None = Field(
        default=None,
        description="the region whose sites every figure covers (a partner's); null: every site",
    )
    sites: int
    minutes_outside_period: int = Field(
        description="site-minutes its devices reported outside the period: aggregated, not "
        "judged (KPIs are judged only on windows inside the period)"
    )
    kpis: list[ScorecardKpi]


async def build_scorecard(
    conn: Connection, demonstration_id: str, region: str | None = None
) -> Scorecard:
    """The scorecard over every site, or over one region's (what its partner reads)."""
    demo = await queries.demonstration(conn, demonstration_id)
    if demo is None:
        raise UnknownDemonstration(f"demonstration {demonstration_id!r} is not in the registry")
    versions: dict[str, list[KpiVersionScore]] = {}
    for row in await queries.scorecard_versions(conn, demonstration_id, region):
        versions.setdefault(row.pop("kpi_id"), []).append(KpiVersionScore(**row))
    kpis = [
        ScorecardKpi(**row, versions=versions.get(row["kpi_id"], []))
        for row in await queries.scorecard_kpis(conn, demonstration_id, region)
    ]
    return Scorecard(
        demonstration_id=demo["demonstration_id"],
        company=demo["company"],
        title=demo["title"],
        technology=demo["technology"],
        status=demo["lifecycle"],
        starts_on=demo["starts_on"],
        ends_on=demo["ends_on"],
        period_start=demo["period_start"],
        period_end=demo["period_end"],
        region=region,
        sites=demo["sites"]
        if region is None
        else await queries.sites_of(conn, demonstration_id, region),
        minutes_outside_period=await queries.minutes_outside_period(conn, demonstration_id, region),
        kpis=kpis,
    )
