-- A device's signing keys over time. A record is judged by the key valid when the broker
-- appended it: a key signs records appended from `issued_at` until `revoked_at` (a rotation or a
-- revocation), so a rotation never turns a device's not-yet-processed backlog into rejections.
-- Rows are never updated but to close them; at most one key per device is open.
ALTER TABLE device_keys DROP CONSTRAINT device_keys_pkey;
ALTER TABLE device_keys ADD COLUMN key_id bigserial PRIMARY KEY;
CREATE UNIQUE INDEX device_keys_current ON device_keys (device_id) WHERE revoked_at IS NULL;
CREATE INDEX device_keys_by_device ON device_keys (device_id, issued_at);
ALTER TABLE device_keys ADD CONSTRAINT device_keys_period CHECK (revoked_at IS NULL OR revoked_at >= issued_at);
