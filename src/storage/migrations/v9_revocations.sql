-- Version 9: revocation lists for offline licenses. A license whose status is SUSPENDED, BANNED
-- or REVOKED is on its product's list (one row here, kept in step with the status by
-- `domain::revocations::follow`); each product's list has a version that grows with every change.
CREATE TABLE revocations (
    license_id  TEXT PRIMARY KEY REFERENCES licenses(id) ON DELETE CASCADE,
    product_id  TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    -- the license's status when it entered the list (or changed on it)
    status      TEXT NOT NULL,
    revoked_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX revocations_product ON revocations (product_id, license_id);

-- One row per product whose list ever changed; no row is version 0 (empty, never changed).
CREATE TABLE revocation_lists (
    product_id  TEXT PRIMARY KEY REFERENCES products(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- The licenses already suspended, banned or revoked start their products' lists at version 1.
INSERT INTO revocations (license_id, product_id, status, revoked_at)
    SELECT id, product_id, status, updated_at FROM licenses
    WHERE status IN ('SUSPENDED', 'BANNED', 'REVOKED');
INSERT INTO revocation_lists (product_id, version, updated_at)
    SELECT product_id, 1, MAX(revoked_at) FROM revocations GROUP BY product_id;
