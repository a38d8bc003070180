-- Fenced writes: who owns each telemetry partition of each hub (HUB_APP_ID), by epoch. A worker
-- claims a partition when it starts working on it (the epoch goes up by one) and every write of
-- that partition's rows checks, in its transaction, that the epoch is still its own: a worker that
-- lost the partition while it waited (a long database outage, past the group's poll interval)
-- can no longer write over its successor's rows.
CREATE TABLE partition_owners (
    hub        text NOT NULL,
    partition  integer NOT NULL,
    epoch      bigint NOT NULL,
    owner      text NOT NULL,
    since      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hub, partition)
);
