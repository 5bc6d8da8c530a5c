-- What moves with a run between nodes: contents by SHA-256, and each run's manifests.
CREATE TABLE IF NOT EXISTS blobs (
    hash TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    run_id TEXT NOT NULL,
    area TEXT NOT NULL,
    manifest TEXT NOT NULL,
    PRIMARY KEY (run_id, area)
) WITHOUT ROWID;
