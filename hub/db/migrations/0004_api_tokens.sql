-- Bearer tokens of the management API (`hub access add-token ROLE NAME`). Only a SHA-256 of each
-- token's secret is kept: the token itself is shown once, when it is issued.
CREATE TABLE api_tokens (
    token_id      text PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    role          text NOT NULL CHECK (role IN ('operator', 'partner', 'company')),
    scope         text NOT NULL DEFAULT '',
    secret_sha256 bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
