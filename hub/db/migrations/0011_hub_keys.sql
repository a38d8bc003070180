-- The hub's own secrets. `replay`: the key of the mark `hub dlq replay` puts on a record it sends
-- again (hub-replay-mark: an HMAC of the origin, the original append time and the bytes), which no
-- device can forge: a device's own hub-* headers are ignored. 32 bytes from gen_random_uuid()
-- (PostgreSQL's strong random source; 244 random bits). Not readable by hub_readonly.
CREATE TABLE hub_keys (
    name        text PRIMARY KEY,
    secret      bytea NOT NULL CHECK (length(secret) >= 16),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO hub_keys (name, secret)
VALUES ('replay', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
