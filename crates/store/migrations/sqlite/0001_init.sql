-- Switchyard config store, SQLite. Keep in step with ../postgres/0001_init.sql:
-- same tables, columns and constraints. Only integers and text are used
-- (booleans are 0/1), so that one set of queries reads both backends.
-- Structured parts (variations, rules, ...) are JSON text.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row: the store's change counter. Every write transaction bumps it
-- first, which also serialises writers.
CREATE TABLE revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 0);

CREATE TABLE projects (
    key        TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    version    INTEGER NOT NULL,
    revision   INTEGER NOT NULL
);

CREATE TABLE environments (
    project    TEXT NOT NULL REFERENCES projects (key) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    PRIMARY KEY (project, key)
);

CREATE TABLE flags (
    project     TEXT NOT NULL REFERENCES projects (key) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    flag_type   TEXT NOT NULL,
    variations  TEXT NOT NULL,
    tags        TEXT NOT NULL,
    archived    INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (project, key)
);

CREATE TABLE flag_settings (
    project     TEXT NOT NULL,
    flag        TEXT NOT NULL,
    environment TEXT NOT NULL,
    settings    TEXT NOT NULL,
    PRIMARY KEY (project, flag, environment),
    FOREIGN KEY (project, flag) REFERENCES flags (project, key) ON DELETE CASCADE,
    FOREIGN KEY (project, environment) REFERENCES environments (project, key) ON DELETE CASCADE
);

CREATE TABLE segments (
    project     TEXT NOT NULL REFERENCES projects (key) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    included    TEXT NOT NULL,
    excluded    TEXT NOT NULL,
    rules       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (project, key)
);

CREATE TABLE experiments (
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    key         TEXT NOT NULL,
    flag        TEXT NOT NULL,
    name        TEXT NOT NULL,
    hypothesis  TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('draft', 'running', 'stopped')),
    variations  TEXT NOT NULL,
    coverage    INTEGER NOT NULL,
    bucket_by   TEXT NOT NULL,
    conditions  TEXT NOT NULL,
    layer       TEXT,
    holdouts    TEXT NOT NULL,
    winner      TEXT,
    metrics     TEXT NOT NULL,
    started_at  TEXT,
    stopped_at  TEXT,
    version     INTEGER NOT NULL,
    PRIMARY KEY (project, environment, key),
    FOREIGN KEY (project, environment) REFERENCES environments (project, key) ON DELETE CASCADE
);

CREATE TABLE holdouts (
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    key         TEXT NOT NULL,
    size        INTEGER NOT NULL,
    bucket_by   TEXT NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (project, environment, key),
    FOREIGN KEY (project, environment) REFERENCES environments (project, key) ON DELETE CASCADE
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('admin', 'server', 'client')),
    role        TEXT,
    project     TEXT REFERENCES projects (key) ON DELETE CASCADE,
    environment TEXT,
    secret_hash TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT,
    FOREIGN KEY (project, environment) REFERENCES environments (project, key) ON DELETE CASCADE
);

-- No foreign keys: the log outlives what it describes.
CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_kind TEXT NOT NULL,
    project       TEXT,
    resource_key  TEXT NOT NULL,
    before_value  TEXT,
    after_value   TEXT
);
CREATE INDEX audit_log_project ON audit_log (project, id);
CREATE INDEX audit_log_resource ON audit_log (resource_kind, resource_key, id);
