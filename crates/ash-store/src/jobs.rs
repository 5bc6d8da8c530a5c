//! The job records of one `$ASH_HOME` (`jobs.db`): one row per job and side, holding the
//! side's state name and its record (JSON the caller owns), and the progress steps the
//! requester received. Each write is one transaction, so a killed process finds every job as
//! its last completed step left it.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, params};

/// The jobs file's schema version (`PRAGMA user_version`).
pub const JOBS_SCHEMA: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('requester', 'acceptor')),
    state TEXT NOT NULL,
    record TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (id, side)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (side, state);
CREATE TABLE IF NOT EXISTS steps (
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    step TEXT NOT NULL,
    PRIMARY KEY (id, seq)
);
";

/// Why the jobs file failed.
#[derive(Debug, thiserror::Error)]
pub enum JobsDbError {
    /// SQLite failed.
    #[error("{path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The directory could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is of another schema version (a newer ash, or not a jobs file).
    #[error(
        "{path} is a jobs file of schema version {found}, and this ash reads version {JOBS_SCHEMA}: use the ash that wrote it"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
}

/// One stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// The job id.
    pub id: String,
    /// `requester` or `acceptor`.
    pub side: String,
    /// The state's name.
    pub state: String,
    /// The record (JSON).
    pub record: String,
    /// When it was first written (ms since the Unix epoch).
    pub created: u64,
    /// When it was last written.
    pub updated: u64,
}

/// The jobs file.
#[derive(Debug)]
pub struct JobsDb {
    conn: Connection,
    path: PathBuf,
}

impl JobsDb {
    /// Opens (creating if needed) the jobs file at `path`, closed to other local users.
    pub fn open(path: &Path) -> Result<Self, JobsDbError> {
        let err = |source| JobsDbError::Sqlite { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| JobsDbError::Io { path: dir.to_owned(), source })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
            .map_err(err)?;
        if version != JOBS_SCHEMA && (version != 0 || tables > 0) {
            return Err(JobsDbError::Version { path: path.to_owned(), found: version.max(1) });
        }
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute_batch(&format!("PRAGMA user_version = {JOBS_SCHEMA}")).map_err(err)?;
        Ok(Self { conn, path: path.to_owned() })
    }

    fn err(&self, source: rusqlite::Error) -> JobsDbError {
        JobsDbError::Sqlite { path: self.path.clone(), source }
    }

    /// Writes a job's state and record (creating the row), at time `now`.
    pub fn put(
        &self,
        id: &str,
        side: &str,
        state: &str,
        record: &str,
        now: u64,
    ) -> Result<(), JobsDbError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        self.conn
            .execute(
                "INSERT INTO jobs (id, side, state, record, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (id, side) DO UPDATE SET
                    state = excluded.state, record = excluded.record, updated = excluded.updated",
                params![id, side, state, record, now],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// One job of one side.
    pub fn get(&self, id: &str, side: &str) -> Result<Option<JobRow>, JobsDbError> {
        self.conn
            .query_row(
                "SELECT id, side, state, record, created, updated FROM jobs
                 WHERE id = ?1 AND side = ?2",
                params![id, side],
                row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every job, newest first (at most `limit`), of one side or both.
    pub fn list(&self, side: Option<&str>, limit: usize) -> Result<Vec<JobRow>, JobsDbError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, side, state, record, created, updated FROM jobs
                 WHERE ?1 IS NULL OR side = ?1 ORDER BY created DESC, id LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        statement
            .query_map(params![side, limit], row)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    /// The jobs of one side in one of `states` (unfinished ones, for the periodic work),
    /// oldest first.
    pub fn in_states(&self, side: &str, states: &[&str]) -> Result<Vec<JobRow>, JobsDbError> {
        let mut out = Vec::new();
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, side, state, record, created, updated FROM jobs
                 WHERE side = ?1 AND state = ?2 ORDER BY created, id",
            )
            .map_err(|e| self.err(e))?;
        for state in states {
            let rows = statement
                .query_map(params![side, state], row)
                .map_err(|e| self.err(e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.err(e))?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// Stores progress steps of a job from position `from` on; steps held already are kept.
    pub fn add_steps(&self, id: &str, from: u64, steps: &[String]) -> Result<(), JobsDbError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        for (i, step) in steps.iter().enumerate() {
            let seq = i64::try_from(from.saturating_add(i as u64)).unwrap_or(i64::MAX);
            tx.execute(
                "INSERT OR IGNORE INTO steps (id, seq, step) VALUES (?1, ?2, ?3)",
                params![id, seq, step],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The progress steps held for a job, in order.
    pub fn steps(&self, id: &str) -> Result<Vec<String>, JobsDbError> {
        let mut statement = self
            .conn
            .prepare("SELECT step FROM steps WHERE id = ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        statement
            .query_map(params![id], |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.err(e))
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    let created: i64 = r.get(4)?;
    let updated: i64 = r.get(5)?;
    Ok(JobRow {
        id: r.get(0)?,
        side: r.get(1)?,
        state: r.get(2)?,
        record: r.get(3)?,
        created: created.unsigned_abs(),
        updated: updated.unsigned_abs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_kept_per_side_found_by_state_and_a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        let db = JobsDb::open(&path).unwrap();
        db.put("a", "requester", "running", "{}", 1).unwrap();
        db.put("a", "acceptor", "delivered", "{\"x\":1}", 2).unwrap();
        db.put("b", "requester", "decided", "{}", 3).unwrap();
        // A step rewrites the row, keeping when it was made.
        db.put("a", "requester", "received", "{\"y\":2}", 4).unwrap();
        let got = db.get("a", "requester").unwrap().unwrap();
        assert_eq!(
            (got.state.as_str(), got.record.as_str(), got.created, got.updated),
            ("received", "{\"y\":2}", 1, 4)
        );
        let open: Vec<String> = db
            .in_states("requester", &["received", "running"])
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(open, ["a"]);
        let all: Vec<(String, String)> =
            db.list(None, 10).unwrap().into_iter().map(|r| (r.id, r.side)).collect();
        assert_eq!(
            all,
            [
                ("b".to_owned(), "requester".to_owned()),
                ("a".to_owned(), "acceptor".to_owned()),
                ("a".to_owned(), "requester".to_owned())
            ]
        );
        // Steps are kept once per position: a repeat changes nothing.
        db.add_steps("a", 0, &["s0".into(), "s1".into()]).unwrap();
        db.add_steps("a", 1, &["other".into(), "s2".into()]).unwrap();
        assert_eq!(db.steps("a").unwrap(), ["s0", "s1", "s2"]);
        drop(db);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 9").unwrap();
        drop(conn);
        assert!(matches!(JobsDb::open(&path), Err(JobsDbError::Version { found: 9, .. })));
    }
}
