-- Version 7: the anti-replay chain belongs to the session, and each project chooses what
-- happens when a key's sessions are all in use.

-- Each session carries its own nonce (the one its last validation handed out). An ended
-- session stays as a tombstone (ended_at, end_reason) for a while, so its next refresh is told
-- why it ended instead of silently opening a new session.
ALTER TABLE sessions ADD COLUMN nonce TEXT;
ALTER TABLE sessions ADD COLUMN ended_at INTEGER;
ALTER TABLE sessions ADD COLUMN end_reason TEXT;
CREATE INDEX sessions_ended ON sessions (ended_at) WHERE ended_at IS NOT NULL;

-- A running app keeps its chain across the upgrade: the key's last nonce goes to its sessions.
UPDATE sessions SET nonce = (SELECT current_nonce FROM licenses WHERE licenses.id = sessions.license_id);
-- No longer read or written (SQLite keeps the column; licenses are read by position).
UPDATE licenses SET current_nonce = NULL WHERE current_nonce IS NOT NULL;

-- REFUSE_NEW (403 MAX_SESSIONS at the limit) or END_OLDEST (the newcomer ends the oldest).
ALTER TABLE products ADD COLUMN session_limit TEXT NOT NULL DEFAULT 'END_OLDEST';
