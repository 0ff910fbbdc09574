-- Keyward schema, version 10 (the latest). A fresh database is created from this file;
-- later versions are numbered migrations in src/storage/migrations.rs, tracked in user_version.
-- Every row carries tenant_id: every query is scoped by the caller's tenant.
-- Times are integer milliseconds since the Unix epoch (UTC).

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE products (
    id                       TEXT PRIMARY KEY,
    tenant_id                TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                     TEXT NOT NULL,
    slug                     TEXT NOT NULL,
    product_type             TEXT NOT NULL,
    status                   TEXT NOT NULL,
    default_license_type     TEXT NOT NULL,
    default_max_activations  INTEGER NOT NULL,
    key_format               TEXT NOT NULL,
    -- heartbeat policy: NULL interval means no heartbeats are expected
    heartbeat_interval_secs  INTEGER,
    heartbeat_grace_secs     INTEGER NOT NULL DEFAULT 0,
    heartbeat_cull_dead      INTEGER NOT NULL DEFAULT 1,
    signing_public_key       BLOB NOT NULL,
    -- AES-256-GCM(master key): 12-byte nonce || ciphertext || tag
    signing_secret_sealed    BLOB NOT NULL,
    -- the key/HWID face calls a product a project: its kv_ client secret (looked up by hash,
    -- kept sealed so operators can copy it) and its AES-256-GCM payload key
    description              TEXT,
    client_secret_sha256     BLOB NOT NULL UNIQUE,
    client_secret_sealed     BLOB NOT NULL,
    payload_key_sealed       BLOB NOT NULL,
    server_var               TEXT,
    require_encryption       INTEGER NOT NULL DEFAULT 0,
    session_ttl_secs         INTEGER NOT NULL DEFAULT 300,
    hwid_reset_cooldown_secs INTEGER NOT NULL DEFAULT 86400,
    portal_settings          TEXT,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL,
    -- abuse detection: the policy as JSON (NULL: defaults) and the sealed webhook secret
    abuse_policy             TEXT,
    abuse_webhook_secret_sealed BLOB,
    -- what a validation gets when every session of its key is live: REFUSE_NEW or END_OLDEST
    session_limit            TEXT NOT NULL DEFAULT 'END_OLDEST',
    -- entitlement codes licenses may carry, joined by ',' ('' for none)
    entitlements             TEXT NOT NULL DEFAULT '',
    -- a client below this version is told its update is critical (version 16; NULL: none)
    minimum_version          TEXT,
    -- its update feeds answer without a license (version 17; 0: licensed clients only)
    feeds_public             INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, slug)
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    -- the readable, non-secret head of the key ("kw_ab12cd34"); the rest is only hashed
    prefix        TEXT NOT NULL UNIQUE,
    secret_sha256 BLOB NOT NULL,
    scope         TEXT NOT NULL,
    product_id    TEXT REFERENCES products(id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE licenses (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    product_id       TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    -- normalized: trimmed and upper-cased, so lookups ignore case and whitespace
    license_key      TEXT NOT NULL UNIQUE,
    license_type     TEXT NOT NULL,
    tier             TEXT NOT NULL,
    status           TEXT NOT NULL,
    max_activations  INTEGER NOT NULL,
    max_sessions     INTEGER,
    valid_until      INTEGER,
    -- a plan key without valid_until starts its clock (plan_days) at its first activation
    plan             TEXT,
    plan_days        INTEGER,
    customer_email   TEXT,
    customer_name    TEXT,
    order_id         TEXT,
    metadata         TEXT,
    note             TEXT,
    revoked_reason   TEXT,
    -- unused since version 7 (each session has its own nonce); kept, licenses are read by position
    current_nonce    TEXT,
    hwid_reset_at    INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    -- the product's entitlement codes this license carries, joined by ',' ('' for none)
    entitlements     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX licenses_tenant_product ON licenses (tenant_id, product_id, created_at);
CREATE INDEX licenses_tenant_created ON licenses (tenant_id, created_at);
CREATE INDEX licenses_created ON licenses (created_at);
CREATE INDEX licenses_order ON licenses (tenant_id, order_id) WHERE order_id IS NOT NULL;
CREATE INDEX licenses_expiring ON licenses (valid_until) WHERE status = 'ACTIVE' AND valid_until IS NOT NULL;

-- Licenses by tenant, product, stored status and plan ('' for none), kept by the triggers
-- below (added in version 18): the dashboard's keys by status and by plan read these few rows instead of counting
-- every license (600 ms a dashboard at a million keys). Rows that fall to 0 stay.
CREATE TABLE license_counts (
    tenant_id   TEXT NOT NULL,
    product_id  TEXT NOT NULL,
    status      TEXT NOT NULL,
    plan        TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, product_id, status, plan)
) WITHOUT ROWID;
CREATE TRIGGER license_counted_insert AFTER INSERT ON licenses BEGIN
    INSERT INTO license_counts (tenant_id, product_id, status, plan, count)
    VALUES (NEW.tenant_id, NEW.product_id, NEW.status, COALESCE(NEW.plan, ''), 1)
    ON CONFLICT (tenant_id, product_id, status, plan) DO UPDATE SET count = count + 1;
END;
CREATE TRIGGER license_counted_delete AFTER DELETE ON licenses BEGIN
    UPDATE license_counts SET count = count - 1
    WHERE tenant_id = OLD.tenant_id AND product_id = OLD.product_id AND status = OLD.status
      AND plan = COALESCE(OLD.plan, '');
END;
CREATE TRIGGER license_counted_update AFTER UPDATE OF tenant_id, product_id, status, plan
ON licenses
WHEN OLD.tenant_id IS NOT NEW.tenant_id OR OLD.product_id IS NOT NEW.product_id
  OR OLD.status IS NOT NEW.status OR OLD.plan IS NOT NEW.plan
BEGIN
    UPDATE license_counts SET count = count - 1
    WHERE tenant_id = OLD.tenant_id AND product_id = OLD.product_id AND status = OLD.status
      AND plan = COALESCE(OLD.plan, '');
    INSERT INTO license_counts (tenant_id, product_id, status, plan, count)
    VALUES (NEW.tenant_id, NEW.product_id, NEW.status, COALESCE(NEW.plan, ''), 1)
    ON CONFLICT (tenant_id, product_id, status, plan) DO UPDATE SET count = count + 1;
END;

CREATE TABLE activations (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    license_id    TEXT NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    machine_id    TEXT NOT NULL,
    machine_name  TEXT,
    os_name       TEXT,
    os_version    TEXT,
    app_version   TEXT,
    ip            TEXT,
    activated_at  INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    UNIQUE (license_id, machine_id)
);
CREATE INDEX activations_last_seen ON activations (last_seen_at);
CREATE INDEX activations_machine ON activations (machine_id);

-- Running instances of the key/HWID face: at most max_sessions live per license; a session
-- not refreshed within its product's session TTL is dead and frees its place.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    license_id    TEXT NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    machine_id    TEXT NOT NULL,
    ip            TEXT,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    -- anti-replay: the nonce this session's last validation handed out
    nonce         TEXT,
    -- an ended session is kept a while so its next refresh learns why (REPLACED, ENDED_BY_APP)
    ended_at      INTEGER,
    end_reason    TEXT
);
CREATE INDEX sessions_license ON sessions (license_id, last_seen_at);
CREATE INDEX sessions_ended ON sessions (ended_at) WHERE ended_at IS NOT NULL;

-- Request ids of encrypted envelopes already accepted, kept until their timestamp window
-- has passed, so a captured envelope cannot be replayed.
CREATE TABLE seen_requests (
    product_id  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (product_id, request_id)
);
CREATE INDEX seen_requests_expiry ON seen_requests (expires_at);

CREATE TABLE idempotency_keys (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    idem_key        TEXT NOT NULL,
    request_sha256  BLOB NOT NULL,
    license_id      TEXT NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, idem_key)
);

-- People who log into the admin panel. ADMINs see every tenant; USERs their own.
CREATE TABLE operators (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email          TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL,
    disabled_at    INTEGER,
    -- session tokens issued before this instant (a disable or password reset) are dead
    sessions_valid_after INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- Admin tokens made unusable before their expiry (logout).
CREATE TABLE revoked_tokens (
    jti         TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);

-- Append-only trail; no foreign keys so history outlives what it describes.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    product_id  TEXT,
    license_id  TEXT,
    machine_id  TEXT,
    ip          TEXT,
    detail      TEXT
);
CREATE INDEX audit_tenant_time ON audit_events (tenant_id, at);
CREATE INDEX audit_license_time ON audit_events (license_id, at) WHERE license_id IS NOT NULL;
-- Newest first across tenants (an operator who reaches them all), and of one action.
CREATE INDEX audit_time ON audit_events (at);
CREATE INDEX audit_action_time ON audit_events (action, at);

-- Every audit row is counted here as it is written (`audit::daily::DailyCounts`, since version
-- 18; version 8 counted rows as they were pruned): the dashboard's figures read this table alone,
-- and outlive the raw rows, which are pruned after their kind's retention.
CREATE TABLE audit_daily (
    tenant_id   TEXT NOT NULL,
    -- '' when the event named no product
    product_id  TEXT NOT NULL,
    -- midnight UTC of the events' day, in ms
    day         INTEGER NOT NULL,
    action      TEXT NOT NULL,
    -- the event's detail.code ('' when it had none)
    code        TEXT NOT NULL,
    -- 1 for a key.validate that bound its machine (detail.hwidBound)
    hwid_bound  INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    -- day first: the dashboard reads the last 30 days, of one tenant or of all
    PRIMARY KEY (day, tenant_id, product_id, action, code, hwid_bound)
) WITHOUT ROWID;


-- Signed software releases (added in version 2). A bundle is a file in <data>/bundles named by its
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
    -- the kid of the key that made `signature` (version 11)
    signature_kid       TEXT NOT NULL DEFAULT '',
    -- the share (0–100) of licenses offered the release (version 16)
    rollout_percentage  INTEGER NOT NULL DEFAULT 100,
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
    signature_kid    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (release_id, from_version)
);
CREATE INDEX release_deltas_bundle ON release_deltas (bundle_sha256);

-- Files of a release per platform, arch and filetype (version 16). A release without a
-- bundle of its own stores '' in its bundle_* columns.
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
    -- lower-case hex SHA-1 (Velopack's feed names it; version 17, '' before it)
    sha1                TEXT NOT NULL DEFAULT '',
    -- the oldest OS version the file runs on ("10.15"), Sparkle's minimumSystemVersion; NULL: unset
    minimum_system_version TEXT,
    UNIQUE (release_id, platform, arch, filetype)
);
CREATE INDEX release_artifacts_sha256 ON release_artifacts (sha256);

-- Per-license feed tokens (version 17): what a client whose updater cannot send headers
-- (Sparkle) puts in its feed URL instead of its license key. SHA-256 only; a deleted row is a
-- revoked token.
CREATE TABLE feed_tokens (
    token_sha256  BLOB PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    product_id    TEXT NOT NULL,
    license_id    TEXT NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    prefix        TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX feed_tokens_license ON feed_tokens (license_id);


-- The per-project user portal (added in version 3). Portal users belong to one product (project); a
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
    -- version 15: where password-reset links go (optional, settable at registration)
    email          TEXT,
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

-- Abuse detection (added in version 4).
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

-- Searching key notes without scanning every license (added in version 5). A trigram full-text index of
-- the notes (any 3+ character substring, case-insensitive); its rows are mapped to license ids
-- through license_note_rows (license rowids are not stable across VACUUM, these are).
CREATE VIRTUAL TABLE license_notes USING fts5(note, license_id UNINDEXED, tokenize = 'trigram');
CREATE TABLE license_note_rows (
    license_id  TEXT PRIMARY KEY,
    fts_rowid   INTEGER NOT NULL
);

CREATE TRIGGER licenses_note_insert AFTER INSERT ON licenses
WHEN new.note IS NOT NULL AND new.note <> ''
BEGIN
    INSERT INTO license_notes (note, license_id) VALUES (new.note, new.id);
    INSERT INTO license_note_rows (license_id, fts_rowid) VALUES (new.id, last_insert_rowid());
END;

CREATE TRIGGER licenses_note_delete AFTER DELETE ON licenses
BEGIN
    DELETE FROM license_notes
        WHERE rowid = (SELECT fts_rowid FROM license_note_rows WHERE license_id = old.id);
    DELETE FROM license_note_rows WHERE license_id = old.id;
END;

CREATE TRIGGER licenses_note_update AFTER UPDATE OF note ON licenses
BEGIN
    DELETE FROM license_notes
        WHERE rowid = (SELECT fts_rowid FROM license_note_rows WHERE license_id = old.id);
    DELETE FROM license_note_rows WHERE license_id = old.id;
    INSERT INTO license_notes (note, license_id)
        SELECT new.note, new.id WHERE new.note IS NOT NULL AND new.note <> '';
    INSERT INTO license_note_rows (license_id, fts_rowid)
        SELECT new.id, last_insert_rowid() WHERE new.note IS NOT NULL AND new.note <> '';
END;

-- The one-time setup token while no operator exists (only its SHA-256; one row, replaced by
-- each new token, deleted when the first operator is created).
CREATE TABLE setup_token (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    token_sha256  BLOB NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);

-- Revocation lists for offline licenses (version 9): the SUSPENDED, BANNED and REVOKED licenses
-- of each product, kept in step with the status by `domain::revocations::follow`.
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

-- Signing keys (version 11) that can change. A product may have several Ed25519 keys; one is
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

-- Payments (version 12). A tenant's payment endpoints receive a provider's webhooks (Stripe,
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

-- Two-factor login (version 13).
CREATE TABLE operator_totp (
    operator_id   TEXT PRIMARY KEY REFERENCES operators(id) ON DELETE CASCADE,
    -- the 20-byte TOTP secret, AES-256-GCM(master key)
    secret_sealed BLOB NOT NULL,
    -- NULL while enrolment waits for its first code; 2FA is on once set
    enabled_at    INTEGER,
    -- the last time step (unix seconds / 30) a code was accepted for: codes are single-use
    last_step     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- One-time recovery codes: only their SHA-256 is kept (80 random bits each).
CREATE TABLE operator_recovery_codes (
    operator_id  TEXT NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    code_sha256  BLOB NOT NULL,
    used_at      INTEGER,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (operator_id, code_sha256)
) WITHOUT ROWID;

-- A workspace (tenant) whose operators must use two-factor login.
CREATE TABLE tenant_two_factor_policy (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    required    INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Event webhooks (version 14): see src/storage/migrations/v14_webhooks.sql.
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
