-- hub_readonly: what dashboards (Grafana's login) may read, and nothing else: the registry, the
-- aggregates, KPI results and alerts and the views over them. Not the API tokens, the devices'
-- signing keys, the notifier's receivers (webhook URLs may carry secrets) or internal tables.
-- Creating the role needs CREATEROLE: without it the role is left to the administrator (the grants
-- follow once it exists and the migration of a later release runs them again).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hub_readonly') THEN
        BEGIN
            CREATE ROLE hub_readonly NOLOGIN;
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'no CREATEROLE: create role hub_readonly (NOLOGIN) and run this again';
            WHEN duplicate_object THEN
                NULL;  -- another database of the cluster created it meanwhile
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'hub_readonly') THEN
        EXECUTE 'GRANT USAGE ON SCHEMA public TO hub_readonly';
        EXECUTE 'GRANT SELECT ON sites, demonstrations, kpis, devices, site_last_seen, '
             || 'site_aggregates, site_aggregates_hourly, kpi_results, kpi_alerts, '
             || 'management_overview, demonstration_scorecard, demonstration_periods '
             || 'TO hub_readonly';
    END IF;
END
$$;
