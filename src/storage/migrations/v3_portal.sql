-- Version 3: the per-project user portal. Portal users belong to one product (project); a
-- license key is linked to at most one portal account. Sessions are opaque random tokens
-- stored as SHA-256 only.
CREATE TABLE portal_users (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    product_id     TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    username       TEXT NOT NULL COLLATE NOCASE,
    password_hash  TEXT NOT NULL,
    license_id     TEXT REFERENCES licenses(id) ON DELETE SET NULL,
    created_at     INTEGER NOT NULL,
    last_login_at  INTEGER,
    UNIQUE (product_id, username)
);
CREATE UNIQUE INDEX portal_users_license ON portal_users (license_id) WHERE license_id IS NOT NULL;

CREATE TABLE portal_sessions (
    token_sha256    BLOB PRIMARY KEY,
    portal_user_id  TEXT NOT NULL REFERENCES portal_users(id) ON DELETE CASCADE,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX portal_sessions_user ON portal_sessions (portal_user_id);
CREATE INDEX portal_sessions_expiry ON portal_sessions (expires_at);
