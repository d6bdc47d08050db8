-- The data store's tables: a projection of the event log (package store).
-- Times are microseconds since the Unix epoch (UTC), NULL when unset, so
-- both dialects store and return exactly the same values. Names use the
-- "C" collation: byte order, as SQLite sorts and compares them.

-- +goose Up
CREATE TABLE meta (
    id           SMALLINT PRIMARY KEY CHECK (id = 1),
    last_applied BIGINT NOT NULL -- the Seq of the last event applied
);
INSERT INTO meta (id, last_applied) VALUES (1, 0);

CREATE TABLE repos (
    name           TEXT COLLATE "C" PRIMARY KEY,
    url            TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    poll_seconds   BIGINT NOT NULL,
    webhook_secret TEXT,              -- sealed; NULL: none
    created_at     BIGINT NOT NULL,
    last_build     BIGINT NOT NULL    -- the highest build number triggered
);

CREATE TABLE builds (
    repo             TEXT COLLATE "C" NOT NULL REFERENCES repos (name) ON DELETE CASCADE,
    number           BIGINT NOT NULL,
    status           TEXT NOT NULL,
    ref              TEXT NOT NULL,
    commit_id        TEXT NOT NULL,
    params           TEXT,             -- JSON object; NULL: none
    event            TEXT NOT NULL,
    user_name        TEXT NOT NULL,
    retry_of         BIGINT NOT NULL,
    error            TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    cancel_requested BOOLEAN NOT NULL,
    PRIMARY KEY (repo, number)
);
CREATE INDEX builds_repo_status ON builds (repo, status, number DESC);

CREATE TABLE jobs (
    repo        TEXT COLLATE "C" NOT NULL,
    build       BIGINT NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    position    INTEGER NOT NULL,     -- pipeline order, from 0
    status      TEXT NOT NULL,
    depends_on  TEXT,                 -- JSON array; NULL: none
    manual      BOOLEAN NOT NULL,
    attempt     INTEGER NOT NULL,
    runner_id   TEXT NOT NULL,
    lease_id    TEXT NOT NULL,        -- hex; '': none
    started_at  BIGINT,
    finished_at BIGINT,
    exit_code   INTEGER,
    reason      TEXT NOT NULL,
    PRIMARY KEY (repo, build, id),
    FOREIGN KEY (repo, build) REFERENCES builds (repo, number) ON DELETE CASCADE
);
CREATE UNIQUE INDEX jobs_position ON jobs (repo, build, position);

CREATE TABLE secrets (
    repo       TEXT COLLATE "C" NOT NULL REFERENCES repos (name) ON DELETE CASCADE,
    name       TEXT COLLATE "C" NOT NULL,
    value      TEXT NOT NULL,         -- sealed
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo, name)
);

CREATE TABLE tokens (
    name       TEXT COLLATE "C" PRIMARY KEY,
    scope      TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,  -- contracts.TokenHash
    created_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE tokens;
DROP TABLE secrets;
DROP TABLE jobs;
DROP TABLE builds;
DROP TABLE repos;
DROP TABLE meta;
