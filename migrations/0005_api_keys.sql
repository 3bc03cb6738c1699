-- Migration 5: API keys for machine clients. Only a SHA-256 digest of each
-- key is stored; a rotation keeps the previous digest until its overlap
-- ends. Usage (last use, daily counts) is kept in memory and flushed in
-- batches.

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    digest       TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    rate_limit   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    rotated_at   INTEGER,
    old_digest   TEXT UNIQUE,
    old_until    INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    last_used_ip TEXT
);

CREATE INDEX api_keys_user ON api_keys (user_id, created_at);
