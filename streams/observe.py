"""A batch's counts and rows as the worker's metrics: the one place that maps one to the
other. The labels stay bounded (``hub.metrics``)."""

from __future__ import annotations

import time
from contextlib import suppress

from hub.metrics import WorkerMetrics
from streams.counts import Counts
from streams.outputs import Outputs


class Observer:
    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self._ahead_shown: dict[int, set[str]] = {}

    def counts(self, counts: Counts) -> None:
        m = self.metrics
        for (region, district), n in counts.accepted_by_district.items():
            m.accepted.labels(region or "unknown", district or "unknown").inc(n)
        for reason, n in counts.rejected.items():
            m.rejected.labels(reason).inc(n)
        for status, n in counts.kpi.items():
            m.kpi_results.labels(status).inc(n)
        for transition, n in counts.alerts.items():
            m.alerts.labels(transition).inc(n)
        m.duplicates.inc(counts.duplicate)
        m.redelivered.inc(counts.redelivered)
        m.windows_closed.inc(counts.windows_closed)

    def written(self, outputs: Outputs, now_s: float | None = None) -> None:
        """How long after their windows ended the rows were written."""
        m = self.metrics
        now = time.time() if now_s is None else now_s
        for row in outputs.aggregate_rows:
            start = row.bucket.timestamp()
            m.window_close_lag.observe(now - start - 60)
            m.event_to_written.observe(now - start - 30)
        for kpi_row in outputs.kpi_rows:
            m.kpi_judged_lag.observe(now - kpi_row.window_end.timestamp())

    def partition(
        self,
        partition: int,
        consumer_lag: int | None,
        watermark_ms: int,
        closed_through_ms: int,
        clock_ahead: dict[str, int],
    ) -> None:
        """Where the partition stands, and its devices whose clocks run ahead now."""
        m, label = self.metrics, str(partition)
        if consumer_lag is not None:
            m.consumer_lag.labels(label).set(max(0, consumer_lag))
        if watermark_ms:
            m.watermark_lag.labels(label).set(time.time() - watermark_ms / 1000)
            m.closed_through.labels(label).set(closed_through_ms / 1000)
        shown = self._ahead_shown.get(partition, set())
        for device in shown - clock_ahead.keys():
            with suppress(KeyError):
                m.clock_ahead.remove(device)
        for device, ms in clock_ahead.items():
            m.clock_ahead.labels(device).set(ms / 1000)
        self._ahead_shown[partition] = set(clock_ahead)
        m.devices_clock_ahead.set(sum(len(d) for d in self._ahead_shown.values()))

    def forget(self, partition: int) -> None:
        """A partition gone elsewhere: its gauges go too."""
        m, label = self.metrics, str(partition)
        for gauge in (m.watermark_lag, m.closed_through, m.consumer_lag):
            with suppress(KeyError):
                gauge.remove(label)
        for device in self._ahead_shown.pop(partition, set()):
            with suppress(KeyError):
                m.clock_ahead.remove(device)
