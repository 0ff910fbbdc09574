-- Version 11: signing keys that can change. A product may have several Ed25519 keys; one is
-- current (it signs), the others only verify until they are retired. Each key after the first
-- is endorsed by the key current before it. `products.signing_public_key` and
-- `products.signing_secret_sealed` keep mirroring the current key, so the validation path still
-- reads one row. The existing keys are copied in (and the bundles' `signature_kid` filled) by
-- `storage::migrations::copy_signing_keys`: a kid is a SHA-256, which SQL cannot compute.
CREATE TABLE signing_keys (
    product_id       TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    -- 1 for a product's first key, then one more per rotation: the listing order
    serial           INTEGER NOT NULL,
    -- first 16 hex characters of SHA-256(public_key)
    kid              TEXT NOT NULL,
    public_key       BLOB NOT NULL,
    -- AES-256-GCM(master key), as products.signing_secret_sealed
    secret_sealed    BLOB NOT NULL,
    is_current       INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    retired_at       INTEGER,
    -- the key current before this one, and its Ed25519 signature (base64) over
    -- 'keyward-key-endorsement/' || base64(public_key); NULL for a product's first key
    endorsed_by_kid  TEXT,
    endorsement      TEXT,
    PRIMARY KEY (product_id, serial),
    UNIQUE (product_id, kid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX signing_keys_current ON signing_keys (product_id) WHERE is_current = 1;

-- Which key signed a bundle, so an updater knows which listed key verifies it.
ALTER TABLE releases ADD COLUMN signature_kid TEXT NOT NULL DEFAULT '';
ALTER TABLE release_deltas ADD COLUMN signature_kid TEXT NOT NULL DEFAULT '';
