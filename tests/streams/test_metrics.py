"""The worker's metrics, on a fresh registry: what a batch result adds, labels bounded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from hub.metrics import worker_metrics
from hub.settings import Settings
from streams.processor import BatchResult, PartitionProcessor, ProcessorConfig
from streams.runtime import WorkerRuntime
from streams.sink import AggregateRow


def test_a_batch_result_is_counted_with_bounded_labels() -> None:
    registry = CollectorRegistry()
    runtime = WorkerRuntime(Settings(), worker_metrics(registry), ProcessorConfig())
    runtime.highwater = lambda partition: 120
    runtime.next_offset[3] = 100
    result = BatchResult()
    result.counts.update(
        {
            "accepted": 5,
            "rejected:late": 2,
            "duplicate": 1,
            "windows_closed": 1,
            "kpi:fail": 1,
            "alert:breach": 1,
        }
    )
    result.accepted_by_district.update({("gwangju", "buk"): 4, ("jeonnam", "mokpo"): 1})
    bucket = datetime.fromtimestamp(datetime.now(UTC).timestamp() - 180, UTC)
    result.aggregate_rows.append(
        AggregateRow(bucket, "GJ-BUK-0001", "DEMO-001", "online", 4, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    )
    runtime._count(PartitionProcessor(3, ProcessorConfig()), result)

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
    lag = value("hub_window_close_lag_seconds_sum")
    assert lag is not None
    assert 110 < lag < 130  # the window ended two minutes ago
    names = {s.name for m in registry.collect() for s in m.samples}
    assert not any("site" in k for m in registry.collect() for s in m.samples for k in s.labels)
    assert "process_cpu_seconds_total" in names
