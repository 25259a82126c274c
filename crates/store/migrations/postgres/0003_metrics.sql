-- Metric definitions, per project (see crates/core/src/metric.rs). The
-- definition is JSON text; experiments refer to metrics by key (with a
-- role) in their `metrics` column, and a metric an experiment refers to
-- cannot be deleted.
CREATE TABLE metrics (
    project    TEXT NOT NULL REFERENCES projects (key) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    definition TEXT NOT NULL,
    version    BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project, key)
);
