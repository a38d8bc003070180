-- Device identity: the key each device signs its records with (`hub access add-device`), and
-- rows the sink could not write (a data error, not an outage), kept instead of retried forever.

CREATE TABLE device_keys (
    device_id   text PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
    secret      bytea NOT NULL CHECK (length(secret) >= 16),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
-- Workers reload the registry when its digest or this time changes: a key issued or revoked.
ALTER TABLE registry_state ADD COLUMN keys_changed_at timestamptz;
CREATE FUNCTION device_keys_touch_registry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registry_state SET keys_changed_at = clock_timestamp();
    RETURN NULL;
END $$;
CREATE TRIGGER device_keys_changed AFTER INSERT OR UPDATE OR DELETE ON device_keys
    FOR EACH STATEMENT EXECUTE FUNCTION device_keys_touch_registry();

CREATE TABLE sink_quarantine (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    table_name  text NOT NULL,
    row_data    jsonb NOT NULL,
    error       text NOT NULL
);
