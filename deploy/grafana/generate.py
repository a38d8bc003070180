"""Writes the two Grafana dashboards (kept as generated JSON; edit this generator, not the JSON)."""

import json
from pathlib import Path

PROM = {"type": "prometheus", "uid": "hub-prometheus"}
PG = {"type": "grafana-postgresql-datasource", "uid": "hub-timescaledb"}


def panel(pid, title, kind, targets, x, y, w=12, h=8, unit=None, datasource=PROM):
    p = {
        "id": pid,
        "title": title,
        "type": kind,
        "datasource": datasource,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    return p


def prom(expr, legend="", ref="A"):
    return {"refId": ref, "datasource": PROM, "expr": expr, "legendFormat": legend}


def sql(raw, fmt="table", ref="A"):
    return {
        "refId": ref,
        "datasource": PG,
        "rawQuery": True,
        "editorMode": "code",
        "format": fmt,
        "rawSql": raw,
    }


operations = [
    panel(
        1,
        "Records per second: received, accepted, rejected",
        "timeseries",
        [
            prom("sum(rate(hub_records_received_total[1m]))", "received", "A"),
            prom("sum(rate(hub_records_accepted_total[1m]))", "accepted", "B"),
            prom("sum(rate(hub_records_rejected_total[1m]))", "rejected", "C"),
            prom("sum(rate(hub_records_duplicate_total[1m]))", "repeats", "D"),
        ],
        0,
        0,
        unit="reqps",
    ),
    panel(
        2,
        "Rejected by reason (DLQ)",
        "timeseries",
        [
            prom("sum by (reason) (rate(hub_records_rejected_total[5m]))", "{{reason}}"),
        ],
        12,
        0,
        unit="reqps",
    ),
    panel(
        3,
        "Accepted per district",
        "timeseries",
        [
            prom(
                'sum by (region, district) (rate(hub_records_accepted_total{region=~"$region", '
                'district=~"$district"}[5m]))',
                "{{region}}/{{district}}",
            ),
        ],
        0,
        8,
        unit="reqps",
    ),
    panel(
        4,
        "Window written after its end (p50, p99)",
        "timeseries",
        [
            prom(
                "histogram_quantile(0.5, sum by (le) (rate(hub_window_close_lag_seconds_bucket[5m])))",
                "p50",
                "A",
            ),
            prom(
                "histogram_quantile(0.99, sum by (le) (rate(hub_window_close_lag_seconds_bucket[5m])))",
                "p99",
                "B",
            ),
            prom(
                "histogram_quantile(0.5, sum by (le) (rate(hub_event_to_written_seconds_bucket[5m])))",
                "median event -> row, p50",
                "C",
            ),
        ],
        12,
        8,
        unit="s",
    ),
    panel(
        5,
        "Consumer lag per partition",
        "timeseries",
        [
            prom("max by (partition) (hub_consumer_lag)", "partition {{partition}}"),
        ],
        0,
        16,
        unit="short",
    ),
    panel(
        6,
        "Event time behind the wall clock",
        "timeseries",
        [
            prom("max by (partition) (hub_watermark_lag_seconds)", "partition {{partition}}"),
        ],
        12,
        16,
        unit="s",
    ),
    panel(
        7,
        "Sink: backlog, batch size, write time p99",
        "timeseries",
        [
            prom("sum(hub_sink_backlog_rows)", "rows waiting", "A"),
            prom(
                "histogram_quantile(0.99, sum by (le) (rate(hub_sink_write_seconds_bucket[5m])))",
                "write p99 (s)",
                "B",
            ),
            prom(
                "sum(rate(hub_sink_batch_rows_sum[5m])) / clamp_min(sum(rate(hub_sink_batch_rows_count[5m])), 1e-9)",
                "rows per write",
                "C",
            ),
        ],
        0,
        24,
    ),
    panel(
        8,
        "Database errors",
        "timeseries",
        [
            prom("sum by (error) (rate(hub_db_errors_total[5m]))", "{{error}}"),
        ],
        12,
        24,
        unit="short",
    ),
    panel(
        9,
        "KPI results by status, alerts by change",
        "timeseries",
        [
            prom("sum by (status) (rate(hub_kpi_results_total[5m]))", "{{status}}", "A"),
            prom(
                "sum by (transition) (rate(hub_kpi_alerts_total[5m]))", "alert {{transition}}", "B"
            ),
        ],
        0,
        32,
    ),
    panel(
        10,
        # Prometheus holds no demonstration (its /metrics is open): per demonstration is the
        # management dashboard's, from the database.
        "Open alerts per region",
        "bargauge",
        [
            prom('sum by (region) (hub_open_alerts{region=~"$region"})', "{{region}}"),
        ],
        12,
        32,
    ),
    panel(
        11,
        "Processes: CPU and memory",
        "timeseries",
        [
            prom(
                'sum by (job, instance) (rate(process_cpu_seconds_total{job=~"hub-.*"}[1m]))',
                "{{job}} {{instance}} CPU",
                "A",
            ),
            prom(
                'sum by (job, instance) (process_resident_memory_bytes{job=~"hub-.*"})',
                "{{job}} {{instance}} RSS",
                "B",
            ),
        ],
        0,
        40,
    ),
    panel(
        12,
        "API: requests and p99",
        "timeseries",
        [
            prom("sum by (route) (rate(hub_api_requests_total[5m]))", "{{route}}", "A"),
            prom(
                "histogram_quantile(0.99, sum by (le) (rate(hub_api_request_seconds_bucket[5m])))",
                "p99 (s)",
                "B",
            ),
        ],
        12,
        40,
    ),
    panel(
        13,
        "Partitions per worker, batch time p99",
        "timeseries",
        [
            prom("sum by (instance) (hub_partitions_assigned)", "{{instance}} partitions", "A"),
            prom(
                "histogram_quantile(0.99, sum by (le) (rate(hub_batch_seconds_bucket[5m])))",
                "batch p99 (s)",
                "B",
            ),
        ],
        0,
        48,
    ),
    panel(14, "Targets up", "stat", [prom('sum by (job) (up{job=~"hub-.*"})', "{{job}}")], 12, 48),
]

management = [
    panel(
        1,
        "Regions and districts (last hour / last 24 h)",
        "table",
        [
            sql(
                "SELECT region, district, sites, sites_reporting, kpi_pass, kpi_fail, compliance_pct, "
                "last_event_at FROM management_overview "
                "WHERE region IN ($region) AND district IN ($district) ORDER BY region, district"
            )
        ],
        0,
        0,
        w=24,
        h=10,
        datasource=PG,
    ),
    panel(
        2,
        "Compliance by district (last 24 h)",
        "bargauge",
        [
            sql(
                "SELECT region || '/' || district AS metric, coalesce(compliance_pct, 0) AS value "
                "FROM management_overview WHERE region IN ($region) AND district IN ($district) "
                "ORDER BY compliance_pct NULLS LAST"
            )
        ],
        0,
        10,
        w=12,
        h=10,
        unit="percent",
        datasource=PG,
    ),
    panel(
        3,
        "KPI pass rate by region (hourly)",
        "timeseries",
        [
            sql(
                "SELECT time_bucket('1 hour', r.window_end) AS time, s.region AS metric, "
                "100.0 * count(*) FILTER (WHERE r.status = 'pass') / "
                "nullif(count(*) FILTER (WHERE r.status IN ('pass', 'fail')), 0) AS value "
                "FROM kpi_results r JOIN sites s USING (site_id) "
                "WHERE $__timeFilter(r.window_end) AND r.attributable AND s.region IN ($region) "
                "AND s.district IN ($district) AND r.demonstration_id IN ($demonstration) "
                "GROUP BY 1, 2 ORDER BY 1",
                fmt="time_series",
            )
        ],
        12,
        10,
        w=12,
        h=10,
        unit="percent",
        datasource=PG,
    ),
    panel(
        4,
        "Sites reporting by region (5-minute buckets)",
        "timeseries",
        [
            sql(
                "SELECT $__timeGroupAlias(bucket, 5m), s.region AS metric, count(DISTINCT a.site_id) AS value "
                "FROM site_aggregates a JOIN sites s USING (site_id) "
                "WHERE $__timeFilter(bucket) AND a.metric = 'online' AND s.region IN ($region) "
                "AND s.district IN ($district) AND a.demonstration_id IN ($demonstration) "
                "GROUP BY 1, 2 ORDER BY 1",
                fmt="time_series",
            )
        ],
        0,
        20,
        w=12,
        h=8,
        datasource=PG,
    ),
    panel(
        5,
        "Failing demonstrations (last 24 h)",
        "table",
        [
            sql(
                "SELECT d.demonstration_id, d.company, d.title, "
                "count(*) FILTER (WHERE r.status = 'fail') AS kpi_fail, "
                "count(*) FILTER (WHERE r.status = 'pass') AS kpi_pass, "
                "(SELECT count(*) FROM kpi_alerts a WHERE a.demonstration_id = d.demonstration_id "
                "AND a.status = 'open') AS open_alerts "
                "FROM demonstrations d JOIN kpi_results r USING (demonstration_id) "
                "WHERE r.window_end > now() - interval '24 hours' AND r.attributable "
                "AND d.demonstration_id IN ($demonstration) GROUP BY 1, 2, 3 "
                "HAVING count(*) FILTER (WHERE r.status = 'fail') > 0 ORDER BY 4 DESC"
            )
        ],
        12,
        20,
        w=12,
        h=8,
        datasource=PG,
    ),
    panel(
        6,
        "Open alerts",
        "table",
        [
            sql(
                "SELECT ts, demonstration_id, site_id, kpi_id, transition, value, threshold, status "
                "FROM kpi_alerts WHERE status IN ('open', 'acknowledged') "
                "AND demonstration_id IN ($demonstration) AND site_id IN "
                "(SELECT site_id FROM sites WHERE region IN ($region) AND district IN ($district)) "
                "ORDER BY ts DESC LIMIT 100"
            )
        ],
        0,
        28,
        w=24,
        h=8,
        datasource=PG,
    ),
    panel(
        7,
        "Scorecards: pass rate per demonstration KPI",
        "table",
        [
            sql(
                "SELECT demonstration_id, kpi_id, windows_judged, passed, failed, pass_rate_pct, "
                "latest_status FROM demonstration_scorecard "
                "WHERE demonstration_id IN ($demonstration) ORDER BY demonstration_id, kpi_id"
            )
        ],
        0,
        36,
        w=24,
        h=10,
        datasource=PG,
    ),
    panel(
        8,
        "Latency p95 trend (hourly roll-up of the minute p95s, max)",
        "timeseries",
        [
            # The roll-up, kept 400 days: the minute table holds 14.
            sql(
                "SELECT $__timeGroupAlias(bucket, 1h), demonstration_id AS metric, "
                "max(p95_max) AS value "
                "FROM site_aggregates_hourly WHERE $__timeFilter(bucket) "
                "AND metric = 'inference_latency_ms' AND demonstration_id IN ($demonstration) "
                "AND site_id IN (SELECT site_id FROM sites WHERE region IN ($region) "
                "AND district IN ($district)) GROUP BY 1, 2 ORDER BY 1",
                fmt="time_series",
            )
        ],
        0,
        46,
        w=24,
        h=8,
        unit="ms",
        datasource=PG,
    ),
]


management.append(
    panel(
        10,
        "Open alerts per demonstration",
        "bargauge",
        [
            sql(
                "SELECT demonstration_id AS metric, count(*) AS value FROM kpi_alerts "
                "WHERE status IN ('open', 'acknowledged') AND demonstration_id IN ($demonstration) "
                "AND site_id IN (SELECT site_id FROM sites WHERE region IN ($region) "
                "AND district IN ($district)) GROUP BY 1 ORDER BY 2 DESC"
            )
        ],
        0,
        68,
        w=24,
        h=8,
        datasource=PG,
    )
)
management.append(
    {
        **panel(
            9,
            "Sites: KPI compliance of the last 24 hours (grey: not judged)",
            "geomap",
            [
                sql(
                    "SELECT s.site_id, s.name, s.region, s.district, s.lat AS latitude, "
                    "s.lon AS longitude, coalesce(round(100.0 * j.pass / nullif(j.pass + j.fail, 0), "
                    "1), -1) AS compliance_pct FROM sites s LEFT JOIN (SELECT site_id, "
                    "count(*) FILTER (WHERE status = 'pass') AS pass, "
                    "count(*) FILTER (WHERE status = 'fail') AS fail FROM kpi_results "
                    "WHERE window_end > now() - interval '24 hours' AND attributable "
                    "AND demonstration_id IN ($demonstration) GROUP BY site_id) j USING (site_id) "
                    "WHERE s.region IN ($region) AND s.district IN ($district)"
                )
            ],
            0,
            54,
            w=24,
            h=14,
            datasource=PG,
        ),
        "fieldConfig": {
            "defaults": {
                "thresholds": {
                    "mode": "absolute",
                    "steps": [
                        {"color": "#b8bec6", "value": None},
                        {"color": "#d64545", "value": 0},
                        {"color": "#e3a21a", "value": 80},
                        {"color": "#2e9e5b", "value": 95},
                    ],
                },
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "view": {"id": "coords", "lat": 35.0, "lon": 126.85, "zoom": 8},
            "controls": {"showZoom": True, "mouseWheelZoom": True},
            "layers": [
                {
                    "type": "markers",
                    "name": "sites",
                    "location": {
                        "mode": "coords",
                        "latitude": "latitude",
                        "longitude": "longitude",
                    },
                    "config": {
                        "size": {"fixed": 4},
                        "color": {"field": "compliance_pct", "fixed": "#b8bec6"},
                        "showLegend": True,
                    },
                    "tooltip": True,
                }
            ],
            "tooltip": {"mode": "details"},
        },
    }
)


def sql_variable(name, label, query, refresh=1):
    """A multi-value variable read from TimescaleDB; "All" selects every value."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": PG,
        "query": query,
        "definition": query,
        "refresh": refresh,
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def prom_variable(name, label, query):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": PROM,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


MANAGEMENT_VARIABLES = [
    sql_variable("region", "Region", "SELECT DISTINCT region FROM sites ORDER BY 1"),
    sql_variable(
        "district",
        "District",
        "SELECT DISTINCT district FROM sites WHERE region IN ($region) ORDER BY 1",
    ),
    sql_variable(
        "demonstration",
        "Demonstration",
        "SELECT demonstration_id FROM demonstrations ORDER BY 1",
    ),
]
OPERATIONS_VARIABLES = [
    prom_variable("region", "Region", "label_values(hub_records_accepted_total, region)"),
    prom_variable(
        "district",
        "District",
        'label_values(hub_records_accepted_total{region=~"$region"}, district)',
    ),
]


def dashboard(uid, title, panels, tags, variables=()):
    return {
        "uid": uid,
        "title": title,
        "tags": tags,
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "panels": panels,
        "templating": {"list": list(variables)},
        "annotations": {"list": []},
    }


out = Path(__file__).resolve().parent / "dashboards"
(out / "testbed-operations.json").write_text(
    json.dumps(
        dashboard(
            "hub-operations",
            "Testbed operations",
            operations,
            ["testbed", "pipeline"],
            OPERATIONS_VARIABLES,
        ),
        indent=2,
    )
    + "\n"
)
(out / "super-regional-management.json").write_text(
    json.dumps(
        dashboard(
            "hub-management",
            "Super-regional management",
            management,
            ["testbed", "management"],
            MANAGEMENT_VARIABLES,
        ),
        indent=2,
    )
    + "\n"
)
