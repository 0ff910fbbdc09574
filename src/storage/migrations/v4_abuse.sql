-- Version 4: abuse detection. Per-product policy, persisted flags, IP blocks and webhook
-- deliveries. Self-contained: one migration, also folded into schema.sql.

-- The product's abuse policy as JSON (NULL: the documented defaults) and the HMAC secret of
-- its abuse webhook, sealed with the master key like the product's other secrets.
ALTER TABLE products ADD COLUMN abuse_policy TEXT;
ALTER TABLE products ADD COLUMN abuse_webhook_secret_sealed BLOB;

-- What the detector found. While a flag is OPEN, further findings of the same kind about the
-- same subject update it (occurrences, evidence) instead of adding rows.
CREATE TABLE abuse_flags (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    product_id    TEXT REFERENCES products(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    -- LICENSE, IP, NETWORK or API_KEY; subject is the license id, address, CIDR or key id
    subject_type  TEXT NOT NULL,
    subject       TEXT NOT NULL,
    license_id    TEXT,
    state         TEXT NOT NULL,
    evidence      TEXT NOT NULL,
    -- automatic actions taken (JSON array), so dismissing can undo them
    actions       TEXT NOT NULL DEFAULT '[]',
    occurrences   INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    resolved_at   INTEGER,
    resolved_by   TEXT
);
CREATE UNIQUE INDEX abuse_flags_open ON abuse_flags (tenant_id, kind, subject) WHERE state = 'OPEN';
CREATE INDEX abuse_flags_tenant ON abuse_flags (tenant_id, created_at);

-- Addresses (or /24, /64 networks) refused before any key lookup until expires_at.
CREATE TABLE ip_blocks (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    product_id  TEXT,
    flag_id     TEXT,
    ip          TEXT NOT NULL,
    prefix_len  INTEGER NOT NULL,
    reason      TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    lifted_at   INTEGER,
    lifted_by   TEXT
);
CREATE INDEX ip_blocks_tenant ON ip_blocks (tenant_id, created_at);
CREATE INDEX ip_blocks_live ON ip_blocks (expires_at) WHERE lifted_at IS NULL;

-- Outgoing webhook calls for new flags, kept until delivered or given up, so a restart loses
-- none.
CREATE TABLE abuse_webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        TEXT NOT NULL,
    product_id       TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    flag_id          TEXT NOT NULL,
    url              TEXT NOT NULL,
    body             TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    delivered_at     INTEGER,
    failed_at        INTEGER,
    created_at       INTEGER NOT NULL
);
CREATE INDEX abuse_deliveries_due ON abuse_webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
