//! `PostgresStore`: runs, journals and events in a PostgreSQL database that several ash nodes
//! share. Every commit is one transaction holding the run's row lock; lease times come from
//! the database's clock, so nodes' clocks never decide who holds a run; every commit that
//! stores events or asks a cancel sends a notification the other nodes listen for.

use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use ash_core::{
    Commit, Fence, JournalRecord, Lease, LeaseState, NewRun, PAYLOAD_FORMAT, PoolHealth, RunRecord,
    Store, StoreChange, StoreError, StoreFuture, StoreHealth, add_usage, check_expect, check_fence,
    check_payload_format, next_flags, stamp_events,
};
use ash_protocol::{Event, RunStatus, Usage};
use deadpool_postgres::{Manager, Pool, Runtime};
use tokio::sync::broadcast;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::migrations::{self, POSTGRES};
use crate::row::{RUN_COLUMNS, i64_of, mode_from, status_from, u64_of};

/// Version of the schema this build writes: the last of its migrations
/// (`migrations/postgres/`).
pub const PG_SCHEMA_VERSION: i64 = migrations::latest(POSTGRES);

/// The notification channel of changes.
const CHANNEL: &str = "ash_changes";

/// The database's clock, in milliseconds since the Unix epoch: the one clock every lease
/// decision and every stored time uses.
const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Changes buffered for a slow engine before it is told to re-read everything.
const CHANGES_CAPACITY: usize = 1024;

/// How a [`PostgresStore`] connects.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections the pool opens.
    pub pool_size: usize,
    /// How long opening one connection may take.
    pub connect_timeout: Duration,
    /// How long a call waits for a free connection.
    pub wait_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a PostgreSQL store could not be opened or migrated. No variant carries the password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse.
    #[error("the store URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(String),
    /// TLS cannot be set up: the `sslrootcert` file, or the platform's trust store.
    #[error("cannot set up TLS to PostgreSQL: {0}")]
    Tls(String),
    /// The database already serves another agent.
    #[error(
        "the database at {target} serves the agent `{serves}`, not `{agent}`: give each agent its own database or schema (`?options=-csearch_path%3D<schema>`)"
    )]
    OtherAgent {
        /// Host, port and database.
        target: String,
        /// The agent it serves.
        serves: String,
        /// The agent asked for.
        agent: String,
    },
    /// The server could not be reached or refused the login.
    #[error("cannot reach the PostgreSQL store at {target}: {reason}")]
    Unreachable {
        /// Host, port and database, without credentials.
        target: String,
        /// Why.
        reason: String,
    },
    /// The database holds tables that are not ash's.
    #[error(
        "the database at {target} holds tables but no ash schema (`runs` exists without `ash_meta`); use an empty database, or another schema with `?options=-csearch_path%3D<schema>`"
    )]
    Foreign {
        /// Host, port and database.
        target: String,
    },
    /// The schema is older than this ash: it must be migrated first.
    #[error(
        "the store at {target} has schema version {found}; this ash needs {PG_SCHEMA_VERSION}: stop the older nodes, then run `ash store migrate --store <url>`"
    )]
    NeedsMigration {
        /// Host, port and database.
        target: String,
        /// Its version.
        found: i64,
    },
    /// A newer ash wrote it.
    #[error(
        "the store at {target} has schema version {found}; this ash reads up to {PG_SCHEMA_VERSION}: upgrade ash"
    )]
    TooNew {
        /// Host, port and database.
        target: String,
        /// Its version.
        found: i64,
    },
    /// A statement failed.
    #[error("the PostgreSQL store at {target} failed: {reason}")]
    Backend {
        /// Host, port and database.
        target: String,
        /// Why.
        reason: String,
    },
}

/// What a migration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The version found.
    pub from: i64,
    /// The version reached.
    pub to: i64,
}

/// A [`Store`] in a PostgreSQL database, shared by any number of nodes.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// This store's id in notifications: its own are not passed back to it.
    origin: Arc<str>,
    changes: broadcast::Sender<StoreChange>,
    /// Stops the listener when the last clone is dropped.
    _listener: Arc<ListenerGuard>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// Aborts the listener task on drop.
struct ListenerGuard(tokio::task::AbortHandle);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a URL points, for messages: host, port and database, never credentials.
pub fn describe_url(url: &str) -> String {
    match tokio_postgres::Config::from_str(&split_libpq_tls(url).0) {
        Ok(config) => target_of(&config),
        Err(_) => "<an unparsable URL>".to_owned(),
    }
}

fn target_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// A driver error as text: the server's own message when it sent one.
fn reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

fn backend(e: &tokio_postgres::Error) -> StoreError {
    StoreError::Backend(reason(e))
}

fn pool_error(e: &deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => {
            StoreError::Backend(format!("cannot connect: {}", reason(e)))
        }
        other => StoreError::Backend(format!("no database connection: {other}")),
    }
}

/// Where and how to connect: the driver's settings and the TLS connector (`None`: plain text,
/// for `sslmode=disable` and Unix sockets, where TLS has no host name to verify).
#[derive(Clone)]
struct Target {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

/// A connection's driver task; it ends with `Err` when the connection broke.
type Driver = tokio::task::JoinHandle<Result<(), String>>;

impl Target {
    /// One connection, driven by a task of its own that passes what the server sends unasked
    /// (notifications) to `messages`, when given.
    async fn connect(
        &self,
        messages: Option<tokio::sync::mpsc::Sender<tokio_postgres::AsyncMessage>>,
    ) -> Result<(tokio_postgres::Client, Driver), tokio_postgres::Error> {
        Ok(match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                (client, tokio::spawn(drive_connection(connection, messages)))
            }
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                (client, tokio::spawn(drive_connection(connection, messages)))
            }
        })
    }
}

/// Reads `url`. Beside the driver's own parameters it takes libpq's `sslrootcert=FILE` (a
/// PEM file of certificate authorities trusted besides the system's) and `sslmode=verify-ca`
/// or `verify-full`, which mean what `require` means here: TLS is always verified, against
/// the system's trust store and `sslrootcert`, host name included.
fn parse(url: &str, options: &PgOptions) -> Result<Target, PgError> {
    let (url, rootcert) = split_libpq_tls(url);
    let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| {
        // The driver's message never repeats the URL.
        PgError::BadUrl(e.to_string())
    })?;
    config.connect_timeout(options.connect_timeout);
    // A connection whose peer vanished (a partition, a dead server) is noticed in about half a
    // minute, not after the system's two hours of TCP keepalive.
    config.keepalives_idle(Duration::from_secs(10));
    config.keepalives_interval(Duration::from_secs(5));
    config.keepalives_retries(3);
    config.tcp_user_timeout(Duration::from_secs(30));
    if config.get_application_name().is_none() {
        config.application_name("ash");
    }
    use tokio_postgres::config::{Host, SslMode};
    let mode = config.get_ssl_mode();
    let tcp = config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_)));
    if mode == SslMode::Require && !tcp {
        return Err(PgError::Tls(
            "sslmode=require needs a host name to verify the server's certificate against"
                .to_owned(),
        ));
    }
    let tls = if mode == SslMode::Disable || !tcp {
        None
    } else {
        match tls_connector(rootcert.as_deref()) {
            Ok(tls) => Some(tls),
            // `prefer` takes TLS only where it can: no trust store here, so plain text.
            Err(PgError::Tls(reason)) if mode == SslMode::Prefer && rootcert.is_none() => {
                tracing::warn!(%reason, "no TLS to PostgreSQL (sslmode=prefer): connecting in plain text");
                None
            }
            Err(error) => return Err(error),
        }
    };
    Ok(Target { config, tls })
}

/// `url` without the libpq TLS parameters the driver does not read, and the `sslrootcert`
/// file; `verify-ca`/`verify-full` become `require` (always verified here).
fn split_libpq_tls(url: &str) -> (String, Option<std::path::PathBuf>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), None) };
    let mut rootcert = None;
    let kept: Vec<String> = query
        .split('&')
        .filter_map(|pair| match pair.split_once('=') {
            Some(("sslrootcert", file)) => {
                rootcert = Some(std::path::PathBuf::from(percent_decode(file)));
                None
            }
            Some(("sslmode", "verify-ca" | "verify-full")) => Some("sslmode=require".to_owned()),
            _ => Some(pair.to_owned()),
        })
        .collect();
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (url, rootcert)
}

/// `%XX` escapes decoded (a path in a URL).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// TLS on rustls: the platform's trust store plus the certificate authorities in `rootcert`.
/// Used as the server asks and `sslmode` allows (`prefer` by default: TLS when the server
/// offers it).
fn tls_connector(rootcert: Option<&Path>) -> Result<MakeRustlsConnect, PgError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let extra: Vec<CertificateDer<'static>> = match rootcert {
        None => Vec::new(),
        Some(file) => {
            CertificateDer::pem_file_iter(file).and_then(Iterator::collect).map_err(|e| {
                PgError::Tls(format!("cannot read sslrootcert {}: {e}", file.display()))
            })?
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
        match rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra.clone(),
            Arc::clone(&provider),
        ) {
            Ok(verifier) => Arc::new(verifier),
            // A machine without a system trust store (a slim container): the given roots only.
            Err(_) if !extra.is_empty() => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in extra {
                    roots.add(cert).map_err(|e| PgError::Tls(format!("sslrootcert: {e}")))?;
                }
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| PgError::Tls(e.to_string()))?
            }
            Err(e) => return Err(PgError::Tls(e.to_string())),
        };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn build_pool(target: &Target, options: &PgOptions) -> Result<Pool, PgError> {
    let manager = match &target.tls {
        Some(tls) => Manager::new(target.config.clone(), tls.clone()),
        None => Manager::new(target.config.clone(), tokio_postgres::NoTls),
    };
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.wait_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| PgError::Backend { target: target_of(&target.config), reason: e.to_string() })
}

/// The schema version recorded in the database (0: none), and whether foreign tables are there.
async fn schema_version(
    client: &impl tokio_postgres::GenericClient,
) -> Result<(i64, bool), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT to_regclass('ash_meta') IS NOT NULL, to_regclass('runs') IS NOT NULL",
            &[],
        )
        .await?;
    let (meta, runs): (bool, bool) = (row.get(0), row.get(1));
    if !meta {
        return Ok((0, runs));
    }
    let value: Option<String> = client
        .query_opt("SELECT value FROM ash_meta WHERE key = 'schema_version'", &[])
        .await?
        .map(|row| row.get(0));
    Ok((value.and_then(|v| v.parse().ok()).unwrap_or(0), false))
}

/// Applies the pending migrations in one transaction, under a lock that makes concurrent
/// migrators wait for each other.
async fn migrate_with(
    client: &mut tokio_postgres::Client,
    target: &str,
) -> Result<Migrated, PgError> {
    let fail = |e: tokio_postgres::Error| PgError::Backend {
        target: target.to_owned(),
        reason: reason(&e),
    };
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('ash_store_migrations'))", &[])
        .await
        .map_err(fail)?;
    let (from, foreign) = schema_version(&tx).await.map_err(fail)?;
    if foreign {
        return Err(PgError::Foreign { target: target.to_owned() });
    }
    if from > PG_SCHEMA_VERSION {
        return Err(PgError::TooNew { target: target.to_owned(), found: from });
    }
    for migration in migrations::pending(POSTGRES, from) {
        tx.batch_execute(migration.sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO ash_meta (key, value) VALUES ('schema_version', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&migration.version.to_string()],
        )
        .await
        .map_err(fail)?;
        tracing::info!(version = migration.version, name = migration.name, "store migrated");
    }
    tx.commit().await.map_err(fail)?;
    Ok(Migrated { from, to: PG_SCHEMA_VERSION })
}

impl PostgresStore {
    /// Connects to the database at `url`, creates ash's schema in an empty one, refuses one at
    /// another version, and starts listening for other nodes' changes.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, PgError> {
        let tls = parse(url, &options)?;
        let target = target_of(&tls.config);
        let pool = build_pool(&tls, &options)?;
        let unreachable = |reason: String| PgError::Unreachable {
            target: target.clone(),
            reason: tls_hint(reason),
        };
        {
            let mut client = pool.get().await.map_err(|e| unreachable(pool_reason(&e)))?;
            let fail = |e: tokio_postgres::Error| PgError::Backend {
                target: target.clone(),
                reason: reason(&e),
            };
            let (found, foreign) = schema_version(&**client).await.map_err(fail)?;
            if foreign {
                return Err(PgError::Foreign { target });
            }
            if found == 0 {
                migrate_with(&mut client, &target).await?;
            } else if found < PG_SCHEMA_VERSION {
                return Err(PgError::NeedsMigration { target, found });
            } else if found > PG_SCHEMA_VERSION {
                return Err(PgError::TooNew { target, found });
            }
        }
        let origin: Arc<str> = Arc::from(ash_core_origin());
        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        let task = tokio::spawn(listen(tls, Arc::clone(&origin), changes.clone()));
        Ok(Self { pool, origin, changes, _listener: Arc::new(ListenerGuard(task.abort_handle())) })
    }

    /// Binds the database to `agent`: the first node records it, later ones must serve the same
    /// agent (runs carry no agent of their own, and a node works on any run it can claim).
    pub async fn bind_agent(&self, url: &str, agent: &str) -> Result<(), PgError> {
        let target = describe_url(url);
        let fail = |reason: String| PgError::Backend { target: target.clone(), reason };
        let client = self.pool.get().await.map_err(|e| fail(pool_reason(&e)))?;
        client
            .execute(
                "INSERT INTO ash_meta (key, value) VALUES ('agent', $1) ON CONFLICT (key) DO NOTHING",
                &[&agent],
            )
            .await
            .map_err(|e| fail(reason(&e)))?;
        let row = client
            .query_one("SELECT value FROM ash_meta WHERE key = 'agent'", &[])
            .await
            .map_err(|e| fail(reason(&e)))?;
        let serves: String = row.get(0);
        if serves != agent {
            return Err(PgError::OtherAgent { target, serves, agent: agent.to_owned() });
        }
        Ok(())
    }

    /// Brings the database at `url` to this build's schema version.
    pub async fn migrate(url: &str) -> Result<Migrated, PgError> {
        let options = PgOptions::default();
        let tls = parse(url, &options)?;
        let target = target_of(&tls.config);
        let (mut client, driver) = tls.connect(None).await.map_err(|e| PgError::Unreachable {
            target: target.clone(),
            reason: tls_hint(reason(&e)),
        })?;
        let migrated = migrate_with(&mut client, &target).await;
        drop(client);
        let _ = driver.await;
        migrated
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| pool_error(&e))
    }

    /// Tells the other nodes `run_id` changed, inside the transaction (sent when it commits).
    async fn notify(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        run_id: &str,
    ) -> Result<(), StoreError> {
        let payload = format!("{} {run_id}", self.origin);
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await
            .map_err(|e| backend(&e))?;
        Ok(())
    }
}

/// `reason`, with what to do when the server's certificate was not trusted.
fn tls_hint(reason: String) -> String {
    if reason.to_lowercase().contains("certificate") {
        format!(
            "{reason}; the server's TLS certificate is not trusted here: add `sslrootcert=FILE` (the PEM of its authority) to the URL, or `sslmode=disable` to connect in plain text"
        )
    } else {
        reason
    }
}

fn pool_reason(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => reason(e),
        other => other.to_string(),
    }
}

/// A random id for this store instance.
fn ash_core_origin() -> String {
    let mut bytes = [0u8; 8];
    // Uniqueness only matters among the nodes of one database; the time is a fallback.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = ash_core::now_ms().to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Listens for other nodes' changes until aborted, reconnecting (and reporting that anything
/// may have changed) whenever the connection drops.
async fn listen(target: Target, origin: Arc<str>, changes: broadcast::Sender<StoreChange>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_once(&target, &origin, &changes).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => {
                tracing::warn!(store = %target_of(&target.config), %error, "lost the change feed; reconnecting");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Drives `connection` to its end, passing what the server sends unasked (notifications) to
/// `messages` when given; stops once they are no longer wanted.
async fn drive_connection<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    messages: Option<tokio::sync::mpsc::Sender<tokio_postgres::AsyncMessage>>,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt as _;
    let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = stream.next().await {
        match message {
            Ok(message) => {
                if let Some(sender) = &messages
                    && sender.send(message).await.is_err()
                {
                    return Ok(());
                }
            }
            Err(e) => return Err(reason(&e)),
        }
    }
    Ok(())
}

/// One connection's life of listening.
async fn listen_once(
    target: &Target,
    origin: &str,
    changes: &broadcast::Sender<StoreChange>,
) -> Result<(), String> {
    let (sender, mut messages) = tokio::sync::mpsc::channel(CHANGES_CAPACITY);
    let (client, driver) = target.connect(Some(sender)).await.map_err(|e| reason(&e))?;
    let _driver = ListenerGuard(driver.abort_handle());
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(|e| reason(&e))?;
    // Whatever was sent while nobody listened (before the first connection too) is lost:
    // every reader reads again.
    let _ = changes.send(StoreChange::Any);
    while let Some(message) = messages.recv().await {
        if let tokio_postgres::AsyncMessage::Notification(note) = message {
            let Some((from, run_id)) = note.payload().split_once(' ') else { continue };
            if from != origin {
                let _ = changes.send(StoreChange::Run(run_id.to_owned()));
            }
        }
    }
    drop(client);
    match driver.await {
        Ok(result) => result,
        Err(e) => Err(e.to_string()),
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

fn read_run(row: &tokio_postgres::Row) -> Result<RunRecord, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Corrupt(reason(&e));
    let mode: String = row.try_get(2).map_err(get)?;
    let status: String = row.try_get(3).map_err(get)?;
    let owner: Option<String> = row.try_get(13).map_err(get)?;
    let expires: Option<i64> = row.try_get(14).map_err(get)?;
    let epoch: i64 = row.try_get(16).map_err(get)?;
    let number = |i: usize| row.try_get::<_, i64>(i).map_err(get);
    Ok(RunRecord {
        run_id: row.try_get(0).map_err(get)?,
        continuation_token: row.try_get(1).map_err(get)?,
        mode: mode_from(&mode).map_err(StoreError::Corrupt)?,
        status: status_from(&status).map_err(StoreError::Corrupt)?,
        turns: u32::try_from(number(4)?).unwrap_or(u32::MAX),
        event_count: u64_of(number(5)?),
        journal_count: u64_of(number(6)?),
        usage: Usage {
            input_tokens: u64_of(number(7)?),
            output_tokens: u64_of(number(8)?),
            cache_read_tokens: u64_of(number(9)?),
            cache_write_tokens: u64_of(number(10)?),
        },
        created_at_ms: number(11)?,
        updated_at_ms: number(12)?,
        lease: owner.zip(expires).map(|(owner, expires_at_ms)| Lease {
            owner,
            epoch: u64_of(epoch),
            expires_at_ms,
        }),
        cancel_requested: row.try_get(15).map_err(get)?,
    })
}

/// Locks the run's row for the transaction and reads it with the database's time.
async fn lock_run(
    tx: &deadpool_postgres::Transaction<'_>,
    run_id: &str,
) -> Result<(RunRecord, i64), StoreError> {
    let statement = tx
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS}, {NOW} FROM runs WHERE run_id = $1 FOR UPDATE"
        ))
        .await
        .map_err(|e| backend(&e))?;
    let row = tx
        .query_opt(&statement, &[&run_id])
        .await
        .map_err(|e| backend(&e))?
        .ok_or_else(|| StoreError::NotFound(run_id.to_owned()))?;
    let now: i64 = row.try_get(17).map_err(|e| StoreError::Corrupt(reason(&e)))?;
    Ok((read_run(&row)?, now))
}

/// Applies `commit` to the locked `record` at the database's time `now`, and returns the
/// stamped events. The statements are sent together (pipelined).
async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    record: &RunRecord,
    commit: Commit,
    now: i64,
) -> Result<Vec<Event>, StoreError> {
    let (status, cancel) = next_flags(record.status, record.cancel_requested, &commit);
    let events = stamp_events(commit.events, record.event_count, now);
    let format = i32::try_from(PAYLOAD_FORMAT).unwrap_or(i32::MAX);
    let mut indexes = Vec::with_capacity(events.len());
    let mut texts = Vec::with_capacity(events.len());
    for event in &events {
        indexes.push(i64_of(event.meta.index));
        texts.push(serde_json::to_string(event).map_err(|e| StoreError::Backend(e.to_string()))?);
    }
    let mut seqs = Vec::with_capacity(commit.records.len());
    let mut records = Vec::with_capacity(commit.records.len());
    for (record_json, seq) in commit.records.iter().zip(record.journal_count..) {
        seqs.push(i64_of(seq));
        records.push(
            serde_json::to_string(record_json).map_err(|e| StoreError::Backend(e.to_string()))?,
        );
    }
    let usage = add_usage(record.usage, commit.usage);
    let lease = if commit.release_lease { None } else { record.lease.as_ref() };
    let (owner, expires) = (lease.map(|l| l.owner.clone()), lease.map(|l| l.expires_at_ms));
    let turns = i64::from(record.turns.saturating_add(commit.turns));
    let event_count = i64_of(record.event_count + events.len() as u64);
    let journal_count = i64_of(record.journal_count + commit.records.len() as u64);
    let (input, output, cache_read, cache_write) = (
        i64_of(usage.input_tokens),
        i64_of(usage.output_tokens),
        i64_of(usage.cache_read_tokens),
        i64_of(usage.cache_write_tokens),
    );
    let status = status.as_str();
    let insert_events = async {
        if indexes.is_empty() {
            return Ok(0);
        }
        tx.execute(
            "INSERT INTO events (run_id, idx, event, format) \
             SELECT $1, i, e, $4 FROM UNNEST($2::bigint[], $3::text[]) AS t(i, e)",
            &[&record.run_id, &indexes, &texts, &format],
        )
        .await
    };
    let insert_journal = async {
        if seqs.is_empty() {
            return Ok(0);
        }
        tx.execute(
            "INSERT INTO journal (run_id, seq, record, format) \
             SELECT $1, s, r, $4 FROM UNNEST($2::bigint[], $3::text[]) AS t(s, r)",
            &[&record.run_id, &seqs, &records, &format],
        )
        .await
    };
    let params: [&(dyn ToSql + Sync); 13] = [
        &record.run_id,
        &status,
        &turns,
        &event_count,
        &journal_count,
        &input,
        &output,
        &cache_read,
        &cache_write,
        &now,
        &owner,
        &expires,
        &cancel,
    ];
    let update = tx.execute(
        "UPDATE runs SET status = $2, turns = $3, event_count = $4, journal_count = $5, \
         input_tokens = $6, output_tokens = $7, cache_read_tokens = $8, cache_write_tokens = $9, \
         updated_at = $10, lease_owner = $11, lease_expires = $12, cancel_requested = $13 \
         WHERE run_id = $1",
        &params,
    );
    futures_util::try_join!(insert_events, insert_journal, update).map_err(|e| backend(&e))?;
    Ok(events)
}

impl Store for PostgresStore {
    fn create_run(&self, run: NewRun, first: Commit) -> StoreFuture<'_, Vec<Event>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| backend(&e))?;
            let inserted = tx
                .execute(
                    &format!(
                        "INSERT INTO runs ({RUN_COLUMNS}) VALUES \
                         ($1, $2, $3, 'queued', 0, 0, 0, 0, 0, 0, 0, {NOW}, {NOW}, NULL, NULL, false, 0) \
                         ON CONFLICT DO NOTHING"
                    ),
                    &[&run.run_id, &run.continuation_token, &run.mode.as_str()],
                )
                .await
                .map_err(|e| backend(&e))?;
            if inserted == 0 {
                return Err(StoreError::Conflict {
                    run_id: run.run_id,
                    reason: "a run with this id or token exists".to_owned(),
                });
            }
            let (record, now) = lock_run(&tx, &run.run_id).await?;
            let events = apply(&tx, &record, first, now).await?;
            if !events.is_empty() {
                self.notify(&tx, &run.run_id).await?;
            }
            tx.commit().await.map_err(|e| backend(&e))?;
            Ok(events)
        })
    }

    fn commit<'a>(&'a self, run_id: &'a str, commit: Commit) -> StoreFuture<'a, Vec<Event>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| backend(&e))?;
            let (record, now) = lock_run(&tx, run_id).await?;
            check_expect(&record, &commit.expect)?;
            let events = apply(&tx, &record, commit, now).await?;
            if !events.is_empty() {
                self.notify(&tx, run_id).await?;
            }
            tx.commit().await.map_err(|e| backend(&e))?;
            Ok(events)
        })
    }

    fn run<'a>(&'a self, run_id: &'a str) -> StoreFuture<'a, Option<RunRecord>> {
        Box::pin(async move {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"))
                .await
                .map_err(|e| backend(&e))?;
            let row = client.query_opt(&statement, &[&run_id]).await.map_err(|e| backend(&e))?;
            row.as_ref().map(read_run).transpose()
        })
    }

    fn run_by_token<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<RunRecord>> {
        Box::pin(async move {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE token = $1"))
                .await
                .map_err(|e| backend(&e))?;
            let row = client.query_opt(&statement, &[&token]).await.map_err(|e| backend(&e))?;
            row.as_ref().map(read_run).transpose()
        })
    }

    fn events<'a>(
        &'a self,
        run_id: &'a str,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'a, Vec<Event>> {
        Box::pin(async move {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT idx, event, format FROM events WHERE run_id = $1 AND idx >= $2 \
                     ORDER BY idx LIMIT $3",
                )
                .await
                .map_err(|e| backend(&e))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(&statement, &[&run_id, &i64_of(from), &limit])
                .await
                .map_err(|e| backend(&e))?;
            let mut out = Vec::with_capacity(rows.len());
            let mut bytes = 0usize;
            for row in rows {
                let (idx, text, format): (i64, String, i32) = (row.get(0), row.get(1), row.get(2));
                check_payload_format(
                    format.into(),
                    &format_args!("event {idx} of run `{run_id}`"),
                )?;
                bytes = bytes.saturating_add(text.len());
                out.push(serde_json::from_str(&text).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "event {idx} of run `{run_id}` cannot be read: {e}"
                    ))
                })?);
                if bytes >= max_bytes {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn journal<'a>(&'a self, run_id: &'a str, from: u64) -> StoreFuture<'a, Vec<JournalRecord>> {
        Box::pin(async move {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT seq, record, format FROM journal WHERE run_id = $1 AND seq >= $2 ORDER BY seq",
                )
                .await
                .map_err(|e| backend(&e))?;
            let rows = client
                .query(&statement, &[&run_id, &i64_of(from)])
                .await
                .map_err(|e| backend(&e))?;
            rows.iter()
                .map(|row| {
                    let (seq, text, format): (i64, String, i32) =
                        (row.get(0), row.get(1), row.get(2));
                    check_payload_format(
                        format.into(),
                        &format_args!("journal record {seq} of run `{run_id}`"),
                    )?;
                    serde_json::from_str(&text).map_err(|e| {
                        StoreError::Corrupt(format!(
                            "journal record {seq} of run `{run_id}` cannot be read: {e}"
                        ))
                    })
                })
                .collect()
        })
    }

    fn acquire_lease<'a>(
        &'a self,
        run_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<Fence>> {
        Box::pin(async move {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "UPDATE runs SET lease_owner = $2, lease_expires = {NOW} + $3, lease_epoch = lease_epoch + 1 \
                     WHERE run_id = $1 AND status IN ('queued', 'running') \
                     AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires <= {NOW}) \
                     RETURNING lease_epoch"
                ))
                .await
                .map_err(|e| backend(&e))?;
            let row = client
                .query_opt(&statement, &[&run_id, &owner, &ttl_ms(ttl)])
                .await
                .map_err(|e| backend(&e))?;
            Ok(row.map(|row| Fence { owner: owner.to_owned(), epoch: u64_of(row.get(0)) }))
        })
    }

    fn renew_lease<'a>(
        &'a self,
        run_id: &'a str,
        fence: &'a Fence,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<LeaseState>> {
        Box::pin(async move {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "UPDATE runs SET lease_expires = {NOW} + $4 WHERE run_id = $1 \
                     AND lease_owner = $2 AND lease_epoch = $3 RETURNING cancel_requested"
                ))
                .await
                .map_err(|e| backend(&e))?;
            let row = client
                .query_opt(&statement, &[&run_id, &fence.owner, &i64_of(fence.epoch), &ttl_ms(ttl)])
                .await
                .map_err(|e| backend(&e))?;
            Ok(row.map(|row| LeaseState { cancel_requested: row.get(0) }))
        })
    }

    fn release_lease<'a>(&'a self, run_id: &'a str, fence: &'a Fence) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE runs SET lease_owner = NULL, lease_expires = NULL WHERE run_id = $1 \
                     AND lease_owner = $2 AND lease_epoch = $3",
                    &[&run_id, &fence.owner, &i64_of(fence.epoch)],
                )
                .await
                .map_err(|e| backend(&e))?;
            Ok(())
        })
    }

    fn claim_runs<'a>(
        &'a self,
        owner: &'a str,
        ttl: Duration,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(String, Fence)>> {
        Box::pin(async move {
            let client = self.client().await?;
            // Rows another node is claiming are skipped, not waited for; the update re-checks
            // each locked row, so a run taken meanwhile is not taken twice.
            let statement = client
                .prepare_cached(&format!(
                    "WITH picked AS (SELECT run_id FROM runs WHERE status IN ('queued', 'running') \
                     AND (lease_owner IS NULL OR lease_expires <= {NOW}) \
                     ORDER BY updated_at, run_id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     UPDATE runs SET lease_owner = $1, lease_expires = {NOW} + $2, lease_epoch = runs.lease_epoch + 1 \
                     FROM picked WHERE runs.run_id = picked.run_id RETURNING runs.run_id, runs.lease_epoch"
                ))
                .await
                .map_err(|e| backend(&e))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(&statement, &[&owner, &ttl_ms(ttl), &limit])
                .await
                .map_err(|e| backend(&e))?;
            Ok(rows
                .iter()
                .map(|row| {
                    (row.get(0), Fence { owner: owner.to_owned(), epoch: u64_of(row.get(1)) })
                })
                .collect())
        })
    }

    fn request_cancel<'a>(&'a self, run_id: &'a str) -> StoreFuture<'a, Option<RunStatus>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| backend(&e))?;
            let flagged = tx
                .execute(
                    "UPDATE runs SET cancel_requested = true WHERE run_id = $1 \
                     AND status IN ('queued', 'running')",
                    &[&run_id],
                )
                .await
                .map_err(|e| backend(&e))?;
            if flagged > 0 {
                self.notify(&tx, run_id).await?;
            }
            let status: Option<String> = tx
                .query_opt("SELECT status FROM runs WHERE run_id = $1", &[&run_id])
                .await
                .map_err(|e| backend(&e))?
                .map(|row| row.get(0));
            tx.commit().await.map_err(|e| backend(&e))?;
            status.map(|s| status_from(&s).map_err(StoreError::Corrupt)).transpose()
        })
    }

    fn check(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            client.execute("SELECT 1", &[]).await.map_err(|e| backend(&e))?;
            Ok(())
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn missing_blobs<'a>(&'a self, hashes: &'a [String]) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT h FROM UNNEST($1::text[]) AS t(h) WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE hash = h)",
                    &[&hashes],
                )
                .await
                .map_err(|e| backend(&e))?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    fn put_blob<'a>(&'a self, hash: &'a str, data: &'a [u8]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO blobs (hash, data) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                    &[&hash, &data],
                )
                .await
                .map_err(|e| backend(&e))?;
            Ok(())
        })
    }

    fn blob<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT data FROM blobs WHERE hash = $1", &[&hash])
                .await
                .map_err(|e| backend(&e))?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn put_snapshot<'a>(
        &'a self,
        run_id: &'a str,
        fence: &'a Fence,
        area: &'a str,
        manifest: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| backend(&e))?;
            let (record, _) = lock_run(&tx, run_id).await?;
            check_fence(&record, fence)?;
            tx.execute(
                "INSERT INTO snapshots (run_id, area, manifest) VALUES ($1, $2, $3) \
                 ON CONFLICT (run_id, area) DO UPDATE SET manifest = excluded.manifest",
                &[&run_id, &area, &manifest],
            )
            .await
            .map_err(|e| backend(&e))?;
            tx.commit().await.map_err(|e| backend(&e))
        })
    }

    fn snapshot<'a>(&'a self, run_id: &'a str, area: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT manifest FROM snapshots WHERE run_id = $1 AND area = $2",
                    &[&run_id, &area],
                )
                .await
                .map_err(|e| backend(&e))?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn changes(&self) -> Option<broadcast::Receiver<StoreChange>> {
        Some(self.changes.subscribe())
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        Box::pin(async move {
            let status = self.pool.status();
            let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
            let mut health = StoreHealth {
                backend: "postgres".to_owned(),
                pool: Some(PoolHealth {
                    max_size: count(status.max_size),
                    size: count(status.size),
                    available: count(status.available),
                    waiting: count(status.waiting),
                }),
                ..StoreHealth::default()
            };
            let client = self.client().await?;
            let rows = client
                .query("SELECT status, count(*) FROM runs GROUP BY status", &[])
                .await
                .map_err(|e| backend(&e))?;
            for row in rows {
                health.runs_by_status.insert(row.get(0), u64_of(row.get(1)));
            }
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*) FILTER (WHERE lease_owner IS NOT NULL AND lease_expires > {NOW}), \
                         count(*) FILTER (WHERE lease_owner IS NULL OR lease_expires <= {NOW}) \
                         FROM runs WHERE status IN ('queued', 'running')"
                    ),
                    &[],
                )
                .await
                .map_err(|e| backend(&e))?;
            health.leases_held = u64_of(row.get(0));
            health.leases_claimable = u64_of(row.get(1));
            Ok(health)
        })
    }
}

/// Whether `text` names a PostgreSQL store rather than a file.
pub fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

#[cfg(test)]
mod tests {
    use super::{describe_url, split_libpq_tls};

    #[test]
    fn libpq_tls_parameters_are_read_and_passed_on_as_the_driver_reads_them() {
        let cases = [
            ("postgres://a@h/db", "postgres://a@h/db", None),
            (
                "postgres://a@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20one.pem",
                "postgres://a@h/db?sslmode=require",
                Some("/etc/ca one.pem"),
            ),
            (
                "postgres://a@h/db?application_name=x&sslmode=verify-ca",
                "postgres://a@h/db?application_name=x&sslmode=require",
                None,
            ),
            ("postgres://a@h/db?sslrootcert=ca.pem", "postgres://a@h/db", Some("ca.pem")),
        ];
        for (url, expected, rootcert) in cases {
            let (rest, file) = split_libpq_tls(url);
            assert_eq!(
                (rest.as_str(), file.as_deref().and_then(std::path::Path::to_str)),
                (expected, rootcert),
                "{url}"
            );
        }
        assert_eq!(
            describe_url("postgres://u:secret@db.example:6543/ash?sslrootcert=ca.pem"),
            "db.example:6543/ash"
        );
    }
}
