-- Version 2: signed software releases. A bundle is a file in <data>/bundles named by its
-- SHA-256; rows only refer to it, so equal bundles are stored once.
CREATE TABLE releases (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    product_id          TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    -- canonical semver text; precedence is compared in Rust (pre-release ordering)
    version             TEXT NOT NULL,
    channel             TEXT NOT NULL,
    changelog           TEXT NOT NULL DEFAULT '',
    is_critical         INTEGER NOT NULL DEFAULT 0,
    requires_migration  INTEGER NOT NULL DEFAULT 0,
    -- DRAFT, then PUBLISHED; YANKED withdraws it from checks and downloads, keeping the record
    status              TEXT NOT NULL,
    bundle_filename     TEXT NOT NULL,
    bundle_size         INTEGER NOT NULL,
    bundle_sha256       TEXT NOT NULL,
    -- Ed25519 over the bundle's exact bytes with the product's key, base64
    signature           TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    published_at        INTEGER,
    yanked_at           INTEGER,
    UNIQUE (product_id, version)
);
CREATE INDEX releases_product ON releases (tenant_id, product_id, created_at);
CREATE INDEX releases_bundle ON releases (bundle_sha256);

-- A smaller bundle that upgrades from one older version to the release.
CREATE TABLE release_deltas (
    release_id       TEXT NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    from_version     TEXT NOT NULL,
    bundle_filename  TEXT NOT NULL,
    bundle_size      INTEGER NOT NULL,
    bundle_sha256    TEXT NOT NULL,
    signature        TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (release_id, from_version)
);
CREATE INDEX release_deltas_bundle ON release_deltas (bundle_sha256);
