-- Every verdict belongs to one demonstration: aggregates keyed by demonstration, ratio KPIs,
-- declared metrics, and what was written before this change at shared sites kept apart.
--
-- Rows written before it mixed every demonstration's devices at a site. At a site with one
-- demonstration they are that demonstration's; at a site shared by several they cannot be
-- attributed: their aggregates keep the demonstration id '' and their KPI results and alerts are
-- marked not attributable (left out of scorecards and compliance). Which sites are shared is read
-- from the registry as loaded when this migration runs.

ALTER TABLE demonstrations ADD COLUMN metrics text[] NOT NULL DEFAULT '{}';

ALTER TABLE kpis DROP CONSTRAINT kpis_aggregation_check;
ALTER TABLE kpis ADD CONSTRAINT kpis_aggregation_check CHECK (aggregation IN
    ('mean', 'min', 'max', 'sum', 'count', 'p50', 'p95', 'p99', 'availability', 'rate', 'ratio'));
ALTER TABLE kpis ADD COLUMN denominator text[] NOT NULL DEFAULT '{}';
ALTER TABLE kpis ADD CONSTRAINT kpis_ratio_has_denominator
    CHECK ((aggregation = 'ratio') = (cardinality(denominator) > 0));

CREATE TEMP TABLE single_demonstration_sites ON COMMIT DROP AS
SELECT site_id, min(demonstration_id) AS demonstration_id
  FROM devices GROUP BY site_id HAVING count(DISTINCT demonstration_id) = 1;
CREATE TEMP TABLE shared_sites ON COMMIT DROP AS
SELECT site_id FROM devices GROUP BY site_id HAVING count(DISTINCT demonstration_id) > 1;

-- site_aggregates: the demonstration joins the key.
ALTER TABLE site_aggregates ADD COLUMN demonstration_id text;
UPDATE site_aggregates a SET demonstration_id = s.demonstration_id
  FROM single_demonstration_sites s WHERE a.site_id = s.site_id;
UPDATE site_aggregates SET demonstration_id = '' WHERE demonstration_id IS NULL;
ALTER TABLE site_aggregates ALTER COLUMN demonstration_id SET NOT NULL;
ALTER TABLE site_aggregates DROP CONSTRAINT site_aggregates_pkey;
ALTER TABLE site_aggregates ADD PRIMARY KEY (site_id, demonstration_id, metric, bucket);
CREATE INDEX site_aggregates_demonstration ON site_aggregates (demonstration_id, bucket DESC);
COMMENT ON COLUMN site_aggregates.demonstration_id IS
    'the demonstration whose devices the window holds; '''' for rows written before aggregates were per demonstration, at a site shared by several (not attributable)';

ALTER TABLE site_aggregates_hourly ADD COLUMN demonstration_id text;
UPDATE site_aggregates_hourly a SET demonstration_id = s.demonstration_id
  FROM single_demonstration_sites s WHERE a.site_id = s.site_id;
UPDATE site_aggregates_hourly SET demonstration_id = '' WHERE demonstration_id IS NULL;
ALTER TABLE site_aggregates_hourly ALTER COLUMN demonstration_id SET NOT NULL;
ALTER TABLE site_aggregates_hourly DROP CONSTRAINT site_aggregates_hourly_pkey;
ALTER TABLE site_aggregates_hourly ADD PRIMARY KEY (site_id, demonstration_id, metric, bucket);

-- KPI results and alerts judged on mixed windows at shared sites.
ALTER TABLE kpi_results ADD COLUMN attributable boolean NOT NULL DEFAULT true;
UPDATE kpi_results SET attributable = false WHERE site_id IN (SELECT site_id FROM shared_sites);
ALTER TABLE kpi_alerts ADD COLUMN attributable boolean NOT NULL DEFAULT true;
UPDATE kpi_alerts SET attributable = false WHERE site_id IN (SELECT site_id FROM shared_sites);

-- A demonstration's period as instants: Korean calendar days, ends_on included.
CREATE VIEW demonstration_periods AS
SELECT demonstration_id,
       (starts_on::timestamp AT TIME ZONE 'Asia/Seoul') AS period_start,
       ((ends_on + 1)::timestamp AT TIME ZONE 'Asia/Seoul') AS period_end
  FROM demonstrations;

-- Compliance per district counts attributable verdicts only.
CREATE OR REPLACE VIEW management_overview AS
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
     WHERE r.window_end > now() - INTERVAL '24 hours' AND r.attributable
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
-- failed, insufficient, pass rate of the decided ones, windows left out as not attributable, and
-- the newest window's status (worst of its sites: fail, then pass, then insufficient_data).
DROP VIEW demonstration_scorecard;
CREATE VIEW demonstration_scorecard AS
SELECT k.demonstration_id,
       k.kpi_id,
       k.title,
       k.metric,
       k.aggregation,
       k.denominator,
       k.op,
       k.threshold,
       k."window",
       count(r.status) FILTER (WHERE r.attributable) AS windows_judged,
       count(r.status) FILTER (WHERE r.attributable AND r.status = 'pass') AS passed,
       count(r.status) FILTER (WHERE r.attributable AND r.status = 'fail') AS failed,
       count(r.status) FILTER (WHERE r.attributable AND r.status = 'insufficient_data')
           AS insufficient,
       count(r.status) FILTER (WHERE NOT r.attributable) AS not_attributable,
       CASE WHEN count(r.status) FILTER (WHERE r.attributable AND r.status IN ('pass', 'fail')) > 0
            THEN round(100.0 * count(r.status) FILTER (WHERE r.attributable AND r.status = 'pass')
                       / count(r.status) FILTER (WHERE r.attributable
                                                   AND r.status IN ('pass', 'fail')), 1)
       END AS pass_rate_pct,
       latest.window_start AS latest_window_start,
       latest.status AS latest_status
  FROM kpis k
  JOIN demonstration_periods p USING (demonstration_id)
  LEFT JOIN kpi_results r
         ON r.demonstration_id = k.demonstration_id AND r.kpi_id = k.kpi_id
        AND r.window_start >= p.period_start AND r.window_end <= p.period_end
  LEFT JOIN LATERAL (
        SELECT n.window_start,
               CASE WHEN bool_or(n.status = 'fail') THEN 'fail'
                    WHEN bool_or(n.status = 'pass') THEN 'pass'
                    ELSE 'insufficient_data' END AS status
          FROM kpi_results n
         WHERE n.demonstration_id = k.demonstration_id AND n.kpi_id = k.kpi_id
           AND n.attributable
           AND n.window_start = (SELECT max(m.window_start) FROM kpi_results m
                                  WHERE m.demonstration_id = k.demonstration_id
                                    AND m.kpi_id = k.kpi_id AND m.attributable)
         GROUP BY n.window_start
  ) latest ON true
 GROUP BY k.demonstration_id, k.kpi_id, k.title, k.metric, k.aggregation, k.denominator, k.op,
          k.threshold, k."window", latest.window_start, latest.status;
