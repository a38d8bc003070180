"""What one batch or tick did, counted: the processor fills it, ``streams.observe`` turns it
into the worker's metrics in one place."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class Counts:
    accepted: int = 0
    duplicate: int = 0  # repeats of an accepted event_id
    redelivered: int = 0  # records already processed before a crash or rebalance, skipped
    windows_closed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by DLQ reason
    kpi: Counter[str] = field(default_factory=Counter)  # KPI windows judged, by status
    alerts: Counter[str] = field(default_factory=Counter)  # by transition
    # Accepted records by (region, district) of their site.
    accepted_by_district: Counter[tuple[str, str]] = field(default_factory=Counter)
