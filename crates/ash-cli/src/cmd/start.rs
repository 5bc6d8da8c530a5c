//! `ash start`: serve an agent over HTTP until Ctrl-C or SIGTERM.

use anyhow::Context as _;
use ash_server::ServerConfig;

use crate::cli::StartArgs;
use crate::cmd::Outcome;
use crate::cmd::harness::{self, StoreChoice};
use crate::{config, output};

pub(crate) fn run(args: &StartArgs) -> anyhow::Result<Outcome> {
    init_logging(tracing::Level::INFO);
    runtime()?.block_on(async {
        let store = args.store.clone().unwrap_or_else(|| harness::default_store(&args.dir));
        let harness =
            harness::start(&args.dir, StoreChoice::Sqlite(store), &args.store_args).await?;
        let server_config = ServerConfig::default();
        harness::check_access(&harness, &server_config)?;
        let listener =
            tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await.with_context(
                || format!("listening on {}:{} (pick another with --port)", args.host, args.port),
            )?;
        let addr = listener.local_addr()?;
        output::note(&format!(
            "ash: serving `{}` on http://{addr} (model {}, store {})",
            harness.engine.spec().name(),
            harness.model,
            harness.store
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
        .try_init();
}
