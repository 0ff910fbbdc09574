-- Version 6: the one-time setup token. While no operator exists, the server (at its start) or
-- `keyward admin setup-url` issues a token; only its SHA-256 is kept, in one row, so a new one
-- replaces (invalidates) the old. Creating the first operator deletes it in the same transaction.
CREATE TABLE setup_token (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    token_sha256  BLOB NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
