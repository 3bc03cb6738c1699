-- Migration 6: API key usage. The server tallies each key's requests in
-- memory and adds them here in batches: a running total on the key, and one
-- row per key and UTC day (the Julian day number), kept for 30 days.

ALTER TABLE api_keys ADD COLUMN total_requests INTEGER NOT NULL DEFAULT 0;

CREATE TABLE api_key_usage (
    key_id   TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    day      INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    denied   INTEGER NOT NULL,
    PRIMARY KEY (key_id, day)
) WITHOUT ROWID;

CREATE INDEX api_key_usage_day ON api_key_usage (day);
