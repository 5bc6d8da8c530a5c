-- What moves with a run between nodes: contents by SHA-256, and each run's manifests.
CREATE TABLE blobs (
    hash TEXT PRIMARY KEY,
    data BYTEA NOT NULL
);
CREATE TABLE snapshots (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    area TEXT NOT NULL,
    manifest TEXT NOT NULL,
    PRIMARY KEY (run_id, area)
);
