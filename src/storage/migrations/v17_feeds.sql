-- Update feeds for desktop updaters (issue 15: Tauri, Sparkle, electron-updater, Velopack).

-- A product whose feeds answer without a license (1), or only to a licensed client (0).
ALTER TABLE products ADD COLUMN feeds_public INTEGER NOT NULL DEFAULT 0;

-- Lower-case hex SHA-1 of an artifact's exact bytes (Velopack's feed names it); '' for an
-- artifact uploaded before this version, whose SHA-1 the Velopack feed computes once and keeps.
ALTER TABLE release_artifacts ADD COLUMN sha1 TEXT NOT NULL DEFAULT '';

-- The oldest OS version an artifact runs on ("10.15" for macOS Catalina), as the vendor gave it;
-- Sparkle's appcast writes it as `sparkle:minimumSystemVersion`. NULL: not set.
ALTER TABLE release_artifacts ADD COLUMN minimum_system_version TEXT;

-- Per-license feed tokens: what a client whose updater cannot send headers (Sparkle) puts in
-- its feed URL instead of its license key. Stored as SHA-256 only; deleting a row revokes it.
CREATE TABLE feed_tokens (
    token_sha256  BLOB PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    product_id    TEXT NOT NULL,
    license_id    TEXT NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    -- the first characters of the token, to tell tokens apart in listings
    prefix        TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX feed_tokens_license ON feed_tokens (license_id);
