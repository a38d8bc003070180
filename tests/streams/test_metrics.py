"""The worker's metrics, on a fresh registry: what a batch's counts and rows add, labels bounded."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from hub.metrics import worker_metrics
from streams.counts import Counts
from streams.observe import Observer
from streams.outputs import Outputs
from streams.rows import AggregateRow


def test_a_batch_is_counted_with_bounded_labels() -> None:
    registry = CollectorRegistry()
    observe = Observer(worker_metrics(registry))
    counts = Counts(
        accepted=5,
        duplicate=1,
        windows_closed=1,
        rejected=Counter({"late": 2}),
        kpi=Counter({"fail": 1}),
        alerts=Counter({"breach": 1}),
        accepted_by_district=Counter({("gwangju", "buk"): 4, ("jeonnam", "mokpo"): 1}),
    )
    now = datetime.now(UTC).timestamp()
    outputs = Outputs()
    bucket = datetime.fromtimestamp(now - 180, UTC)
    outputs.aggregate_rows.append(
        AggregateRow(bucket, "GJ-BUK-0001", "DEMO-001", "online", 4, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    )
    observe.counts(counts)
    observe.written(outputs, now)
    observe.partition(3, 20, int(now * 1000), int(now * 1000) - 60_000, {"GJ-BUK-0001-CAM1": 9000})

    def value(name: str, **labels: Any) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("hub_records_accepted_total", region="gwangju", district="buk") == 4
    assert value("hub_records_accepted_total", region="jeonnam", district="mokpo") == 1
    assert value("hub_records_rejected_total", reason="late") == 2
    assert value("hub_records_duplicate_total") == 1
    assert value("hub_kpi_results_total", status="fail") == 1
    assert value("hub_kpi_alerts_total", transition="breach") == 1
    assert value("hub_consumer_lag", partition="3") == 20
    assert value("hub_window_close_lag_seconds_count") == 1
    assert value("hub_window_close_lag_seconds_sum") == 120  # the window ended two minutes ago
    assert value("hub_device_clock_ahead_seconds", device="GJ-BUK-0001-CAM1") == 9.0
    observe.partition(3, 0, int(now * 1000), int(now * 1000), {})  # its clock is right again
    assert value("hub_device_clock_ahead_seconds", device="GJ-BUK-0001-CAM1") is None
    names = {s.name for m in registry.collect() for s in m.samples}
    assert not any("site" in k for m in registry.collect() for s in m.samples for k in s.labels)
    assert "process_cpu_seconds_total" in names
