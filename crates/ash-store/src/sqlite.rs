//! `SqliteStore`: runs, journal and events in one SQLite file (WAL), every commit one
//! transaction.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ash_core::{
    Commit, Fence, JournalRecord, Lease, LeaseState, NewRun, PAYLOAD_FORMAT, RunRecord, Store,
    StoreError, StoreFuture, StoreHealth, add_usage, check_expect, check_fence,
    check_payload_format, lease_expiry, next_flags, now_ms, stamp_events,
};
use ash_protocol::{Event, RunStatus, Usage};
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use crate::row::{RUN_COLUMNS, i64_of, mode_from, status_from, u64_of};

/// Version of the schema this build writes: the last of its migrations
/// (`migrations/sqlite/`).
pub const SCHEMA_VERSION: i64 = crate::migrations::latest(crate::migrations::SQLITE);

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous = FULL`: a commit survives power loss once it returned.
    Full,
    /// `synchronous = NORMAL`: a commit survives a process crash; the last ones may be lost on
    /// power loss. Faster.
    Normal,
}

/// Why a store file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite refused the file.
    #[error("cannot open the store {path}: {reason}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's reason.
        reason: String,
    },
    /// The file cannot be written (disk full, read-only filesystem, permissions); it is not
    /// damaged and was left untouched.
    #[error(
        "cannot write the store {path}: {reason}; the file is intact and was left untouched — free disk space or make it writable, then start again"
    )]
    Unwritable {
        /// The file.
        path: PathBuf,
        /// SQLite's reason.
        reason: String,
    },
    /// The file is damaged or not a store; it was left untouched.
    #[error(
        "the store {path} is damaged or not an ash store ({reason}); it was left untouched — move it aside to start fresh, or restore a backup"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the check found.
        reason: String,
    },
    /// A newer ash wrote it.
    #[error(
        "the store {path} has schema version {found}; this ash reads up to {SCHEMA_VERSION}; upgrade ash"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
}

/// A [`Store`] in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    file: Arc<FileIdentity>,
    /// Commits waiting for the connection. Whoever gets the connection next writes all of them
    /// in one transaction (each in its own savepoint), so concurrent runs share one sync.
    pending: Arc<Mutex<Vec<Pending>>>,
}

/// A commit waiting to be written, and where its outcome goes.
struct Pending {
    run_id: String,
    commit: Commit,
    reply: Reply,
}

/// Where a commit's outcome goes.
type Reply = tokio::sync::oneshot::Sender<Result<Vec<Event>, StoreError>>;

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("run_id", &self.run_id).finish_non_exhaustive()
    }
}

/// Writes `group` in one transaction, each commit in its own savepoint: a commit refused by
/// its precondition is rolled back alone. Every caller is answered once the transaction's fate
/// is known — accepted commits and refusals alike — and all of them fail with it if it does
/// not become durable (a refusal may rest on writes that were never kept).
fn write_group(conn: &mut Connection, file: &FileIdentity, group: Vec<Pending>) {
    if let Err(error) = file.verify() {
        return fail_all(group.into_iter().map(|p| p.reply), &error);
    }
    let mut tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => return fail_all(group.into_iter().map(|p| p.reply), &backend(error)),
    };
    let mut group = group.into_iter();
    let mut outcomes = Vec::with_capacity(group.len());
    // Set when SQLite ended the transaction itself (I/O error, full disk): nothing after it
    // may be written, or it would land outside the group, on its own.
    let mut broken = None;
    for Pending { run_id, commit, reply } in group.by_ref() {
        let outcome = write_one(&mut tx, &run_id, commit);
        let ended = outcome.is_err() && tx.is_autocommit();
        outcomes.push((reply, outcome));
        if ended {
            broken = Some(StoreError::Backend(
                "the store ended the transaction after an error (is the disk full?)".to_owned(),
            ));
            break;
        }
    }
    let kept = match broken {
        Some(error) => Err(error),
        None => tx.commit().map_err(backend),
    };
    match kept {
        Ok(()) => {
            for (reply, outcome) in outcomes {
                let _ = reply.send(outcome);
            }
        }
        Err(error) => fail_all(
            outcomes.into_iter().map(|(reply, _)| reply).chain(group.map(|p| p.reply)),
            &error,
        ),
    }
}

/// Answers every one of `replies` with `error`.
fn fail_all(replies: impl IntoIterator<Item = Reply>, error: &StoreError) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}

/// One commit of a group, in a savepoint released only when all of it was written.
fn write_one(
    tx: &mut Transaction<'_>,
    run_id: &str,
    commit: Commit,
) -> Result<Vec<Event>, StoreError> {
    // Dropped without `commit`, the savepoint rolls back what it wrote.
    let savepoint = tx.savepoint().map_err(backend)?;
    let record =
        load_run(&savepoint, run_id)?.ok_or_else(|| StoreError::NotFound(run_id.to_owned()))?;
    check_expect(&record, &commit.expect)?;
    let events = apply(&savepoint, &record, commit)?;
    savepoint.commit().map_err(backend)?;
    Ok(events)
}

/// The store's file as opened, to notice it being removed or replaced underneath.
#[derive(Debug)]
struct FileIdentity {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Whether the write-ahead log existed once opened (then it must go on existing).
    wal: bool,
    /// Set once the file was found gone; every call fails from then on.
    lost: std::sync::OnceLock<String>,
}

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            wal: Self::wal_path(path).exists(),
            lost: std::sync::OnceLock::new(),
        })
    }

    fn wal_path(path: &Path) -> PathBuf {
        PathBuf::from(format!("{}-wal", path.display()))
    }

    /// `Err(Lost)` when the file (or its write-ahead log) is no longer the one ash opened.
    fn verify(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt as _;
        if let Some(reason) = self.lost.get() {
            return Err(StoreError::Lost(reason.clone()));
        }
        let problem = match std::fs::metadata(&self.path) {
            Err(_) => Some(format!("{} was removed", self.path.display())),
            Ok(m) if (m.dev(), m.ino()) != (self.dev, self.ino) => {
                Some(format!("{} was replaced by another file", self.path.display()))
            }
            Ok(_) => {
                let wal = Self::wal_path(&self.path);
                (self.wal && !wal.exists())
                    .then(|| format!("its write-ahead log {} was removed", wal.display()))
            }
        };
        match problem {
            None => Ok(()),
            Some(reason) => {
                tracing::error!(store = %self.path.display(), %reason, "the store is gone; refusing to write");
                let reason = self.lost.get_or_init(|| reason).clone();
                Err(StoreError::Lost(reason))
            }
        }
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, checks its integrity and schema, and
    /// leaves a damaged file untouched.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, OpenError> {
        let sqlite = |e: rusqlite::Error| classify(path, &e, None);
        let corrupt_or = |e: rusqlite::Error| classify(path, &e, Some(()));
        let corrupt = |reason: String| OpenError::Corrupt { path: path.to_owned(), reason };
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| OpenError::Sqlite { path: path.to_owned(), reason: e.to_string() })?;
        }
        let conn = Connection::open(path).map_err(sqlite)?;
        // Read-only checks first: a file that is not a database must not be written to.
        let check: String =
            conn.query_row("PRAGMA quick_check", [], |row| row.get(0)).map_err(corrupt_or)?;
        if check != "ok" {
            return Err(corrupt(check));
        }
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |row| {
                row.get(0)
            })
            .map_err(corrupt_or)?;
        let found = schema_version(&conn).map_err(corrupt_or)?;
        if found == 0 && tables > 0 {
            return Err(corrupt("it holds tables but no ash schema".to_owned()));
        }
        if found > SCHEMA_VERSION {
            return Err(OpenError::TooNew { path: path.to_owned(), found });
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
        migrate(&conn).map_err(sqlite)?;
        let file = FileIdentity::of(path)
            .map_err(|e| OpenError::Sqlite { path: path.to_owned(), reason: e.to_string() })?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), file: Arc::new(file), pending: Arc::default() })
    }

    /// The schema version of the file at `path` (0: none yet), read without changing it.
    pub fn version_of(path: &Path) -> Result<i64, OpenError> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| classify(path, &e, Some(())))?;
        schema_version(&conn).map_err(|e| classify(path, &e, Some(())))
    }

    /// Runs `f` with the connection on the blocking pool.
    fn with<T, F>(&self, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let file = Arc::clone(&self.file);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                file.verify()?;
                f(&mut conn)
            })
            .await
            .map_err(backend)?
        })
    }
}

/// The version recorded in `ash_meta` (0: no schema yet).
fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    let has_meta: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'ash_meta'",
        [],
        |row| row.get(0),
    )?;
    if !has_meta {
        return Ok(0);
    }
    let version: Option<String> = conn
        .query_row("SELECT value FROM ash_meta WHERE key = 'schema_version'", [], |r| r.get(0))
        .optional()?;
    Ok(version.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0))
}

/// Applies the migrations the file has not had, each in its own transaction with the version
/// it reaches.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let current = schema_version(conn)?;
    for migration in crate::migrations::pending(crate::migrations::SQLITE, current) {
        // Taken for writing first, then read again: another process opening the same file
        // may have applied it meanwhile.
        let tx = Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        if schema_version(&tx)? >= migration.version {
            continue;
        }
        tx.execute_batch(migration.sql)?;
        tx.execute(
            "INSERT INTO ash_meta (key, value) VALUES ('schema_version', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![migration.version.to_string()],
        )?;
        tx.commit()?;
        tracing::info!(version = migration.version, name = migration.name, "store migrated");
    }
    Ok(())
}

/// A value SQLite holds that no ash wrote.
fn bad_value(column: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, what.into())
}

/// Sorts an error at open time: damage (only when `damage_possible` and SQLite says so),
/// a file that cannot be written (full disk, read-only, permissions), or anything else.
fn classify(path: &Path, e: &rusqlite::Error, damage_possible: Option<()>) -> OpenError {
    use rusqlite::ErrorCode as C;
    let reason = e.to_string();
    let path = path.to_owned();
    match e.sqlite_error_code() {
        Some(C::DatabaseCorrupt | C::NotADatabase) if damage_possible.is_some() => {
            OpenError::Corrupt { path, reason }
        }
        Some(
            C::ReadOnly
            | C::CannotOpen
            | C::DiskFull
            | C::SystemIoFailure
            | C::PermissionDenied
            | C::DatabaseBusy
            | C::DatabaseLocked,
        ) => OpenError::Unwritable { path, reason },
        _ => OpenError::Sqlite { path, reason },
    }
}

/// Maps SQLite errors, naming damaged values as corruption.
fn sql(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, what) => {
            StoreError::Corrupt(what.to_string())
        }
        other => backend(other),
    }
}

fn read_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let mode: String = row.get(2)?;
    let status: String = row.get(3)?;
    let owner: Option<String> = row.get(13)?;
    let expires: Option<i64> = row.get(14)?;
    let epoch: i64 = row.get(16)?;
    Ok(RunRecord {
        run_id: row.get(0)?,
        continuation_token: row.get(1)?,
        mode: mode_from(&mode).map_err(|e| bad_value(2, e))?,
        status: status_from(&status).map_err(|e| bad_value(3, e))?,
        turns: u32::try_from(row.get::<_, i64>(4)?).unwrap_or(u32::MAX),
        event_count: u64_of(row.get(5)?),
        journal_count: u64_of(row.get(6)?),
        usage: Usage {
            input_tokens: u64_of(row.get(7)?),
            output_tokens: u64_of(row.get(8)?),
            cache_read_tokens: u64_of(row.get(9)?),
            cache_write_tokens: u64_of(row.get(10)?),
        },
        created_at_ms: row.get(11)?,
        updated_at_ms: row.get(12)?,
        lease: owner.zip(expires).map(|(owner, expires_at_ms)| Lease {
            owner,
            epoch: u64_of(epoch),
            expires_at_ms,
        }),
        cancel_requested: row.get::<_, i64>(15)? != 0,
    })
}

fn load_run(tx: &Connection, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
    tx.query_row(
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"),
        params![run_id],
        read_run,
    )
    .optional()
    .map_err(sql)
}

/// Applies `commit` to `record` inside `tx` and returns the stamped events.
fn apply(tx: &Connection, record: &RunRecord, commit: Commit) -> Result<Vec<Event>, StoreError> {
    let now = now_ms();
    let (status, cancel) = next_flags(record.status, record.cancel_requested, &commit);
    let events = stamp_events(commit.events, record.event_count, now);
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO events (run_id, idx, event, format) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(backend)?;
        for event in &events {
            let text = serde_json::to_string(event).map_err(backend)?;
            insert
                .execute(params![record.run_id, i64_of(event.meta.index), text, PAYLOAD_FORMAT])
                .map_err(backend)?;
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO journal (run_id, seq, record, format) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(backend)?;
        for (record_json, seq) in commit.records.iter().zip(record.journal_count..) {
            let text = serde_json::to_string(record_json).map_err(backend)?;
            insert
                .execute(params![record.run_id, i64_of(seq), text, PAYLOAD_FORMAT])
                .map_err(backend)?;
        }
    }
    let usage = add_usage(record.usage, commit.usage);
    let (owner, expires) = if commit.release_lease {
        (None, None)
    } else {
        record
            .lease
            .as_ref()
            .map_or((None, None), |l| (Some(l.owner.clone()), Some(l.expires_at_ms)))
    };
    tx.execute(
        "UPDATE runs SET status = ?2, turns = ?3, event_count = ?4, journal_count = ?5, \
         input_tokens = ?6, output_tokens = ?7, cache_read_tokens = ?8, cache_write_tokens = ?9, \
         updated_at = ?10, lease_owner = ?11, lease_expires = ?12, cancel_requested = ?13 \
         WHERE run_id = ?1",
        params![
            record.run_id,
            status.as_str(),
            record.turns.saturating_add(commit.turns),
            i64_of(record.event_count + events.len() as u64),
            i64_of(record.journal_count + commit.records.len() as u64),
            i64_of(usage.input_tokens),
            i64_of(usage.output_tokens),
            i64_of(usage.cache_read_tokens),
            i64_of(usage.cache_write_tokens),
            now,
            owner,
            expires,
            i64::from(cancel),
        ],
    )
    .map_err(backend)?;
    Ok(events)
}

impl Store for SqliteStore {
    fn create_run(&self, run: NewRun, first: Commit) -> StoreFuture<'_, Vec<Event>> {
        self.with(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let now = now_ms();
            let inserted = tx
                .execute(
                    &format!(
                        "INSERT OR IGNORE INTO runs ({RUN_COLUMNS}) VALUES \
                         (?1, ?2, ?3, 'queued', 0, 0, 0, 0, 0, 0, 0, ?4, ?4, NULL, NULL, 0, 0)"
                    ),
                    params![run.run_id, run.continuation_token, run.mode.as_str(), now],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::Conflict {
                    run_id: run.run_id,
                    reason: "a run with this id or token exists".to_owned(),
                });
            }
            let record = load_run(&tx, &run.run_id)?
                .ok_or_else(|| StoreError::NotFound(run.run_id.clone()))?;
            let events = apply(&tx, &record, first)?;
            tx.commit().map_err(backend)?;
            Ok(events)
        })
    }

    fn commit<'a>(&'a self, run_id: &'a str, commit: Commit) -> StoreFuture<'a, Vec<Event>> {
        let (conn, file, pending) =
            (Arc::clone(&self.conn), Arc::clone(&self.file), Arc::clone(&self.pending));
        let run_id = run_id.to_owned();
        Box::pin(async move {
            // Queued when first polled: a future dropped unpolled writes nothing.
            let (reply, outcome) = tokio::sync::oneshot::channel();
            pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Pending {
                run_id,
                commit,
                reply,
            });
            // A writer for this commit, unless the writer before takes it along; either way
            // the answer comes on `outcome` (a writer that panics drops it: an error).
            drop(tokio::task::spawn_blocking(move || {
                let mut conn = conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let group = std::mem::take(
                    &mut *pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
                );
                if !group.is_empty() {
                    write_group(&mut conn, &file, group);
                }
            }));
            outcome
                .await
                .map_err(|_| StoreError::Backend("the commit was dropped unanswered".to_owned()))?
        })
    }

    fn run<'a>(&'a self, run_id: &'a str) -> StoreFuture<'a, Option<RunRecord>> {
        let run_id = run_id.to_owned();
        self.with(move |conn| load_run(conn, &run_id))
    }

    fn run_by_token<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<RunRecord>> {
        let token = token.to_owned();
        self.with(move |conn| {
            conn.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE token = ?1"),
                params![token],
                read_run,
            )
            .optional()
            .map_err(sql)
        })
    }

    fn events<'a>(
        &'a self,
        run_id: &'a str,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'a, Vec<Event>> {
        let run_id = run_id.to_owned();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT idx, event, format FROM events WHERE run_id = ?1 AND idx >= ?2 ORDER BY idx LIMIT ?3")
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![run_id, i64_of(from), i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for row in rows {
                let (idx, text, format) = row.map_err(backend)?;
                check_payload_format(format, &format_args!("event {idx} of run `{run_id}`"))?;
                bytes = bytes.saturating_add(text.len());
                let event: Event = serde_json::from_str(&text).map_err(|e| {
                    StoreError::Corrupt(format!("event {idx} of run `{run_id}` cannot be read: {e}"))
                })?;
                out.push(event);
                if bytes >= max_bytes {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn journal<'a>(&'a self, run_id: &'a str, from: u64) -> StoreFuture<'a, Vec<JournalRecord>> {
        let run_id = run_id.to_owned();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, record, format FROM journal WHERE run_id = ?1 AND seq >= ?2 ORDER BY seq",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![run_id, i64_of(from)], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, text, format) = row.map_err(backend)?;
                check_payload_format(format, &format_args!("journal record {seq} of run `{run_id}`"))?;
                out.push(serde_json::from_str(&text).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "journal record {seq} of run `{run_id}` cannot be read: {e}"
                    ))
                })?);
            }
            Ok(out)
        })
    }

    fn acquire_lease<'a>(
        &'a self,
        run_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<Fence>> {
        let (run_id, owner) = (run_id.to_owned(), owner.to_owned());
        self.with(move |conn| {
            let now = now_ms();
            let epoch: Option<i64> = conn
                .query_row(
                    "UPDATE runs SET lease_owner = ?2, lease_expires = ?3, lease_epoch = lease_epoch + 1 \
                     WHERE run_id = ?1 AND status IN ('queued', 'running') \
                     AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_expires <= ?4) \
                     RETURNING lease_epoch",
                    params![run_id, owner, lease_expiry(now, ttl), now],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            Ok(epoch.map(|epoch| Fence { owner, epoch: u64_of(epoch) }))
        })
    }

    fn check(&self) -> StoreFuture<'_, ()> {
        self.with(|_| Ok(()))
    }

    fn renew_lease<'a>(
        &'a self,
        run_id: &'a str,
        fence: &'a Fence,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<LeaseState>> {
        let (run_id, fence) = (run_id.to_owned(), fence.clone());
        self.with(move |conn| {
            conn.query_row(
                "UPDATE runs SET lease_expires = ?4 WHERE run_id = ?1 AND lease_owner = ?2 \
                 AND lease_epoch = ?3 RETURNING cancel_requested",
                params![run_id, fence.owner, i64_of(fence.epoch), lease_expiry(now_ms(), ttl)],
                |row| Ok(LeaseState { cancel_requested: row.get::<_, i64>(0)? != 0 }),
            )
            .optional()
            .map_err(backend)
        })
    }

    fn release_lease<'a>(&'a self, run_id: &'a str, fence: &'a Fence) -> StoreFuture<'a, ()> {
        let (run_id, fence) = (run_id.to_owned(), fence.clone());
        self.with(move |conn| {
            conn.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires = NULL WHERE run_id = ?1 \
                 AND lease_owner = ?2 AND lease_epoch = ?3",
                params![run_id, fence.owner, i64_of(fence.epoch)],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn claim_runs<'a>(
        &'a self,
        owner: &'a str,
        ttl: Duration,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(String, Fence)>> {
        let owner = owner.to_owned();
        self.with(move |conn| {
            let now = now_ms();
            // One statement: SQLite has one writer, so nobody claims between the choice and
            // the update.
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE runs SET lease_owner = ?1, lease_expires = ?2, lease_epoch = lease_epoch + 1 \
                     WHERE run_id IN (SELECT run_id FROM runs WHERE status IN ('queued', 'running') \
                     AND (lease_owner IS NULL OR lease_expires <= ?3) ORDER BY updated_at, run_id LIMIT ?4) \
                     RETURNING run_id, lease_epoch",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(
                    params![owner, lease_expiry(now, ttl), now, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
                )
                .map_err(backend)?;
            rows.map(|row| {
                let (run_id, epoch) = row.map_err(backend)?;
                Ok((run_id, Fence { owner: owner.clone(), epoch: u64_of(epoch) }))
            })
            .collect()
        })
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        self.with(|conn| {
            let mut health = StoreHealth { backend: "sqlite".to_owned(), ..StoreHealth::default() };
            let mut stmt = conn
                .prepare_cached("SELECT status, count(*) FROM runs GROUP BY status")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
                .map_err(backend)?;
            for row in rows {
                let (status, count) = row.map_err(backend)?;
                health.runs_by_status.insert(status, u64_of(count));
            }
            let (held, claimable): (i64, i64) = conn
                .query_row(
                    "SELECT count(*) FILTER (WHERE lease_owner IS NOT NULL AND lease_expires > ?1), \
                     count(*) FILTER (WHERE lease_owner IS NULL OR lease_expires <= ?1) \
                     FROM runs WHERE status IN ('queued', 'running')",
                    params![now_ms()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(backend)?;
            health.leases_held = u64_of(held);
            health.leases_claimable = u64_of(claimable);
            Ok(health)
        })
    }

    fn missing_blobs<'a>(&'a self, hashes: &'a [String]) -> StoreFuture<'a, Vec<String>> {
        let hashes = hashes.to_vec();
        self.with(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT 1 FROM blobs WHERE hash = ?1").map_err(backend)?;
            let mut missing = Vec::new();
            for hash in hashes {
                if !stmt.exists(params![hash]).map_err(backend)? {
                    missing.push(hash);
                }
            }
            Ok(missing)
        })
    }

    fn put_blob<'a>(&'a self, hash: &'a str, data: &'a [u8]) -> StoreFuture<'a, ()> {
        let (hash, data) = (hash.to_owned(), data.to_vec());
        self.with(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO blobs (hash, data) VALUES (?1, ?2)",
                params![hash, data],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn blob<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let hash = hash.to_owned();
        self.with(move |conn| {
            conn.query_row("SELECT data FROM blobs WHERE hash = ?1", params![hash], |row| {
                row.get(0)
            })
            .optional()
            .map_err(backend)
        })
    }

    fn put_snapshot<'a>(
        &'a self,
        run_id: &'a str,
        fence: &'a Fence,
        area: &'a str,
        manifest: &'a str,
    ) -> StoreFuture<'a, ()> {
        let (run_id, fence, area, manifest) =
            (run_id.to_owned(), fence.clone(), area.to_owned(), manifest.to_owned());
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let record =
                load_run(&tx, &run_id)?.ok_or_else(|| StoreError::NotFound(run_id.clone()))?;
            check_fence(&record, &fence)?;
            tx.execute(
                "INSERT INTO snapshots (run_id, area, manifest) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (run_id, area) DO UPDATE SET manifest = excluded.manifest",
                params![run_id, area, manifest],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
    }

    fn snapshot<'a>(&'a self, run_id: &'a str, area: &'a str) -> StoreFuture<'a, Option<String>> {
        let (run_id, area) = (run_id.to_owned(), area.to_owned());
        self.with(move |conn| {
            conn.query_row(
                "SELECT manifest FROM snapshots WHERE run_id = ?1 AND area = ?2",
                params![run_id, area],
                |row| row.get(0),
            )
            .optional()
            .map_err(backend)
        })
    }

    fn request_cancel<'a>(&'a self, run_id: &'a str) -> StoreFuture<'a, Option<RunStatus>> {
        let run_id = run_id.to_owned();
        self.with(move |conn| {
            conn.execute(
                "UPDATE runs SET cancel_requested = 1 WHERE run_id = ?1 AND status IN ('queued', 'running')",
                params![run_id],
            )
            .map_err(backend)?;
            let status: Option<String> = conn
                .query_row("SELECT status FROM runs WHERE run_id = ?1", params![run_id], |row| row.get(0))
                .optional()
                .map_err(backend)?;
            status.map(|s| status_from(&s).map_err(StoreError::Corrupt)).transpose()
        })
    }
}
