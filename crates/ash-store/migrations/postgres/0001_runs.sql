-- Runs, their event logs and their journals, with lease epochs and payload formats.
CREATE TABLE ash_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    turns BIGINT NOT NULL,
    event_count BIGINT NOT NULL,
    journal_count BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires BIGINT,
    cancel_requested BOOLEAN NOT NULL,
    lease_epoch BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_status ON runs (status, updated_at);
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    idx BIGINT NOT NULL,
    event TEXT NOT NULL,
    format INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE journal (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    seq BIGINT NOT NULL,
    record TEXT NOT NULL,
    format INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, seq)
);
