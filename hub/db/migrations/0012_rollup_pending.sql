-- Hours of site_aggregates written since the hourly roll-up last ran: the sink marks each hour it
-- writes, in the write's transaction, and upkeep rolls those hours up (then forgets them). Minutes
-- written long after their hour (a worker catching up on a backlog) are rolled up too, where a fixed
-- re-read window would miss them.
CREATE TABLE rollup_pending (
    hour  timestamptz PRIMARY KEY
);
