"""A closed window, or a judged KPI window, as what the hub writes: database rows and Kafka
messages. Pure."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hub import topics
from hub.registry.model import Kpi
from streams import routing
from streams.intake import KafkaRecord
from streams.kpi import Judgement, Transition
from streams.routing import Outgoing
from streams.rows import AggregateRow, AlertRow, DeviceMinuteRow, KpiRow, RejectionRow
from streams.snapshot import DemoInfo, SiteInfo
from streams.windows import ClosedWindow, DeviceMinute


@functools.lru_cache(maxsize=4096)  # the same window starts, over and over (immutable values)
def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


# Event times a rejection row keeps (year 1 to 9999 in milliseconds, within what a timestamptz
# and a datetime hold): a claimed ``ts`` beyond is left out.
MIN_TS_MS = -62_135_596_800_000 + 86_400_000
MAX_TS_MS = 253_402_300_799_000 - 86_400_000


@dataclass(slots=True)
class Outputs:
    """What a batch writes, gathered as it is processed."""

    outgoing: list[Outgoing] = field(default_factory=list)
    aggregate_rows: list[AggregateRow] = field(default_factory=list)
    kpi_rows: list[KpiRow] = field(default_factory=list)
    alert_rows: list[AlertRow] = field(default_factory=list)
    device_minute_rows: list[DeviceMinuteRow] = field(default_factory=list)
    rejection_rows: list[RejectionRow] = field(default_factory=list)

    def device_minute(self, minute: DeviceMinute) -> None:
        """A device's records in a closed minute: its ``device_minutes`` row."""
        self.device_minute_rows.append(
            DeviceMinuteRow(
                _dt(minute.start_ms),
                minute.device_id,
                minute.site_id,
                minute.demonstration_id,
                minute.records,
                _dt(minute.last_ts_ms),
            )
        )

    def rejection(self, record: KafkaRecord, reason: str, detail: str, received_ms: int) -> None:
        """A record sent to the DLQ: its ``rejections`` row, naming the device it claims to be
        from, so that its company can read why (never its bytes: those are in the DLQ)."""
        device_id, site_id, ts_ms = routing.claimed_identity(record.value)
        appended = record.timestamp if record.timestamp > 0 else received_ms
        event_ts = None
        if ts_ms is not None and MIN_TS_MS <= ts_ms <= MAX_TS_MS:
            event_ts = _dt(ts_ms)
        self.rejection_rows.append(
            RejectionRow(
                _dt(appended),
                record.partition,
                record.offset,
                device_id,
                site_id,
                event_ts,
                reason,
                detail,
            )
        )

    def window(self, window: ClosedWindow, site: SiteInfo, now_ms: int) -> None:
        """A closed 1-minute window: its site_aggregates row and its message."""
        message = routing.aggregate_message(window, site, now_ms)
        self.outgoing.append(routing.aggregate_out(message))
        acc = window.acc
        self.aggregate_rows.append(
            AggregateRow(
                _dt(window.start_ms),
                window.site_id,
                window.demonstration_id,
                window.metric,
                acc.count,
                acc.sum,
                acc.min,
                acc.max,
                message["p50"],
                message["p95"],
                message["p99"],
            )
        )

    def judgement(
        self,
        demo: DemoInfo,
        kpi: Kpi,
        site_id: str,
        site: SiteInfo,
        judgement: Judgement,
        now_ms: int,
    ) -> None:
        """A judged KPI window: its kpi_results row, and its message to the testbed and the
        site's region's partners."""
        demonstration_id = demo.demonstration_id
        message = routing.kpi_result_message(demo, kpi, site_id, site, judgement, now_ms)
        self.outgoing.extend(routing.routed(topics.KPI_RESULTS, "kpi-results", message))
        self.kpi_rows.append(
            KpiRow(
                _dt(judgement.window_start_ms),
                _dt(judgement.window_end_ms),
                demonstration_id,
                site_id,
                kpi.kpi_id,
                judgement.value,
                kpi.threshold,
                judgement.status,
                judgement.samples,
                kpi.version,
            )
        )

    def alert(
        self,
        demo: DemoInfo,
        kpi: Kpi,
        site_id: str,
        site: SiteInfo,
        judgement: Judgement,
        transition: Transition,
    ) -> None:
        """A status change: its kpi_alerts row (a recovery is resolved as it is raised), and its
        message to the testbed and the site's region's partners."""
        demonstration_id = demo.demonstration_id
        message = routing.alert_message(demo, kpi, site_id, site, judgement, transition)
        self.outgoing.extend(routing.routed(topics.KPI_ALERTS, "kpi-alerts", message))
        self.alert_rows.append(
            AlertRow(
                transition.alert_id,
                _dt(judgement.window_end_ms),
                demonstration_id,
                site_id,
                kpi.kpi_id,
                transition.transition,
                judgement.value,
                kpi.threshold,
                "resolved" if transition.transition == "recovered" else "open",
            )
        )
