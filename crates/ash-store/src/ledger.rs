//! `LedgerDb`: ledger entries in SQLite, append-only.

use std::path::{Path, PathBuf};

use ash_identity::NodeId;
use ash_ledger::Entry;
use rusqlite::{Connection, OptionalExtension as _, params};

/// The ledger file's schema version (`PRAGMA user_version`).
const LEDGER_SCHEMA: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    author BLOB NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    bytes BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (author, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conflicts (
    author BLOB NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    bytes BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (author, seq, hash)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS conflicts_no_update BEFORE UPDATE ON conflicts
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS conflicts_no_delete BEFORE DELETE ON conflicts
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
";

/// A ledger file that could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerDbError {
    /// SQLite failed.
    #[error("{}: {source}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The ledger's directory could not be created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is from a newer ash, or is not a ledger.
    #[error("{}: ledger schema version {found}; this ash reads version {LEDGER_SCHEMA}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// A stored entry no longer decodes (the file was damaged outside ash).
    #[error("{}: stored entry {seq} of {author} is damaged: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The log.
        author: String,
        /// The entry.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
}

/// What happened to an inserted entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored.
    New,
    /// The same entry was already stored.
    Known,
    /// A different entry was stored at this position: kept aside as an equivocation proof.
    Conflict,
}

/// The ledger file: every entry ever received, never changed or removed.
#[derive(Debug)]
pub struct LedgerDb {
    conn: Connection,
    path: PathBuf,
}

impl LedgerDb {
    /// Opens (creating if needed) the ledger file at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerDbError> {
        let err = |source| LedgerDbError::Sqlite { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| LedgerDbError::Io { path: dir.to_owned(), source })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
        if version > LEDGER_SCHEMA {
            return Err(LedgerDbError::Version { path: path.to_owned(), found: version });
        }
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute_batch(&format!("PRAGMA user_version = {LEDGER_SCHEMA}")).map_err(err)?;
        Ok(Self { conn, path: path.to_owned() })
    }

    fn err(&self, source: rusqlite::Error) -> LedgerDbError {
        LedgerDbError::Sqlite { path: self.path.clone(), source }
    }

    /// Stores `entries` as received (one transaction). A different entry at a stored position
    /// is kept as a conflict; nothing already stored is ever replaced.
    pub fn insert_all<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry>,
        received_at: u64,
    ) -> Result<Vec<Inserted>, LedgerDbError> {
        let path = self.path.clone();
        let err = |source| LedgerDbError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(err)?;
        let mut out = Vec::new();
        {
            let mut find = tx
                .prepare_cached("SELECT hash FROM entries WHERE author = ?1 AND seq = ?2")
                .map_err(err)?;
            let mut insert = tx
                .prepare_cached("INSERT INTO entries (author, seq, hash, bytes, received_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(err)?;
            let mut conflict = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO conflicts (author, seq, hash, bytes, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?;
            for entry in entries {
                let seq = i64::try_from(entry.seq).unwrap_or(i64::MAX);
                let author = entry.author.as_bytes().as_slice();
                let hash = entry.hash().0;
                let time = i64::try_from(received_at).unwrap_or(i64::MAX);
                let stored: Option<Vec<u8>> =
                    find.query_row(params![author, seq], |r| r.get(0)).optional().map_err(err)?;
                let outcome = match stored {
                    Some(h) if h == hash => Inserted::Known,
                    Some(_) => {
                        conflict
                            .execute(params![author, seq, hash.as_slice(), entry.bytes(), time])
                            .map_err(err)?;
                        Inserted::Conflict
                    }
                    None => {
                        insert
                            .execute(params![author, seq, hash.as_slice(), entry.bytes(), time])
                            .map_err(err)?;
                        Inserted::New
                    }
                };
                out.push(outcome);
            }
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Every stored entry (authors in byte order, each log oldest first), then every conflict.
    pub fn all(&self) -> Result<Vec<Entry>, LedgerDbError> {
        let mut entries =
            self.query("SELECT author, seq, bytes FROM entries ORDER BY author, seq", [])?;
        entries.extend(
            self.query("SELECT author, seq, bytes FROM conflicts ORDER BY author, seq, hash", [])?,
        );
        Ok(entries)
    }

    /// One identity's stored log, oldest first.
    pub fn log(&self, author: NodeId) -> Result<Vec<Entry>, LedgerDbError> {
        self.query(
            "SELECT author, seq, bytes FROM entries WHERE author = ?1 ORDER BY seq",
            [author.as_bytes().as_slice()],
        )
    }

    /// The newest stored entry of `author`'s log.
    pub fn last(&self, author: NodeId) -> Result<Option<Entry>, LedgerDbError> {
        Ok(self
            .query(
                "SELECT author, seq, bytes FROM entries WHERE author = ?1 ORDER BY seq DESC LIMIT 1",
                [author.as_bytes().as_slice()],
            )?
            .pop())
    }

    fn query<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
    ) -> Result<Vec<Entry>, LedgerDbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (author, seq, bytes) = row.map_err(|e| self.err(e))?;
            let entry = Entry::decode(&bytes).map_err(|e| LedgerDbError::Damaged {
                path: self.path.clone(),
                author: ash_identity::encode_hex(&author),
                seq,
                reason: e.to_string(),
            })?;
            out.push(entry);
        }
        Ok(out)
    }
}
