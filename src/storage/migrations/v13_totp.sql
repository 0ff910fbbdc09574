-- Two-factor login for operators (TOTP, RFC 6238) with recovery codes, and the workspace policy
-- that requires it. New tables only: an operator without a row has no second factor.
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
