//! `ash start`: serve an agent over HTTP until Ctrl-C or SIGTERM.

use anyhow::Context as _;
use ash_server::ServerConfig;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::cli::StartArgs;
use crate::cmd::Outcome;
use crate::cmd::harness::{self, StoreChoice};
use crate::{config, output};

pub(crate) fn run(args: &StartArgs) -> anyhow::Result<Outcome> {
    init_logging(tracing::Level::INFO);
    runtime()?.block_on(async {
        let store = args.store.clone().or_else(|| config::var("ASH_STORE").filter(|v| !v.is_empty()));
        let store = StoreChoice::from_arg(store.as_deref(), || {
            StoreChoice::Sqlite(harness::default_store(&args.dir))
        })?;
        let harness = harness::start(&args.dir, store, &args.store_args, true).await?;
        let files = raise_open_files();
        let server_config = server_config(args, files);
        harness::check_access(&harness, &server_config)?;
        let listener =
            tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await.with_context(
                || format!("listening on {}:{} (pick another with --port)", args.host, args.port),
            )?;
        let addr = listener.local_addr()?;
        output::note(&format!(
            "ash: serving `{}` on http://{addr} (model {}, store {}, up to {} connections, {files} open files)",
            harness.engine.spec().name(),
            harness.model,
            harness.store,
            server_config.max_connections,
        ));
        if harness.scripted {
            output::note(&harness::scripted_label(&harness.model));
        }
        ash_server::serve(listener, harness.engine.clone(), server_config, shutdown_signal())
            .await
            .context("serving HTTP")?;
        output::note("ash: stopped; unfinished runs continue at the next start");
        Ok(Outcome::Success)
    })
}

/// Open files kept for the store, tool processes, sockets to the model and logs: connections
/// get the rest.
const RESERVED_FILES: u64 = 256;

/// The server's limits from the flags; connections never exceed what the open-file limit
/// leaves after the reserve, so the cap refuses clients cleanly before descriptors run out.
fn server_config(args: &StartArgs, open_files: u64) -> ServerConfig {
    let by_files =
        usize::try_from(open_files.saturating_sub(RESERVED_FILES).max(16)).unwrap_or(usize::MAX);
    let request = std::time::Duration::from_secs(args.request_timeout.max(1));
    ServerConfig {
        max_connections: args.max_connections.clamp(1, by_files),
        header_timeout: request,
        body_timeout: request,
        write_stall_timeout: std::time::Duration::from_secs(args.stall_timeout.max(1)),
        max_streams: args.max_streams.max(1),
        ..ServerConfig::default()
    }
}

/// Raises the soft limit on open files to the hard one (capped at a million): a server with
/// thousands of clients needs more than the usual 1,024. Returns the limit in force.
pub(crate) fn raise_open_files() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 0 };
    let wanted = hard.min(1 << 20);
    if wanted > soft && setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).is_ok() {
        return wanted;
    }
    soft
}

/// A multi-threaded runtime for the serving commands.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// Logs to `writer` (a file, while a screen owns the terminal) at the level `ASH_LOG` names,
/// else `default`.
pub(crate) fn init_logging_to<W>(default: tracing::Level, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let level =
        config::log_level().and_then(|l| l.parse::<tracing::Level>().ok()).unwrap_or(default);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(false)
        .finish()
        .with(quiet_dependencies(level))
        .try_init();
}

/// What the logs leave out whatever the level: the MCP SDK's own traces, which quote every
/// message (tool results and progress a server sent, secrets an echoing server repeated).
/// Its warnings still show.
fn quiet_dependencies(level: tracing::Level) -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("rmcp", tracing::Level::WARN)
}

/// Logs on stderr at the level `ASH_LOG` names, else `default`.
pub(crate) fn init_logging(default: tracing::Level) {
    let level =
        config::log_level().and_then(|l| l.parse::<tracing::Level>().ok()).unwrap_or(default);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .finish()
        .with(quiet_dependencies(level))
        .try_init();
}
