-- Alerts an experiment raised (a harmed guardrail metric, a sample ratio
-- mismatch), one per finding and phase: recording the same finding again
-- changes nothing.
CREATE TABLE experiment_alerts (
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    experiment  TEXT NOT NULL,
    phase       INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    metric      TEXT NOT NULL,
    variation   TEXT NOT NULL,
    message     TEXT NOT NULL,
    action      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (project, environment, experiment, phase, kind, metric, variation),
    FOREIGN KEY (project, environment, experiment) REFERENCES experiments (project, environment, key) ON DELETE CASCADE
);
