-- A company's self-service: its devices' records per minute (counted when their window closes,
-- so a replay writes the same row) and the rejections of records naming its devices; and the
-- hourly roll-up's highest minute p95, so a latency trend outlives the minute table.

-- One row a device a minute: how many of its records were accepted into that minute's windows,
-- and the newest event time among them. Written with the minute's windows, replaced on a replay.
CREATE TABLE device_minutes (
    bucket           timestamptz NOT NULL,
    device_id        text NOT NULL,
    site_id          text NOT NULL,
    demonstration_id text NOT NULL,
    records          bigint NOT NULL CHECK (records > 0),
    last_event_at    timestamptz NOT NULL,
    PRIMARY KEY (device_id, bucket)
);
SELECT create_hypertable('device_minutes', by_range('bucket', INTERVAL '1 day'));

-- Every rejected record the hub sent to the DLQ, as its device claimed to be (a record that names
-- no device, or not one of the registry's, has device_id NULL): what a company reads at
-- GET /api/v1/rejections. Keyed by where the broker put the record: a replay writes nothing new.
CREATE TABLE rejections (
    at               timestamptz NOT NULL,   -- the broker's append time
    partition        integer NOT NULL,
    "offset"         bigint NOT NULL,
    device_id        text,
    site_id          text,
    event_ts         timestamptz,
    reason           text NOT NULL,
    detail           text NOT NULL,
    PRIMARY KEY (partition, "offset", at)
);
SELECT create_hypertable('rejections', by_range('at', INTERVAL '1 day'));
CREATE INDEX rejections_by_device ON rejections (device_id, at DESC);

ALTER TABLE site_aggregates_hourly ADD COLUMN p95_max double precision;
COMMENT ON COLUMN site_aggregates_hourly.p95_max IS
    'the highest minute p95 of the hour (a quantile does not roll up; its worst minute does)';
-- The minutes still kept are rolled up again at the next upkeep, with p95_max.
INSERT INTO rollup_pending (hour)
SELECT DISTINCT time_bucket('1 hour', bucket) FROM site_aggregates
ON CONFLICT DO NOTHING;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'hub_readonly') THEN
        EXECUTE 'GRANT SELECT ON device_minutes TO hub_readonly';
    END IF;
END
$$;
