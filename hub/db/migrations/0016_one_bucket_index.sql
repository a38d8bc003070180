-- site_aggregates had two identical indexes on (bucket DESC): the one 0002 created and the one
-- create_hypertable adds by default (site_aggregates_bucket_idx). Every window closed maintained
-- both; measured on one partition's closing write (1,472 rows), the merge is the write's largest
-- statement. TimescaleDB's own is kept.
DROP INDEX IF EXISTS site_aggregates_bucket;
