-- Where alerts go (`hub notify add-webhook|add-email`), and what the notifier owes each receiver.
--
-- A notice (a KPI alert transition, an incident, a platform alert, an escalation) is written to
-- notify_outbox once per receiver whose scope covers it, keyed by the notice's id: a notice read
-- twice (a replay, a restart before the offset commit) adds nothing. The notifier commits its Kafka
-- offsets only after the rows are in; it then delivers them with retries and backoff, so nothing
-- read is lost while a receiver is away.
CREATE TABLE notify_receivers (
    name        text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('webhook', 'email')),
    target      text NOT NULL,               -- the URL, or the e-mail address
    role        text NOT NULL CHECK (role IN ('operator', 'partner', 'company')),
    scope       text NOT NULL DEFAULT '',    -- the partner's region, or the company
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notify_outbox (
    notice_id     text NOT NULL,
    receiver      text NOT NULL REFERENCES notify_receivers (name) ON DELETE CASCADE,
    kind          text NOT NULL,             -- kpi_alert, incident, platform, escalation
    subject       text NOT NULL,
    body          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    next_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    last_error    text,
    PRIMARY KEY (notice_id, receiver)
);
CREATE INDEX notify_outbox_due ON notify_outbox (next_at) WHERE delivered_at IS NULL;
