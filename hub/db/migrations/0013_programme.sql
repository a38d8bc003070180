-- The programme run through the hub: regions as data, a demonstration's lifecycle, versioned KPIs,
-- an audit trail, and evidence that outlives retention. Nothing is deleted by cascade any more.

-- Regions are data: `hub regions add CODE NAME` adds one (its partner topics, token role, views).
CREATE TABLE regions (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9]{1,31}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO regions (code, name) VALUES
    ('gwangju', 'Gwangju Metropolitan City'),
    ('jeonnam', 'South Jeolla Province');
ALTER TABLE sites DROP CONSTRAINT sites_region_check;
ALTER TABLE sites ADD CONSTRAINT sites_region_fkey FOREIGN KEY (region) REFERENCES regions;

-- A demonstration's lifecycle: applied -> approved (or rejected) -> active (from starts_on, while
-- approved) -> ended (at ends_on, or ended early) -> archived. `status` holds the decisions; whether
-- an approved demonstration is active or ended is its period's (demonstration_status). The
-- shipped registry's demonstrations are approved.
ALTER TABLE demonstrations
    ADD COLUMN status text NOT NULL DEFAULT 'approved'
        CHECK (status IN ('applied', 'approved', 'rejected', 'ended', 'archived')),
    ADD COLUMN applied_at timestamptz,
    ADD COLUMN decided_at timestamptz,
    ADD COLUMN ended_at timestamptz,
    -- What an application asked for (its sites, devices and KPIs), kept as it was applied.
    ADD COLUMN application jsonb;

CREATE VIEW demonstration_status AS
SELECT d.demonstration_id,
       CASE WHEN d.status IN ('applied', 'rejected', 'archived') THEN d.status
            WHEN d.status = 'ended' OR now() >= coalesce(d.ended_at, p.period_end) THEN 'ended'
            WHEN now() < p.period_start THEN 'approved'
            ELSE 'active' END AS status,
       p.period_start,
       least(p.period_end, coalesce(d.ended_at, p.period_end)) AS period_end
  FROM demonstrations d JOIN demonstration_periods p USING (demonstration_id);

-- Nothing is deleted by cascade: a demonstration's KPIs, its devices' keys stay with it.
ALTER TABLE kpis DROP CONSTRAINT kpis_demonstration_id_fkey;
ALTER TABLE kpis ADD CONSTRAINT kpis_demonstration_id_fkey
    FOREIGN KEY (demonstration_id) REFERENCES demonstrations ON DELETE RESTRICT;
ALTER TABLE device_keys DROP CONSTRAINT device_keys_device_id_fkey;
ALTER TABLE device_keys ADD CONSTRAINT device_keys_device_id_fkey
    FOREIGN KEY (device_id) REFERENCES devices ON DELETE RESTRICT;

-- Versioned KPIs: a change is a new version from a stated time; every verdict keeps the version
-- it was judged by. `kpis` holds the current definition (what dashboards read); the versions hold
-- every definition and its period.
CREATE TABLE kpi_versions (
    demonstration_id text NOT NULL,
    kpi_id           text NOT NULL,
    version          integer NOT NULL CHECK (version >= 1),
    valid_from       timestamptz NOT NULL,
    valid_until      timestamptz,
    title            text NOT NULL DEFAULT '',
    metric           text NOT NULL,
    aggregation      text NOT NULL,
    op               text NOT NULL,
    threshold        double precision NOT NULL,
    "window"         text NOT NULL,
    window_seconds   integer NOT NULL,
    min_samples      integer NOT NULL,
    denominator      text[] NOT NULL DEFAULT '{}',
    reason           text NOT NULL DEFAULT '',
    changed_by       text NOT NULL DEFAULT '',
    changed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (demonstration_id, kpi_id, version),
    FOREIGN KEY (demonstration_id, kpi_id) REFERENCES kpis ON DELETE RESTRICT,
    CHECK (valid_until IS NULL OR valid_until > valid_from)
);
INSERT INTO kpi_versions (demonstration_id, kpi_id, version, valid_from, title, metric,
                          aggregation, op, threshold, "window", window_seconds, min_samples,
                          denominator, reason, changed_by)
SELECT demonstration_id, kpi_id, 1, '-infinity', title, metric, aggregation, op, threshold,
       "window", window_seconds, min_samples, denominator, 'as loaded', 'registry'
  FROM kpis;
ALTER TABLE kpi_results ADD COLUMN kpi_version integer NOT NULL DEFAULT 1;

-- The audit trail: who changed what in the registry, access, tokens, receivers and regions, when,
-- before and after. Append-only: no role of the hub may change or delete a row.
CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor    text NOT NULL,
    action   text NOT NULL,
    subject  text NOT NULL,
    before   jsonb,
    after    jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Evidence that outlives retention: a demonstration's minute aggregates over its whole period are
-- copied here before retention drops them (and when it ends), and its pack is frozen once.
CREATE TABLE evidence_aggregates (
    bucket           timestamptz NOT NULL,
    site_id          text NOT NULL,
    demonstration_id text NOT NULL,
    metric           text NOT NULL,
    count            bigint NOT NULL,
    sum              double precision NOT NULL,
    min              double precision NOT NULL,
    max              double precision NOT NULL,
    p50              double precision,
    p95              double precision,
    p99              double precision,
    PRIMARY KEY (demonstration_id, site_id, metric, bucket)
);
CREATE TABLE evidence_packs (
    demonstration_id text PRIMARY KEY REFERENCES demonstrations ON DELETE RESTRICT,
    frozen_at        timestamptz NOT NULL DEFAULT now(),
    archive          bytea NOT NULL,       -- the zip: files, manifest.json, manifest.sig
    sha256           text NOT NULL         -- of the archive
);

-- Workers reload their registry when anything in it changes (an application approved, a KPI
-- changed, a region added: `hub.registry.store.touch`), not only when `hub registry load` writes a
-- new digest.
ALTER TABLE registry_state ADD COLUMN changed_at timestamptz;
