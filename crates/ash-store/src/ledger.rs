//! `LedgerDb`: the verified ledger in SQLite (format 2).
//!
//! Holds only what a [`Verifier`] accepted: entries whose author signature, network and place in
//! their log were checked, each with its verdict (written once, when it is reached, and never
//! changed after), the checkpoints that count, and a bounded quarantine of entries waiting for
//! their predecessor. A summary per identity (balance, head, counts) is kept current on every
//! write, so `ash status` reads one row instead of re-verifying anything.

use std::path::{Path, PathBuf};

use ash_identity::NodeId;
use ash_ledger::{Account, Balance, Checkpoint, Credits, Entry, Genesis, Hash, Verdict, Verifier};
use rusqlite::{Connection, OptionalExtension as _, params};

/// The ledger file's schema version (`PRAGMA user_version`).
const LEDGER_SCHEMA: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
-- Rows in the order they arrive (rowid), so that storing a batch appends to the table and
-- only the id index takes writes at random places.
CREATE TABLE IF NOT EXISTS entries (
    id BLOB NOT NULL UNIQUE,
    author BLOB NOT NULL,
    seq INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    verdict TEXT,
    detail TEXT,
    received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_log ON entries (author, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    subject BLOB PRIMARY KEY,
    seq INTEGER NOT NULL,
    bytes BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    id BLOB PRIMARY KEY,
    bytes BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts (
    id BLOB PRIMARY KEY,
    username TEXT,
    entries INTEGER NOT NULL,
    valid INTEGER NOT NULL,
    refused INTEGER NOT NULL,
    head BLOB,
    head_seq INTEGER,
    received INTEGER NOT NULL,
    earned INTEGER NOT NULL,
    paid INTEGER NOT NULL,
    locked INTEGER NOT NULL,
    spendable INTEGER NOT NULL,
    authority INTEGER NOT NULL,
    frozen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_verdict_once BEFORE UPDATE ON entries
    WHEN OLD.verdict IS NOT NULL OR NEW.bytes IS NOT OLD.bytes OR NEW.id IS NOT OLD.id
        OR NEW.author IS NOT OLD.author OR NEW.seq IS NOT OLD.seq
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only; a verdict is written once'); END;
CREATE TRIGGER IF NOT EXISTS meta_no_update BEFORE UPDATE ON meta
    BEGIN SELECT RAISE(ABORT, 'the ledger''s network never changes'); END;
";

/// Format 2 kept entries in a table clustered by their (random) id, so every batch rewrote
/// pages all over it; format 3 keeps them in arrival order with a unique index on the id. The
/// rows are copied in one transaction (with the triggers of format 2 out of the way, and back
/// with the schema that follows).
const MIGRATE_2_TO_3: &str = "
BEGIN;
DROP TRIGGER IF EXISTS entries_no_delete;
DROP TRIGGER IF EXISTS entries_verdict_once;
DROP INDEX IF EXISTS entries_by_log;
ALTER TABLE entries RENAME TO entries_format_2;
CREATE TABLE entries (
    id BLOB NOT NULL UNIQUE,
    author BLOB NOT NULL,
    seq INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    verdict TEXT,
    detail TEXT,
    received_at INTEGER NOT NULL
);
INSERT INTO entries (id, author, seq, bytes, verdict, detail, received_at)
    SELECT id, author, seq, bytes, verdict, detail, received_at FROM entries_format_2
    ORDER BY received_at, author, seq;
DROP TABLE entries_format_2;
PRAGMA user_version = 3;
COMMIT;
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
    /// The file is of another format version.
    #[error(
        "{}: ledger format {found}; this ash reads format {LEDGER_SCHEMA}{hint}",
        path.display(),
        hint = if *found < LEDGER_SCHEMA {
            " (format 1 ledgers are not carried over: move the file aside, join the network again \
             with `ash join --genesis FILE`, and import its bundles)"
        } else {
            " (written by a newer ash)"
        }
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// The file belongs to another network.
    #[error(
        "{}: this ledger belongs to network {stored}, not {wanted} (the genesis in use); \
         keep one ledger per network",
        path.display()
    )]
    Network {
        /// The file.
        path: PathBuf,
        /// The network it holds.
        stored: Hash,
        /// The network asked for.
        wanted: Hash,
    },
    /// A stored record no longer decodes (the file was damaged outside ash).
    #[error("{}: a stored {what} is damaged: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What kind of record.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// What [`LedgerDb::save`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    /// Entries stored for the first time.
    pub new: u64,
    /// Stored entries whose verdict was reached now.
    pub judged: u64,
    /// Entries in quarantine.
    pub quarantined: u64,
}

/// One stored entry and its verdict (`None` while pending).
#[derive(Clone, Debug)]
pub struct StoredEntry {
    /// The entry.
    pub entry: Entry,
    /// `valid`, a refusal's rule name, or `None` while pending.
    pub verdict: Option<String>,
}

/// The verified ledger file.
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
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
            .map_err(err)?;
        if version != LEDGER_SCHEMA && version != 2 && (version != 0 || tables > 0) {
            return Err(LedgerDbError::Version { path: path.to_owned(), found: version.max(1) });
        }
        // A 32 MiB page cache: replication writes into the id index at random places.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -32768;",
        )
        .map_err(err)?;
        if version == 2 {
            conn.execute_batch(MIGRATE_2_TO_3).map_err(err)?;
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute_batch(&format!("PRAGMA user_version = {LEDGER_SCHEMA}")).map_err(err)?;
        Ok(Self { conn, path: path.to_owned() })
    }

    fn err(&self, source: rusqlite::Error) -> LedgerDbError {
        LedgerDbError::Sqlite { path: self.path.clone(), source }
    }

    fn damaged(&self, what: &'static str, reason: impl std::fmt::Display) -> LedgerDbError {
        LedgerDbError::Damaged { path: self.path.clone(), what, reason: reason.to_string() }
    }

    /// A number that changes whenever another connection (another process) committed to the
    /// file since this one last looked (SQLite's `data_version`).
    pub fn data_version(&self) -> Result<u64, LedgerDbError> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(version.unsigned_abs())
    }

    /// The checkpoints stored (each subject's latest), as they were stored.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, LedgerDbError> {
        self.column("SELECT bytes FROM checkpoints", [])?
            .iter()
            .map(|bytes| Checkpoint::decode(bytes).map_err(|e| self.damaged("checkpoint", e)))
            .collect()
    }

    /// The network this ledger holds (`None` until something was saved).
    pub fn network(&self) -> Result<Option<Hash>, LedgerDbError> {
        let value: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'network'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        value
            .map(|v| {
                <[u8; 32]>::try_from(v.as_slice())
                    .map(Hash)
                    .map_err(|_| self.damaged("network id", "not 32 bytes"))
            })
            .transpose()
    }

    fn check_network(&self, genesis: &Genesis) -> Result<(), LedgerDbError> {
        match self.network()? {
            Some(stored) if stored != genesis.id() => Err(LedgerDbError::Network {
                path: self.path.clone(),
                stored,
                wanted: genesis.id(),
            }),
            _ => Ok(()),
        }
    }

    /// A verifier holding everything stored, for `genesis`'s network at the clock `now`.
    /// Stored entries were signature-checked before they were stored, so loading checks no
    /// signature; the rules run again (verdicts are a function of the entries, so they agree
    /// with the stored ones).
    pub fn load(&self, genesis: Genesis, now: u64) -> Result<Verifier, LedgerDbError> {
        self.check_network(&genesis)?;
        let mut verifier = Verifier::new(genesis, now);
        for bytes in self.column("SELECT bytes FROM checkpoints", [])? {
            let checkpoint =
                Checkpoint::decode(&bytes).map_err(|e| self.damaged("checkpoint", e))?;
            verifier.add_checkpoint(checkpoint).map_err(|e| self.damaged("checkpoint", e))?;
        }
        // Entries stored as pending may be judged now (the clock moved on, a checkpoint vouches
        // for them), and quarantined ones placed: the next save writes them.
        let mut entries = Vec::new();
        let mut pending = std::collections::HashSet::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT bytes, verdict IS NULL FROM entries ORDER BY author, seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, bool>(1)?)))
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (bytes, unjudged) = row.map_err(|e| self.err(e))?;
            let entry = Entry::decode(&bytes).map_err(|e| self.damaged("entry", e))?;
            if unjudged {
                pending.insert(entry.id());
            }
            entries.push(entry);
        }
        let mut quarantined = std::collections::HashSet::new();
        for bytes in self.column("SELECT bytes FROM quarantine", [])? {
            let entry = Entry::decode(&bytes).map_err(|e| self.damaged("entry", e))?;
            quarantined.insert(entry.id());
            entries.push(entry);
        }
        verifier.insert_many_checked(entries);
        let reached: Vec<Hash> = verifier
            .take_changed()
            .into_iter()
            .filter(|(e, v)| {
                quarantined.contains(&e.id())
                    || (!matches!(v, Verdict::Pending { .. }) && pending.contains(&e.id()))
            })
            .map(|(e, _)| e.id())
            .collect();
        verifier.mark_changed(reached);
        Ok(verifier)
    }

    /// Writes what `verifier` placed or judged since it was loaded (or last saved), its
    /// quarantine and checkpoints, and the summaries of the identities concerned. One
    /// transaction.
    pub fn save(
        &mut self,
        verifier: &mut Verifier,
        received_at: u64,
    ) -> Result<Saved, LedgerDbError> {
        let path = self.path.clone();
        let err = |source| LedgerDbError::Sqlite { path: path.clone(), source };
        let network = verifier.genesis().id();
        let changed = verifier.take_changed();
        let mut touched: Vec<NodeId> = changed.iter().map(|(e, _)| e.author).collect();
        touched.sort_unstable();
        touched.dedup();
        let tx = self.conn.transaction().map_err(err)?;
        let mut saved = Saved::default();
        {
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('network', ?1)",
                [network.0.as_slice()],
            )
            .map_err(err)?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO entries (id, author, seq, bytes, verdict, detail, received_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err)?;
            let mut judge = tx
                .prepare_cached(
                    "UPDATE entries SET verdict = ?2, detail = ?3 WHERE id = ?1 AND verdict IS NULL",
                )
                .map_err(err)?;
            let time = i64::try_from(received_at).unwrap_or(i64::MAX);
            for (entry, verdict) in &changed {
                let (name, detail) = verdict_columns(verdict);
                let seq = i64::try_from(entry.seq).unwrap_or(i64::MAX);
                let id = entry.id().0;
                let added = insert
                    .execute(params![
                        id.as_slice(),
                        entry.author.as_bytes().as_slice(),
                        seq,
                        entry.bytes(),
                        name,
                        detail,
                        time
                    ])
                    .map_err(err)?;
                if added > 0 {
                    saved.new += 1;
                } else if name.is_some() {
                    saved.judged +=
                        judge.execute(params![id.as_slice(), name, detail]).map_err(err)? as u64;
                }
            }
            tx.execute("DELETE FROM quarantine", []).map_err(err)?;
            let mut orphan = tx
                .prepare_cached("INSERT OR IGNORE INTO quarantine (id, bytes) VALUES (?1, ?2)")
                .map_err(err)?;
            for entry in verifier.quarantined() {
                orphan.execute(params![entry.id().0.as_slice(), entry.bytes()]).map_err(err)?;
                saved.quarantined += 1;
            }
            let mut checkpoint = tx
                .prepare_cached(
                    "INSERT INTO checkpoints (subject, seq, bytes) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (subject) DO UPDATE SET seq = excluded.seq, bytes = excluded.bytes \
                     WHERE excluded.seq > checkpoints.seq",
                )
                .map_err(err)?;
            for c in verifier.checkpoints() {
                let seq = i64::try_from(c.seq).unwrap_or(i64::MAX);
                checkpoint
                    .execute(params![c.subject.as_bytes().as_slice(), seq, c.to_bytes()])
                    .map_err(err)?;
            }
            let mut account = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO accounts (id, username, entries, valid, refused, head, \
                     head_seq, received, earned, paid, locked, spendable, authority, frozen) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(err)?;
            for id in touched {
                let a = verifier.account(id);
                let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                let b = a.balance;
                account
                    .execute(params![
                        id.as_bytes().as_slice(),
                        a.username,
                        n(a.entries),
                        n(a.valid),
                        n(a.refused),
                        a.head.map(|h| h.0.to_vec()),
                        a.head_seq.map(n),
                        n(b.received.get()),
                        n(b.earned.get()),
                        n(b.paid.get()),
                        n(b.locked.get()),
                        n(b.spendable.get()),
                        a.authority,
                        a.frozen,
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(saved)
    }

    /// The stored summary of one identity, as of the last save.
    pub fn account(&self, id: NodeId) -> Result<Option<Account>, LedgerDbError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT username, entries, valid, refused, head, head_seq, received, earned, paid, \
                 locked, spendable, authority, frozen FROM accounts WHERE id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let row = stmt
            .query_row([id.as_bytes().as_slice()], |r| {
                let u = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                let head: Option<Vec<u8>> = r.get(4)?;
                Ok(Account {
                    id,
                    username: r.get(0)?,
                    entries: u(1)?,
                    valid: u(2)?,
                    refused: u(3)?,
                    head: head.and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok()).map(Hash),
                    head_seq: r.get::<_, Option<i64>>(5)?.map(|v| u64::try_from(v).unwrap_or(0)),
                    balance: Balance {
                        received: Credits::new(u(6)?),
                        earned: Credits::new(u(7)?),
                        paid: Credits::new(u(8)?),
                        locked: Credits::new(u(9)?),
                        spendable: Credits::new(u(10)?),
                    },
                    authority: r.get(11)?,
                    frozen: r.get(12)?,
                })
            })
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(row)
    }

    /// One identity's stored entries by position (every variant at a fork), with verdicts.
    pub fn log(&self, author: NodeId) -> Result<Vec<StoredEntry>, LedgerDbError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT bytes, verdict FROM entries WHERE author = ?1 ORDER BY seq, id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([author.as_bytes().as_slice()], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (bytes, verdict) = row.map_err(|e| self.err(e))?;
            let entry = Entry::decode(&bytes).map_err(|e| self.damaged("entry", e))?;
            out.push(StoredEntry { entry, verdict });
        }
        Ok(out)
    }

    /// A stored entry by id.
    pub fn entry(&self, id: Hash) -> Result<Option<StoredEntry>, LedgerDbError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT bytes, verdict FROM entries WHERE id = ?1")
            .map_err(|e| self.err(e))?;
        let row = stmt
            .query_row([id.0.as_slice()], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(bytes, verdict)| {
            Entry::decode(&bytes)
                .map(|entry| StoredEntry { entry, verdict })
                .map_err(|e| self.damaged("entry", e))
        })
        .transpose()
    }

    /// Every stored entry (authors in byte order, each log by position), and the checkpoints.
    pub fn export(&self) -> Result<(Vec<Entry>, Vec<Checkpoint>), LedgerDbError> {
        let mut entries = Vec::new();
        for bytes in self.column("SELECT bytes FROM entries ORDER BY author, seq, id", [])? {
            entries.push(Entry::decode(&bytes).map_err(|e| self.damaged("entry", e))?);
        }
        let mut checkpoints = Vec::new();
        for bytes in self.column("SELECT bytes FROM checkpoints ORDER BY subject", [])? {
            checkpoints
                .push(Checkpoint::decode(&bytes).map_err(|e| self.damaged("checkpoint", e))?);
        }
        Ok((entries, checkpoints))
    }

    fn column<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
    ) -> Result<Vec<Vec<u8>>, LedgerDbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params, |r| r.get::<_, Vec<u8>>(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

fn verdict_columns(verdict: &Verdict) -> (Option<String>, Option<String>) {
    match verdict {
        Verdict::Valid => (Some("valid".into()), None),
        Verdict::Refused { rule, detail } => (Some(rule.name().into()), Some(detail.clone())),
        Verdict::Pending { .. } => (None, None),
    }
}
