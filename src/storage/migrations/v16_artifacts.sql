-- Artifacts per platform (issue 15): a release holds files per (platform, arch, filetype), each
-- content-addressed in the bundle store like a release's own bundle, with SHA-256, SHA-512, the
-- product's Ed25519 signature (and its kid) and a minisign signature (what Tauri verifies).
-- A release made without a bundle (`keyward release create`) stores '' in its bundle_* columns:
-- it is served through its artifacts only.
CREATE TABLE release_artifacts (
    id                  TEXT PRIMARY KEY,
    release_id          TEXT NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    -- windows, darwin, linux, …
    platform            TEXT NOT NULL,
    -- x86_64, aarch64, i686, armv7, universal
    arch                TEXT NOT NULL,
    -- msi, nsis, exe, dmg, app.tar.gz, AppImage, deb, rpm, nupkg, zip, …
    filetype            TEXT NOT NULL,
    filename            TEXT NOT NULL,
    size                INTEGER NOT NULL,
    sha256              TEXT NOT NULL,
    -- lower-case hex SHA-512 (electron-updater and Velopack want it; base64 is derived)
    sha512              TEXT NOT NULL,
    -- Ed25519 over the exact bytes, base64, and the kid of the key that made it
    signature           TEXT NOT NULL,
    signature_kid       TEXT NOT NULL,
    -- the text of a minisign .sig file: prehashed Ed25519 (BLAKE2b-512) with trusted comment,
    -- made by the same product key (its minisign key id is the kid)
    minisign_signature  TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    UNIQUE (release_id, platform, arch, filetype)
);
CREATE INDEX release_artifacts_sha256 ON release_artifacts (sha256);

-- Staged rollouts: the share (0–100) of licenses (or machines) offered the release, by a
-- stable hash of the release and the license (domain::releases::in_rollout).
ALTER TABLE releases ADD COLUMN rollout_percentage INTEGER NOT NULL DEFAULT 100;

-- A client below this version is told its update is critical (NULL: no minimum).
ALTER TABLE products ADD COLUMN minimum_version TEXT;
