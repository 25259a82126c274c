-- People who sign in to the web UI, with a role overall (project NULL) or
-- in one project, as admin API keys have. Only an Argon2id hash of the
-- password is kept (PHC string). The email is stored normalised
-- (trimmed, lowercase), so UNIQUE makes it unique regardless of case.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    project       TEXT REFERENCES projects (key) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    disabled_at   TEXT
);

-- Browser sessions: only the SHA-256 of the session id (the cookie's
-- value) is kept. expires_unix (seconds) is what lookups compare.
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    expires_unix BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_unix);
