-- Migration 2: the refresh grace window is measured in milliseconds and
-- covers only a token's newest rotation, so a consumed token records when
-- (now in milliseconds) and by which token it was replaced.

UPDATE refresh_tokens SET consumed_at = consumed_at * 1000 WHERE consumed_at IS NOT NULL;
ALTER TABLE refresh_tokens ADD COLUMN replaced_by TEXT;
