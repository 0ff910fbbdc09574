-- E-mail to customers (issue 13): SMTP settings per tenant, the outbox, per-product template
-- overrides, expiry reminders already sent, portal users' e-mail addresses; and finding
-- customers (a trigram index of each license's customer e-mail, name and order id).
CREATE TABLE smtp_settings (
    tenant_id        TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    host             TEXT NOT NULL,
    port             INTEGER NOT NULL,
    -- starttls | tls (implicit) | none (loopback/private hosts, when the server allows it)
    security         TEXT NOT NULL,
    username         TEXT,
    -- sealed with the master key; never returned
    password_sealed  BLOB,
    from_address     TEXT NOT NULL,
    from_name        TEXT,
    -- where links in this workspace's messages point (else the server's --public-url)
    public_url       TEXT,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE mail_outbox (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    product_id       TEXT REFERENCES products(id) ON DELETE SET NULL,
    license_id       TEXT REFERENCES licenses(id) ON DELETE SET NULL,
    kind             TEXT NOT NULL,
    -- lower-cased, so a customer's messages are found by address
    recipient        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT NOT NULL,
    body_html        TEXT NOT NULL,
    -- PENDING | SENT | FAILED
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX mail_outbox_tenant ON mail_outbox (tenant_id, created_at);
CREATE INDEX mail_outbox_recipient ON mail_outbox (tenant_id, recipient, created_at);

CREATE TABLE mail_templates (
    product_id  TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    subject     TEXT,
    body_text   TEXT,
    body_html   TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (product_id, kind)
);

-- One reminder per license per expiry date: a renewal moves valid_until, and earns a new one.
CREATE TABLE mail_reminders (
    license_id   TEXT NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    valid_until  INTEGER NOT NULL,
    sent_at      INTEGER NOT NULL,
    PRIMARY KEY (license_id, valid_until)
);

ALTER TABLE portal_users ADD COLUMN email TEXT;
CREATE INDEX portal_users_email ON portal_users (product_id, lower(email)) WHERE email IS NOT NULL;

CREATE INDEX licenses_customer_email ON licenses (tenant_id, lower(customer_email))
    WHERE customer_email IS NOT NULL;

-- Searching customers as notes are searched (see v5): any 3+ character part of the e-mail,
-- name or order id, through a trigram index mapped to license ids.
CREATE VIRTUAL TABLE license_customers USING fts5(customer, license_id UNINDEXED, tokenize = 'trigram');
CREATE TABLE license_customer_rows (
    license_id  TEXT PRIMARY KEY,
    fts_rowid   INTEGER NOT NULL
);
INSERT INTO license_customers (customer, license_id)
    SELECT concat_ws(' ', customer_email, customer_name, order_id), id FROM licenses
    WHERE coalesce(customer_email, customer_name, order_id) IS NOT NULL;
INSERT INTO license_customer_rows (license_id, fts_rowid)
    SELECT license_id, rowid FROM license_customers;

CREATE TRIGGER licenses_customer_insert AFTER INSERT ON licenses
WHEN coalesce(new.customer_email, new.customer_name, new.order_id) IS NOT NULL
BEGIN
    INSERT INTO license_customers (customer, license_id)
        VALUES (concat_ws(' ', new.customer_email, new.customer_name, new.order_id), new.id);
    INSERT INTO license_customer_rows (license_id, fts_rowid) VALUES (new.id, last_insert_rowid());
END;

CREATE TRIGGER licenses_customer_delete AFTER DELETE ON licenses
BEGIN
    DELETE FROM license_customers
        WHERE rowid = (SELECT fts_rowid FROM license_customer_rows WHERE license_id = old.id);
    DELETE FROM license_customer_rows WHERE license_id = old.id;
END;

CREATE TRIGGER licenses_customer_update AFTER UPDATE OF customer_email, customer_name, order_id ON licenses
BEGIN
    DELETE FROM license_customers
        WHERE rowid = (SELECT fts_rowid FROM license_customer_rows WHERE license_id = old.id);
    DELETE FROM license_customer_rows WHERE license_id = old.id;
    INSERT INTO license_customers (customer, license_id)
        SELECT concat_ws(' ', new.customer_email, new.customer_name, new.order_id), new.id
        WHERE coalesce(new.customer_email, new.customer_name, new.order_id) IS NOT NULL;
    INSERT INTO license_customer_rows (license_id, fts_rowid)
        SELECT new.id, last_insert_rowid()
        WHERE coalesce(new.customer_email, new.customer_name, new.order_id) IS NOT NULL;
END;
