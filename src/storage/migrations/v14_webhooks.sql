-- Event webhooks (Standard Webhooks): per-tenant endpoints, the events emitted to them, and one
-- delivery per (event, endpoint), retried until delivered or given up. The abuse policy's own
-- webhook URL goes through the same queue (a delivery without an endpoint, signed with the
-- product's abuse webhook secret). Self-contained: one migration, also folded into schema.sql.

CREATE TABLE webhook_endpoints (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- NULL: every product of the tenant
    product_id     TEXT REFERENCES products(id) ON DELETE CASCADE,
    url            TEXT NOT NULL,
    description    TEXT,
    -- JSON array of subscribed types: "*", "license.*", "machine.activated" …
    event_types    TEXT NOT NULL DEFAULT '["*"]',
    enabled        INTEGER NOT NULL DEFAULT 1,
    secret_sealed  BLOB NOT NULL,
    -- first failure of the current run of failures (NULL after a success)
    failing_since  INTEGER,
    -- set when the server disabled the endpoint for failing too long; cleared on re-enabling
    disabled_at    INTEGER,
    disabled_reason TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

-- An emitted event, stored once whatever the number of its deliveries: its id is the
-- `webhook-id` every delivery of it carries, so a receiver can deduplicate.
CREATE TABLE webhook_events (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    product_id  TEXT,
    type        TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX webhook_events_created ON webhook_events (created_at);

CREATE TABLE webhook_deliveries (
    id                TEXT PRIMARY KEY,
    event_id          TEXT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
    -- NULL: the abuse policy's URL of product_id (deprecated X-Keyward-Signature as well)
    endpoint_id       TEXT REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    product_id        TEXT REFERENCES products(id) ON DELETE CASCADE,
    url               TEXT,
    status            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER,
    last_attempt_at   INTEGER,
    last_status_code  INTEGER,
    last_response     TEXT,
    last_error        TEXT,
    delivered_at      INTEGER,
    created_at        INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

-- Abuse deliveries still pending move to the new queue, with the Standard Webhooks body.
INSERT INTO webhook_events (id, tenant_id, product_id, type, body, created_at)
SELECT 'msg_abuse' || d.id, d.tenant_id, d.product_id, 'abuse.flag.created',
       json_object('type', 'abuse.flag.created',
                   'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', d.created_at / 1000.0, 'unixepoch'),
                   'data', json_object('flag', json_extract(d.body, '$.flag'))),
       d.created_at
FROM abuse_webhook_deliveries d
WHERE d.delivered_at IS NULL AND d.failed_at IS NULL;
INSERT INTO webhook_deliveries (id, event_id, endpoint_id, product_id, url, status, attempts,
                                next_attempt_at, last_error, created_at)
SELECT 'dlv_abuse' || d.id, 'msg_abuse' || d.id, NULL, d.product_id, d.url, 'PENDING', d.attempts,
       d.next_attempt_at, d.last_error, d.created_at
FROM abuse_webhook_deliveries d
WHERE d.delivered_at IS NULL AND d.failed_at IS NULL;
DELETE FROM abuse_webhook_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL;
