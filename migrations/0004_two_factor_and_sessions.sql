-- Migration 4: two-factor authentication and the details of each login.
-- TOTP secrets are stored sealed (AES-256-GCM under the data key, bound to
-- the account id); a pending secret waits for its first code; the newest
-- accepted step refuses replays. Backup codes are kept as keyed hashes. The
-- database remembers the data key's fingerprint, so a server started with
-- another key refuses to start instead of losing every secret.

ALTER TABLE users ADD COLUMN totp_secret BLOB;
ALTER TABLE users ADD COLUMN totp_pending BLOB;
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;

CREATE TABLE backup_codes (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
) WITHOUT ROWID;

ALTER TABLE refresh_families ADD COLUMN last_used_at INTEGER;
ALTER TABLE refresh_families ADD COLUMN client_ip TEXT;
ALTER TABLE refresh_families ADD COLUMN user_agent TEXT;

CREATE TABLE key_fingerprints (
    name        TEXT PRIMARY KEY NOT NULL,
    fingerprint TEXT NOT NULL
) WITHOUT ROWID;
