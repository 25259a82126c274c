-- The experiment lifecycle: a `paused` status; the phase (0 for the first
-- phase, a restart adds one); the assignment salt of a phase restarted with a
-- fresh randomisation (NULL: the experiment key, the frozen default); and
-- the exposure attribute its results are broken down by (NULL: none).
ALTER TABLE experiments DROP CONSTRAINT experiments_status_check;
ALTER TABLE experiments ADD CONSTRAINT experiments_status_check
    CHECK (status IN ('draft', 'running', 'paused', 'stopped'));
ALTER TABLE experiments ADD COLUMN phase BIGINT NOT NULL DEFAULT 0;
ALTER TABLE experiments ADD COLUMN salt TEXT;
ALTER TABLE experiments ADD COLUMN breakdown_by TEXT;
