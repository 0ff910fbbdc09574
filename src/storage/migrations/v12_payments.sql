-- Version 12: payments. A tenant's payment endpoints receive a provider's webhooks (Stripe,
-- Paddle Billing, Lemon Squeezy), each with its signing secret sealed with the master key; a
-- mapping turns the provider's price/product/variant ids into a product and license settings.
-- Every received event is kept (the provider's event id makes a redelivery change nothing), and
-- the ids a payment carries (order, subscription, invoice, charge…) name the licenses it made, so
-- later events of the same payment find them.
CREATE TABLE payment_endpoints (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- STRIPE, PADDLE or LEMONSQUEEZY
    provider       TEXT NOT NULL,
    name           TEXT NOT NULL,
    -- AES-256-GCM(master key) of the provider's signing secret
    secret_sealed  BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX payment_endpoints_tenant ON payment_endpoints (tenant_id, created_at);

CREATE TABLE payment_mappings (
    endpoint_id      TEXT NOT NULL REFERENCES payment_endpoints(id) ON DELETE CASCADE,
    -- the provider's price, product or variant id
    provider_ref     TEXT NOT NULL,
    product_id       TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    -- NULL: the product's default
    license_type     TEXT,
    tier             TEXT NOT NULL DEFAULT 'PERSONAL',
    plan             TEXT,
    max_activations  INTEGER,
    -- codes joined by ',' ('' for none), as licenses.entitlements
    entitlements     TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (endpoint_id, provider_ref)
) WITHOUT ROWID;

CREATE TABLE payment_events (
    endpoint_id      TEXT NOT NULL REFERENCES payment_endpoints(id) ON DELETE CASCADE,
    -- the provider's event id (Lemon Squeezy sends none: a digest of the body stands in)
    event_id         TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    received_at      INTEGER NOT NULL,
    -- PURCHASE, RENEWAL, CANCELLATION, REFUND, DISPUTE_OPENED, DISPUTE_WON, DISPUTE_LOST, NONE
    effect           TEXT NOT NULL,
    -- APPLIED, IGNORED, UNMAPPED, LICENSE_NOT_FOUND, FAILED
    outcome          TEXT NOT NULL,
    message          TEXT NOT NULL DEFAULT '',
    customer_id      TEXT,
    customer_email   TEXT,
    -- the payment's ids, joined by ' ' ("order:…", "subscription:…", …)
    refs             TEXT NOT NULL DEFAULT '',
    -- the period's end a renewal or cancellation names (ms)
    period_end       INTEGER,
    payload          TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, event_id)
) WITHOUT ROWID;
CREATE INDEX payment_events_recent ON payment_events (tenant_id, received_at);
CREATE INDEX payment_events_flagged ON payment_events (endpoint_id, outcome, received_at);

-- Which licenses an event changed: a license's payment timeline.
CREATE TABLE payment_event_licenses (
    license_id   TEXT NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    endpoint_id  TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    PRIMARY KEY (license_id, endpoint_id, event_id),
    FOREIGN KEY (endpoint_id, event_id) REFERENCES payment_events(endpoint_id, event_id)
        ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX payment_event_licenses_event ON payment_event_licenses (endpoint_id, event_id);

-- The ids of a payment ("subscription:sub_…", "order:123") and the licenses they name.
CREATE TABLE payment_refs (
    endpoint_id  TEXT NOT NULL REFERENCES payment_endpoints(id) ON DELETE CASCADE,
    ref          TEXT NOT NULL,
    license_id   TEXT NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    PRIMARY KEY (endpoint_id, ref, license_id)
) WITHOUT ROWID;
