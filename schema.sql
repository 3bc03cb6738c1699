-- The canonical schema of a fresh secure-api database (PRAGMA user_version = 6).
-- An older database reaches the same shape through migrations/NNNN_*.sql;
-- a test keeps the two in step. Released migrations are never edited.

CREATE TABLE users (
    id                 TEXT PRIMARY KEY NOT NULL,          -- random UUID
    username           TEXT NOT NULL COLLATE NOCASE UNIQUE,
    email              TEXT NOT NULL UNIQUE,               -- trimmed, lower-cased
    full_name          TEXT,
    password_hash      TEXT NOT NULL,                      -- Argon2id PHC string
    role               TEXT NOT NULL CHECK (role IN ('admin', 'moderator', 'user', 'viewer')),
    is_active          INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    -- Bumped by password change, role change, deactivation and logout-all:
    -- every access token carries the value it was issued under.
    token_version      INTEGER NOT NULL DEFAULT 0,
    failed_login_count INTEGER NOT NULL DEFAULT 0,
    locked_until       INTEGER,                            -- unix seconds
    created_at         TEXT NOT NULL,                      -- RFC 3339 UTC
    updated_at         TEXT NOT NULL,
    -- Two-factor authentication: set means on. Sealed with the data key and
    -- bound to the account id; never stored in clear.
    totp_secret        BLOB,
    totp_pending       BLOB,                               -- a setup awaiting its first code
    totp_last_step     INTEGER                             -- newest accepted step: no replays
);

-- Keyed hashes (HMAC under the data key) of unused backup codes.
CREATE TABLE backup_codes (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
) WITHOUT ROWID;

CREATE INDEX users_role ON users (role);

-- One row per login: rotation never extends expires_at.
CREATE TABLE refresh_families (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT,
    last_used_at   INTEGER,                                -- login or latest refresh
    client_ip      TEXT,                                   -- of the login
    user_agent     TEXT                                    -- of the login, at most 200 characters
);

CREATE INDEX refresh_families_user ON refresh_families (user_id);
-- Housekeeping deletes expired families (and, through them, their tokens).
CREATE INDEX refresh_families_expiry ON refresh_families (expires_at);

CREATE TABLE refresh_tokens (
    jti         TEXT PRIMARY KEY NOT NULL,
    family_id   TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    consumed_at INTEGER,                                   -- unix milliseconds, set when rotated
    replaced_by TEXT                                       -- the jti issued in its place
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- Audit rows outlive the users they mention: no foreign key on user_id.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at TEXT NOT NULL,
    event       TEXT NOT NULL,
    user_id     TEXT,
    client_ip   TEXT,
    request_id  TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'                 -- JSON object
);

CREATE INDEX audit_log_event ON audit_log (event, id);
CREATE INDEX audit_log_user ON audit_log (user_id, id);
-- Also what audit retention deletes by.
CREATE INDEX audit_log_time ON audit_log (occurred_at);

-- Runtime settings changed through /api/v1/admin/config.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Written and emptied again in one transaction by the readiness probe while
-- the storage is failing: does a write of a few pages commit again? Never
-- holds a row outside that transaction.
CREATE TABLE storage_probe (
    id     INTEGER PRIMARY KEY,
    filler BLOB NOT NULL
);

-- The fingerprint of each key that sealed something here (the data key):
-- starting with another key is refused while sealed secrets exist.
CREATE TABLE key_fingerprints (
    name        TEXT PRIMARY KEY NOT NULL,
    fingerprint TEXT NOT NULL
) WITHOUT ROWID;

-- API keys: only a SHA-256 digest of each key; a rotation keeps the previous
-- digest (old_digest) working until old_until. Times are unix seconds.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,                            -- the key's first 12 characters
    digest       TEXT NOT NULL UNIQUE,                     -- SHA-256 hex of the key
    scopes       TEXT NOT NULL,                            -- permission names, space-separated
    rate_limit   TEXT NOT NULL,                            -- N/second|minute|hour
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    rotated_at   INTEGER,
    old_digest   TEXT UNIQUE,
    old_until    INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    last_used_ip TEXT,
    total_requests INTEGER NOT NULL DEFAULT 0                -- every request made with the key
);

CREATE INDEX api_keys_user ON api_keys (user_id, created_at);

-- Requests made with each key per UTC day (the Julian day number), added in
-- batches by the server; kept for 30 days.
CREATE TABLE api_key_usage (
    key_id   TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    day      INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    denied   INTEGER NOT NULL,                                -- answered 401, 403 or 429
    PRIMARY KEY (key_id, day)
) WITHOUT ROWID;

CREATE INDEX api_key_usage_day ON api_key_usage (day);
