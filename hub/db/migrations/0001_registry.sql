-- The testbed registry: sites, demonstrations, their KPIs and devices (loaded by `hub registry load`).
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE sites (
    site_id     text PRIMARY KEY,
    region      text NOT NULL CHECK (region IN ('gwangju', 'jeonnam')),
    district    text NOT NULL,
    place_type  text NOT NULL,
    name        text NOT NULL DEFAULT '',
    lat         double precision NOT NULL,
    lon         double precision NOT NULL
);
CREATE INDEX sites_region_district ON sites (region, district);

CREATE TABLE demonstrations (
    demonstration_id text PRIMARY KEY,
    company          text NOT NULL,
    title            text NOT NULL,
    technology       text NOT NULL,
    starts_on        date NOT NULL,
    ends_on          date NOT NULL,
    CHECK (starts_on <= ends_on)
);

CREATE TABLE kpis (
    demonstration_id text NOT NULL REFERENCES demonstrations ON DELETE CASCADE,
    kpi_id           text NOT NULL,
    title            text NOT NULL DEFAULT '',
    metric           text NOT NULL,
    aggregation      text NOT NULL CHECK (aggregation IN
                         ('mean', 'min', 'max', 'sum', 'count', 'p50', 'p95', 'p99', 'availability', 'rate')),
    op               text NOT NULL CHECK (op IN ('<', '<=', '>', '>=')),
    threshold        double precision NOT NULL,
    "window"         text NOT NULL CHECK ("window" IN ('1m', '5m', '15m', '1h', '1d')),
    window_seconds   integer NOT NULL,
    min_samples      integer NOT NULL DEFAULT 1 CHECK (min_samples >= 0),
    PRIMARY KEY (demonstration_id, kpi_id)
);

CREATE TABLE devices (
    device_id        text PRIMARY KEY,
    site_id          text NOT NULL REFERENCES sites,
    demonstration_id text NOT NULL REFERENCES demonstrations,
    model            text NOT NULL DEFAULT ''
);
CREATE INDEX devices_site ON devices (site_id);
CREATE INDEX devices_demonstration ON devices (demonstration_id);

-- One row: which registry is loaded. Workers poll its digest to pick up edits without a restart.
CREATE TABLE registry_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    digest         text NOT NULL,
    loaded_at      timestamptz NOT NULL DEFAULT now(),
    sites          integer NOT NULL,
    devices        integer NOT NULL,
    demonstrations integer NOT NULL,
    kpis           integer NOT NULL
);
