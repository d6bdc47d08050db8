-- Trigger dedup keys: a webhook delivery id or a polled commit triggers
-- one build, however often it is sent (TriggerBuild.DedupKey).

-- +goose Up
CREATE TABLE build_dedup (
    repo   TEXT COLLATE "C" NOT NULL,
    key    TEXT COLLATE "C" NOT NULL,
    number BIGINT NOT NULL, -- the build the key made
    PRIMARY KEY (repo, key),
    FOREIGN KEY (repo, number) REFERENCES builds (repo, number) ON DELETE CASCADE
);

-- +goose Down
DROP TABLE build_dedup;
