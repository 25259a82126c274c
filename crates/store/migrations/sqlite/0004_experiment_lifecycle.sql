-- The experiment lifecycle: a `paused` status; the phase (0 for the first
-- phase, a restart adds one); the assignment salt of a phase restarted with a
-- fresh randomisation (NULL: the experiment key, the frozen default); and
-- the exposure attribute its results are broken down by (NULL: none).
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt
-- (nothing references it).
CREATE TABLE experiments_new (
    project      TEXT NOT NULL,
    environment  TEXT NOT NULL,
    key          TEXT NOT NULL,
    flag         TEXT NOT NULL,
    name         TEXT NOT NULL,
    hypothesis   TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('draft', 'running', 'paused', 'stopped')),
    variations   TEXT NOT NULL,
    coverage     INTEGER NOT NULL,
    bucket_by    TEXT NOT NULL,
    conditions   TEXT NOT NULL,
    layer        TEXT,
    holdouts     TEXT NOT NULL,
    winner       TEXT,
    metrics      TEXT NOT NULL,
    started_at   TEXT,
    stopped_at   TEXT,
    version      INTEGER NOT NULL,
    phase        INTEGER NOT NULL DEFAULT 0,
    salt         TEXT,
    breakdown_by TEXT,
    PRIMARY KEY (project, environment, key),
    FOREIGN KEY (project, environment) REFERENCES environments (project, key) ON DELETE CASCADE
);

INSERT INTO experiments_new (project, environment, key, flag, name, hypothesis, status,
    variations, coverage, bucket_by, conditions, layer, holdouts, winner, metrics,
    started_at, stopped_at, version)
SELECT project, environment, key, flag, name, hypothesis, status,
    variations, coverage, bucket_by, conditions, layer, holdouts, winner, metrics,
    started_at, stopped_at, version
FROM experiments;

DROP TABLE experiments;
ALTER TABLE experiments_new RENAME TO experiments;
