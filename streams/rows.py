"""What a processed batch writes to the database, as plain values: one row type per table and
the fence that says whose rows they are. The pure processor builds them; ``streams.sink`` writes
them (field names are the column names)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class AggregateRow(NamedTuple):
    """One closed window: a ``site_aggregates`` row (field names are the column names)."""

    bucket: datetime
    site_id: str
    demonstration_id: str
    metric: str
    count_: int  # the column "count" (a tuple already has a count method)
    sum: float
    min: float
    max: float
    p50: float | None
    p95: float | None
    p99: float | None


class KpiRow(NamedTuple):
    window_start: datetime
    window_end: datetime
    demonstration_id: str
    site_id: str
    kpi_id: str
    value: float | None
    threshold: float
    status: str
    samples: int
    kpi_version: int = 1  # the KPI definition it was judged by


class AlertRow(NamedTuple):
    alert_id: str
    ts: datetime
    demonstration_id: str
    site_id: str
    kpi_id: str
    transition: str
    value: float | None
    threshold: float
    status: str  # lifecycle: open, or resolved for a recovery


class LastSeenRow(NamedTuple):
    site_id: str
    last_event_at: datetime


class DeviceMinuteRow(NamedTuple):
    """A device's records accepted into one closed minute: a ``device_minutes`` row."""

    bucket: datetime
    device_id: str
    site_id: str
    demonstration_id: str
    records: int
    last_event_at: datetime


class RejectionRow(NamedTuple):
    """A record sent to the DLQ, as its device claimed to be: a ``rejections`` row."""

    at: datetime
    partition: int
    offset: int
    device_id: str | None
    site_id: str | None
    event_ts: datetime | None
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Fence:
    """Whose rows a batch writes: this worker's claim on a partition (partition_owners)."""

    hub: str
    partition: int
    epoch: int
