"""The hub's Prometheus metrics, built on a registry that is passed in (tests use a fresh one).

Labels are bounded: region, district, reason, status, transition, partition. Never a site id,
whose thousands of values would swamp Prometheus, nor a demonstration: /metrics answers without
a token, and which company's KPIs are failing is not for everyone. The one device label is on
``hub_device_clock_ahead_seconds``, which holds only the devices whose clock runs ahead now (a
device back in line is removed).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 240, 300, 600, 1200)


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    received: Counter
    accepted: Counter
    rejected: Counter
    duplicates: Counter
    redelivered: Counter
    refilled: Counter
    windows_closed: Counter
    kpi_results: Counter
    alerts: Counter
    event_to_written: Histogram
    window_close_lag: Histogram
    kpi_judged_lag: Histogram
    batch_seconds: Histogram
    batch_failures: Counter
    consumer_lag: Gauge
    batch_records: Histogram
    sink_rows: Histogram
    sink_seconds: Histogram
    sink_backlog: Gauge
    db_errors: Counter
    watermark_lag: Gauge
    registry_digest_loaded: Gauge
    registry_rereads: Counter
    partitions_assigned: Gauge
    closed_through: Gauge
    clock_ahead: Gauge
    devices_clock_ahead: Gauge
    sink_quarantined: Counter
    acks_pending: Gauge
    fenced: Counter


def process_metrics(registry: CollectorRegistry) -> None:
    """CPU, memory, file descriptors and Python's GC, as every long-running process exports."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def worker_metrics(registry: CollectorRegistry) -> WorkerMetrics:
    process_metrics(registry)
    return WorkerMetrics(
        received=Counter(
            "hub_records_received", "Telemetry records read from Kafka", registry=registry
        ),
        accepted=Counter(
            "hub_records_accepted",
            "Telemetry records accepted into windows",
            ["region", "district"],
            registry=registry,
        ),
        rejected=Counter(
            "hub_records_rejected",
            "Telemetry records sent to the dead-letter topic",
            ["reason"],
            registry=registry,
        ),
        duplicates=Counter(
            "hub_records_duplicate",
            "Repeats of an already accepted event_id, counted once",
            registry=registry,
        ),
        redelivered=Counter(
            "hub_records_redelivered",
            "Records Kafka delivered again after a crash or rebalance that the state shows were "
            "already processed, skipped",
            registry=registry,
        ),
        refilled=Counter(
            "hub_records_refilled",
            "Records the stream skipped (a Faust consumer gap) and the worker read directly",
            registry=registry,
        ),
        windows_closed=Counter(
            "hub_windows_closed", "1-minute windows closed and written", registry=registry
        ),
        kpi_results=Counter("hub_kpi_results", "KPI windows judged", ["status"], registry=registry),
        alerts=Counter(
            "hub_kpi_alerts", "KPI status changes raised", ["transition"], registry=registry
        ),
        event_to_written=Histogram(
            "hub_event_to_written_seconds",
            "From a closed window's median event time (its start + 30 s) to its row written: "
            "window length, allowed lateness and processing",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        window_close_lag=Histogram(
            "hub_window_close_lag_seconds",
            "From a window's end (event time) to its row written: allowed lateness plus delay",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        kpi_judged_lag=Histogram(
            "hub_kpi_judged_lag_seconds",
            "From a KPI window's end (event time) to its result written",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        batch_seconds=Histogram(
            "hub_batch_seconds",
            "From a batch's arrival at the processor to everything it produced written",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        ),
        batch_failures=Counter(
            "hub_batch_failures",
            "Batches or ticks whose writing failed with an unexpected error: the partition was "
            "rebuilt from its state and the work retried (any increase wants a look at the log)",
            registry=registry,
        ),
        consumer_lag=Gauge(
            "hub_consumer_lag",
            "Records in the partition not yet processed by this worker",
            ["partition"],
            registry=registry,
        ),
        batch_records=Histogram(
            "hub_batch_records",
            "Records per processed batch",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
            registry=registry,
        ),
        sink_rows=Histogram(
            "hub_sink_batch_rows",
            "Rows per database write",
            buckets=(1, 10, 100, 500, 1000, 5000, 20000),
            registry=registry,
        ),
        sink_seconds=Histogram(
            "hub_sink_write_seconds",
            "Time to commit one database write, retries included",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        ),
        sink_backlog=Gauge(
            "hub_sink_backlog_rows", "Rows waiting for the database", registry=registry
        ),
        db_errors=Counter(
            "hub_db_errors",
            "Failed database writes (each is retried)",
            ["error"],
            registry=registry,
        ),
        watermark_lag=Gauge(
            "hub_watermark_lag_seconds",
            "Wall clock minus a partition's event-time watermark",
            ["partition"],
            registry=registry,
        ),
        registry_digest_loaded=Gauge(
            "hub_registry_loaded_timestamp_seconds",
            "When the worker last loaded the registry",
            registry=registry,
        ),
        registry_rereads=Counter(
            "hub_registry_rereads",
            "Registry reads before judging a record that named a device or key newer than the "
            "worker's registry, maybe (one a batch at most)",
            registry=registry,
        ),
        partitions_assigned=Gauge(
            "hub_partitions_assigned",
            "Telemetry partitions this worker processes",
            registry=registry,
        ),
        closed_through=Gauge(
            "hub_windows_closed_through_timestamp_seconds",
            "Every window of the partition ending at or before this time is written",
            ["partition"],
            registry=registry,
        ),
        clock_ahead=Gauge(
            "hub_device_clock_ahead_seconds",
            "How far ahead of its arrival at the broker a device's newest record was dated, for "
            "the devices ahead by more than the hub's clock tolerance (5 s) only",
            ["device"],
            registry=registry,
        ),
        devices_clock_ahead=Gauge(
            "hub_devices_clock_ahead",
            "Devices whose newest record was dated ahead of its arrival by more than 5 s",
            registry=registry,
        ),
        fenced=Counter(
            "hub_fenced_batches",
            "Batches not written because another worker had taken their partition over (this "
            "one lost it while it waited: a long database outage, say)",
            registry=registry,
        ),
        acks_pending=Gauge(
            "hub_consumer_acks_pending",
            "Processed offsets waiting to be committed behind an unprocessed one: a few batches "
            "in a healthy worker; growing, a commit stall",
            registry=registry,
        ),
        sink_quarantined=Counter(
            "hub_sink_rows_quarantined",
            "Rows the database refused as data (not an outage), kept in sink_quarantine",
            ["table"],
            registry=registry,
        ),
    )


@dataclass(frozen=True, slots=True)
class ApiMetrics:
    requests: Counter
    seconds: Histogram
    open_alerts: Gauge
    db_up: Gauge
    health_checks: Counter
    public_queries: Counter


def api_metrics(registry: CollectorRegistry) -> ApiMetrics:
    process_metrics(registry)
    return ApiMetrics(
        requests=Counter(
            "hub_api_requests", "API requests", ["route", "status"], registry=registry
        ),
        seconds=Histogram(
            "hub_api_request_seconds", "API request time", ["route"], registry=registry
        ),
        open_alerts=Gauge(
            "hub_open_alerts",
            "Open KPI alerts by the region of their site (no demonstration: /metrics answers "
            "without a token, and which company is failing is not for everyone)",
            ["region"],
            registry=registry,
        ),
        db_up=Gauge("hub_api_database_up", "1 if the database answered", registry=registry),
        health_checks=Counter(
            "hub_api_health_checks",
            "Checks of the database and Kafka made for /healthz (at most one every 5 s)",
            registry=registry,
        ),
        public_queries=Counter(
            "hub_api_public_queries",
            "Database queries made for the public page and summary (at most one every 30 s)",
            registry=registry,
        ),
    )


@dataclass(frozen=True, slots=True)
class NotifyMetrics:
    notices: Counter
    deliveries: Counter
    pending: Gauge
    watchdog: Gauge
    incident_seconds: Histogram
    skipped: Counter
    incidents_held: Counter


def notify_metrics(registry: CollectorRegistry) -> NotifyMetrics:
    process_metrics(registry)
    return NotifyMetrics(
        notices=Counter("hub_notify_notices", "Notices read, by kind", ["kind"], registry=registry),
        deliveries=Counter(
            "hub_notify_deliveries",
            "Delivery attempts, by receiver kind and outcome (delivered, failed)",
            ["channel", "outcome"],
            registry=registry,
        ),
        pending=Gauge(
            "hub_notify_pending", "Outbox rows not delivered yet (all receivers)", registry=registry
        ),
        watchdog=Gauge(
            "hub_notify_watchdog_timestamp_seconds",
            "When Alertmanager last delivered the always-firing watchdog: the alerting pipeline "
            "(Prometheus -> Alertmanager -> notifier) works while this moves",
            registry=registry,
        ),
        incident_seconds=Histogram(
            "hub_notify_incident_seconds",
            "From an incident's arrival at the broker to its delivery to a receiver",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 300),
            registry=registry,
        ),
        skipped=Counter(
            "hub_notify_skipped",
            "Records on the notifier's topics that are not what the hub writes: skipped, by topic",
            ["topic"],
            registry=registry,
        ),
        incidents_held=Counter(
            "hub_notify_incidents_held",
            "Incidents not notified: their device was over its rate (HUB_NOTIFY_INCIDENT_BURST, "
            "HUB_NOTIFY_INCIDENT_PER_HOUR); the next notice of the device says how many",
            registry=registry,
        ),
    )
