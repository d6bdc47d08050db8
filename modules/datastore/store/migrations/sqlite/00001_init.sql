-- The data store's tables: a projection of the event log (package store).
-- Times are microseconds since the Unix epoch (UTC), NULL when unset, so
-- both dialects store and return exactly the same values. Booleans are 0/1.

-- +goose Up
CREATE TABLE meta (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    last_applied INTEGER NOT NULL -- the Seq of the last event applied
) STRICT;
INSERT INTO meta (id, last_applied) VALUES (1, 0);

CREATE TABLE repos (
    name           TEXT PRIMARY KEY,
    url            TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    poll_seconds   INTEGER NOT NULL,
    webhook_secret TEXT,              -- sealed; NULL: none
    created_at     INTEGER NOT NULL,
    last_build     INTEGER NOT NULL   -- the highest build number triggered
) STRICT;

CREATE TABLE builds (
    repo             TEXT NOT NULL REFERENCES repos (name) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    status           TEXT NOT NULL,
    ref              TEXT NOT NULL,
    commit_id        TEXT NOT NULL,
    params           TEXT,             -- JSON object; NULL: none
    event            TEXT NOT NULL,
    user_name        TEXT NOT NULL,
    retry_of         INTEGER NOT NULL,
    error            TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    cancel_requested INTEGER NOT NULL,
    PRIMARY KEY (repo, number)
) STRICT;
CREATE INDEX builds_repo_status ON builds (repo, status, number DESC);

CREATE TABLE jobs (
    repo        TEXT NOT NULL,
    build       INTEGER NOT NULL,
    id          TEXT NOT NULL,
    position    INTEGER NOT NULL,     -- pipeline order, from 0
    status      TEXT NOT NULL,
    depends_on  TEXT,                 -- JSON array; NULL: none
    manual      INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    runner_id   TEXT NOT NULL,
    lease_id    TEXT NOT NULL,        -- hex; '': none
    started_at  INTEGER,
    finished_at INTEGER,
    exit_code   INTEGER,
    reason      TEXT NOT NULL,
    PRIMARY KEY (repo, build, id),
    FOREIGN KEY (repo, build) REFERENCES builds (repo, number) ON DELETE CASCADE
) STRICT;
CREATE UNIQUE INDEX jobs_position ON jobs (repo, build, position);

CREATE TABLE secrets (
    repo       TEXT NOT NULL REFERENCES repos (name) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,         -- sealed
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, name)
) STRICT;

CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    scope      TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,  -- contracts.TokenHash
    created_at INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE tokens;
DROP TABLE secrets;
DROP TABLE jobs;
DROP TABLE builds;
DROP TABLE repos;
DROP TABLE meta;
