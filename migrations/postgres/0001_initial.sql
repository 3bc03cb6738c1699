-- Migration 1 (PostgreSQL): the schema as of secure-api's first PostgreSQL
-- release, the SQLite schema at version 6 in PostgreSQL's types.

CREATE TABLE users (
    id                 text PRIMARY KEY,                   -- random UUID
    username           text NOT NULL,
    email              text NOT NULL UNIQUE,               -- trimmed, lower-cased
    full_name          text,
    password_hash      text NOT NULL,                      -- Argon2id PHC string
    role               text NOT NULL CHECK (role IN ('admin', 'moderator', 'user', 'viewer')),
    is_active          boolean NOT NULL DEFAULT true,
    -- Bumped by password change, role change, deactivation and logout-all:
    -- every access token carries the value it was issued under.
    token_version      bigint NOT NULL DEFAULT 0,
    failed_login_count bigint NOT NULL DEFAULT 0,
    locked_until       bigint,                             -- unix seconds
    created_at         text NOT NULL,                      -- RFC 3339 UTC
    updated_at         text NOT NULL,
    -- Two-factor authentication: set means on. Sealed with the data key and
    -- bound to the account id; never stored in clear.
    totp_secret        bytea,
    totp_pending       bytea,                              -- a setup awaiting its first code
    totp_last_step     bigint                              -- newest accepted step: no replays
);

-- Usernames are unique whatever their case (SQLite: COLLATE NOCASE).
CREATE UNIQUE INDEX users_username ON users (lower(username));
CREATE INDEX users_role ON users (role);

-- Keyed hashes (HMAC under the data key) of unused backup codes.
CREATE TABLE backup_codes (
    user_id   text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash text NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

-- One row per login: rotation never extends expires_at.
CREATE TABLE refresh_families (
    id             text PRIMARY KEY,
    user_id        text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     bigint NOT NULL,
    expires_at     bigint NOT NULL,
    revoked_at     bigint,
    revoked_reason text,
    last_used_at   bigint,                                 -- login or latest refresh
    client_ip      text,                                   -- of the login
    user_agent     text                                    -- of the login, at most 200 characters
);

CREATE INDEX refresh_families_user ON refresh_families (user_id);
-- Housekeeping deletes expired families (and, through them, their tokens).
CREATE INDEX refresh_families_expiry ON refresh_families (expires_at);

CREATE TABLE refresh_tokens (
    jti         text PRIMARY KEY,
    family_id   text NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    issued_at   bigint NOT NULL,
    expires_at  bigint NOT NULL,
    consumed_at bigint,                                    -- unix milliseconds, set when rotated
    replaced_by text                                       -- the jti issued in its place
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- Audit rows outlive the users they mention: no foreign key on user_id.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at text NOT NULL,
    event       text NOT NULL,
    user_id     text,
    client_ip   text,
    request_id  text,
    detail      text NOT NULL DEFAULT '{}'                 -- JSON object
);

CREATE INDEX audit_log_event ON audit_log (event, id);
CREATE INDEX audit_log_user ON audit_log (user_id, id);
-- Also what audit retention deletes by.
CREATE INDEX audit_log_time ON audit_log (occurred_at);

-- Runtime settings changed through /api/v1/admin/config.
CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- The fingerprint of each key that sealed something here (the data key):
-- starting with another key is refused while sealed secrets exist.
CREATE TABLE key_fingerprints (
    name        text PRIMARY KEY,
    fingerprint text NOT NULL
);

-- API keys: only a SHA-256 digest of each key; a rotation keeps the previous
-- digest (old_digest) working until old_until. Times are unix seconds.
CREATE TABLE api_keys (
    id             text PRIMARY KEY,
    user_id        text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           text NOT NULL,
    prefix         text NOT NULL,                          -- the key's first 12 characters
    digest         text NOT NULL UNIQUE,                   -- SHA-256 hex of the key
    scopes         text NOT NULL,                          -- permission names, space-separated
    rate_limit     text NOT NULL,                          -- N/second|minute|hour
    created_at     bigint NOT NULL,
    expires_at     bigint NOT NULL,
    rotated_at     bigint,
    old_digest     text UNIQUE,
    old_until      bigint,
    revoked_at     bigint,
    last_used_at   bigint,
    last_used_ip   text,
    total_requests bigint NOT NULL DEFAULT 0               -- every request made with the key
);

CREATE INDEX api_keys_user ON api_keys (user_id, created_at);

-- Requests made with each key per UTC day (the Julian day number), added in
-- batches by every node; kept for 30 days.
CREATE TABLE api_key_usage (
    key_id   text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    day      integer NOT NULL,
    requests bigint NOT NULL,
    denied   bigint NOT NULL,                              -- answered 401, 403 or 429
    PRIMARY KEY (key_id, day)
);

CREATE INDEX api_key_usage_day ON api_key_usage (day);
