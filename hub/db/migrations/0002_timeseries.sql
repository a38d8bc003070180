-- What the stream processors write. Primary keys make a replayed write replace its row, not add one.
-- Chunk intervals follow the volume (docs/database.md has the arithmetic).

CREATE TABLE site_aggregates (
    bucket     timestamptz NOT NULL,          -- start of the 1-minute event-time window
    site_id    text NOT NULL,
    metric     text NOT NULL,
    count      bigint NOT NULL,
    sum        double precision NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    p50        double precision,
    p95        double precision,
    p99        double precision,
    closed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, metric, bucket)
);
SELECT create_hypertable('site_aggregates', by_range('bucket', INTERVAL '6 hours'));
CREATE INDEX site_aggregates_bucket ON site_aggregates (bucket DESC);

CREATE TABLE kpi_results (
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    demonstration_id text NOT NULL,
    site_id          text NOT NULL,
    kpi_id           text NOT NULL,
    value            double precision,        -- NULL when no sample at all
    threshold        double precision NOT NULL,
    status           text NOT NULL CHECK (status IN ('pass', 'fail', 'insufficient_data')),
    samples          bigint NOT NULL DEFAULT 0,
    judged_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (demonstration_id, kpi_id, site_id, window_start)
);
SELECT create_hypertable('kpi_results', by_range('window_start', INTERVAL '1 day'));
CREATE INDEX kpi_results_site ON kpi_results (site_id, window_start DESC);

CREATE TABLE kpi_alerts (
    alert_id         text NOT NULL,
    ts               timestamptz NOT NULL,    -- event time of the window that changed the status
    demonstration_id text NOT NULL,
    site_id          text NOT NULL,
    kpi_id           text NOT NULL,
    transition       text NOT NULL CHECK (transition IN ('breach', 'recovered', 'no_data')),
    value            double precision,
    threshold        double precision NOT NULL,
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    note             text,
    resolved_at      timestamptz,
    PRIMARY KEY (alert_id, ts)
);
SELECT create_hypertable('kpi_alerts', by_range('ts', INTERVAL '7 days'));
CREATE INDEX kpi_alerts_status ON kpi_alerts (status, ts DESC);
