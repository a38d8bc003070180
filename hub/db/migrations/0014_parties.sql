-- Partner parity and the procurement role. A demonstration's scorecard over one region's sites:
-- a regional partner reads the scorecards of every demonstration running in its region, computed
-- over its own sites only. One definition:
-- the view is the function over every region, so the two cannot drift apart.
CREATE FUNCTION demonstration_scorecard_in(p_region text)
RETURNS TABLE (
    demonstration_id    text,
    kpi_id              text,
    title               text,
    metric              text,
    aggregation         text,
    denominator         text[],
    op                  text,
    threshold           double precision,
    "window"            text,
    windows_judged      bigint,
    passed              bigint,
    failed              bigint,
    insufficient        bigint,
    not_attributable    bigint,
    pass_rate_pct       numeric,
    latest_window_start timestamptz,
    latest_status       text
)
LANGUAGE sql STABLE AS $$
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
        AND (p_region IS NULL
             OR r.site_id IN (SELECT s.site_id FROM sites s WHERE s.region = p_region))
  LEFT JOIN LATERAL (
        SELECT n.window_start,
               CASE WHEN bool_or(n.status = 'fail') THEN 'fail'
                    WHEN bool_or(n.status = 'pass') THEN 'pass'
                    ELSE 'insufficient_data' END AS status
          FROM kpi_results n
         WHERE n.demonstration_id = k.demonstration_id AND n.kpi_id = k.kpi_id
           AND n.attributable
           AND (p_region IS NULL
                OR n.site_id IN (SELECT s.site_id FROM sites s WHERE s.region = p_region))
           AND n.window_start = (SELECT max(m.window_start) FROM kpi_results m
                                  WHERE m.demonstration_id = k.demonstration_id
                                    AND m.kpi_id = k.kpi_id AND m.attributable
                                    AND (p_region IS NULL
                                         OR m.site_id IN (SELECT s.site_id FROM sites s
                                                           WHERE s.region = p_region)))
         GROUP BY n.window_start
  ) latest ON true
 GROUP BY k.demonstration_id, k.kpi_id, k.title, k.metric, k.aggregation, k.denominator, k.op,
          k.threshold, k."window", latest.window_start, latest.status
$$;

CREATE OR REPLACE VIEW demonstration_scorecard AS
SELECT * FROM demonstration_scorecard_in(NULL);

-- The procurement role: read-only, every scorecard, KPI result and comparison.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('operator', 'partner', 'company', 'procurement'));
