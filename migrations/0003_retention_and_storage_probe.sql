-- Migration 3: housekeeping deletes expired refresh tokens and families and
-- old audit rows in small batches, each found through an index rather than
-- a table scan (audit rows already have audit_log_time); and the readiness
-- probe gets a table of its own to find out whether a write of a few pages
-- commits again after the storage failed (it always leaves the table empty).

CREATE INDEX refresh_families_expiry ON refresh_families (expires_at);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

CREATE TABLE storage_probe (
    id     INTEGER PRIMARY KEY,
    filler BLOB NOT NULL
);
