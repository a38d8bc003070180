-- The super-regional management view: when each site was last heard from, an hourly roll-up kept
-- longer than the raw minutes, the overview and scorecard views, and indexes for the API.

CREATE TABLE site_last_seen (
    site_id       text PRIMARY KEY,
    last_event_at timestamptz NOT NULL,   -- newest accepted event time of the site
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE site_aggregates_hourly (
    bucket   timestamptz NOT NULL,
    site_id  text NOT NULL,
    metric   text NOT NULL,
    count    bigint NOT NULL,
    sum      double precision NOT NULL,
    min      double precision NOT NULL,
    max      double precision NOT NULL,
    PRIMARY KEY (site_id, metric, bucket)
);
-- 3,705 sites x ~6 metrics x 24 hours = ~530 k rows a day: a week a chunk (~3.7 M rows).
SELECT create_hypertable('site_aggregates_hourly', by_range('bucket', INTERVAL '7 days'));

-- What the hub's scheduled upkeep (hub/upkeep.py) has done: roll-up progress, last retention run.
CREATE TABLE upkeep_state (
    name  text PRIMARY KEY,
    value timestamptz NOT NULL
);

CREATE INDEX kpi_results_demo_kpi_window ON kpi_results (demonstration_id, kpi_id, window_start DESC);
CREATE INDEX kpi_results_window_end ON kpi_results (window_end DESC);
CREATE INDEX kpi_alerts_site ON kpi_alerts (site_id, ts DESC);
CREATE INDEX kpi_alerts_key ON kpi_alerts (demonstration_id, kpi_id, site_id, ts DESC);

-- One row per region and district. "Reporting": an accepted event in the last hour (event time).
-- KPI counts and compliance: the windows that ended in the last 24 hours.
CREATE VIEW management_overview AS
WITH registry AS (
    SELECT region, district, count(*) AS sites FROM sites GROUP BY region, district
), seen AS (
    SELECT s.region, s.district,
           count(*) FILTER (WHERE l.last_event_at >= now() - INTERVAL '1 hour') AS sites_reporting,
           max(l.last_event_at) AS last_event_at
      FROM sites s JOIN site_last_seen l USING (site_id)
     GROUP BY s.region, s.district
), judged AS (
    SELECT s.region, s.district,
           count(*) FILTER (WHERE r.status = 'pass') AS kpi_pass,
           count(*) FILTER (WHERE r.status = 'fail') AS kpi_fail
      FROM kpi_results r JOIN sites s USING (site_id)
     WHERE r.window_end > now() - INTERVAL '24 hours'
     GROUP BY s.region, s.district
)
SELECT registry.region,
       registry.district,
       registry.sites,
       coalesce(seen.sites_reporting, 0) AS sites_reporting,
       coalesce(judged.kpi_pass, 0) AS kpi_pass,
       coalesce(judged.kpi_fail, 0) AS kpi_fail,
       CASE WHEN coalesce(judged.kpi_pass, 0) + coalesce(judged.kpi_fail, 0) > 0
            THEN round(100.0 * judged.kpi_pass / (judged.kpi_pass + judged.kpi_fail), 1)
       END AS compliance_pct,
       seen.last_event_at
  FROM registry
  LEFT JOIN seen USING (region, district)
  LEFT JOIN judged USING (region, district);

-- Per demonstration KPI over the demonstration's period: windows judged (site x window), passed,
-- failed, insufficient, pass rate of the decided ones, and the newest window's status (worst of its
-- sites: fail, then pass, then insufficient_data).
CREATE VIEW demonstration_scorecard AS
SELECT k.demonstration_id,
       k.kpi_id,
       k.title,
       k.metric,
       k.aggregation,
       k.op,
       k.threshold,
       k."window",
       count(r.status) AS windows_judged,
       count(r.status) FILTER (WHERE r.status = 'pass') AS passed,
       count(r.status) FILTER (WHERE r.status = 'fail') AS failed,
       count(r.status) FILTER (WHERE r.status = 'insufficient_data') AS insufficient,
       CASE WHEN count(r.status) FILTER (WHERE r.status IN ('pass', 'fail')) > 0
            THEN round(100.0 * count(r.status) FILTER (WHERE r.status = 'pass')
                       / count(r.status) FILTER (WHERE r.status IN ('pass', 'fail')), 1)
       END AS pass_rate_pct,
       latest.window_start AS latest_window_start,
       latest.status AS latest_status
  FROM kpis k
  JOIN demonstrations d USING (demonstration_id)
  LEFT JOIN kpi_results r
         ON r.demonstration_id = k.demonstration_id AND r.kpi_id = k.kpi_id
        AND r.window_start >= d.starts_on AND r.window_start < d.ends_on + 1
  LEFT JOIN LATERAL (
        SELECT n.window_start,
               CASE WHEN bool_or(n.status = 'fail') THEN 'fail'
                    WHEN bool_or(n.status = 'pass') THEN 'pass'
                    ELSE 'insufficient_data' END AS status
          FROM kpi_results n
         WHERE n.demonstration_id = k.demonstration_id AND n.kpi_id = k.kpi_id
           AND n.window_start = (SELECT max(m.window_start) FROM kpi_results m
                                  WHERE m.demonstration_id = k.demonstration_id
                                    AND m.kpi_id = k.kpi_id)
         GROUP BY n.window_start
  ) latest ON true
 GROUP BY k.demonstration_id, k.kpi_id, k.title, k.metric, k.aggregation, k.op, k.threshold,
          k."window", latest.window_start, latest.status;
