//! `ash mcp`: the agent served to an MCP client on stdin and stdout, as one tool.
//!
//! stdout carries only the protocol: every note and log line goes to stderr. A call is a
//! durable run like any message; the process stops at the end of stdin or on a signal, after
//! the engine reached a safe point.

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::cli::McpArgs;
use crate::cmd::Outcome;
use crate::cmd::harness::{self, StoreChoice};
use crate::cmd::start::{init_logging, runtime, shutdown_signal};
use crate::output;

pub(crate) fn run(args: &McpArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        init_logging(tracing::Level::WARN);
        let store = StoreChoice::from_arg(args.store.as_deref(), || {
            StoreChoice::Sqlite(harness::default_store(&args.dir))
        })?;
        let harness = harness::start(&args.dir, store, &args.store_args, false).await?;
        let info = ash_server::mcp::agent_info(&harness.engine);
        output::note(&format!(
            "ash mcp: `{}` as the MCP tool `{}` on stdio (model {}, store {})",
            harness.engine.spec().name(),
            info.tool,
            harness.model,
            harness.store
        ));
        if harness.scripted {
            output::note(&harness::scripted_label(&harness.model));
        }
        let stop = CancellationToken::new();
        let agent = ash_server::mcp::engine_agent(harness.engine.clone());
        let serve = ash_mcp::server::serve_stdio(
            info,
            agent,
            tokio::io::stdin(),
            tokio::io::stdout(),
            stop.clone(),
        );
        let served = tokio::select! {
            served = serve => served,
            () = shutdown_signal() => {
                stop.cancel();
                Ok(())
            }
        };
        harness.engine.shutdown().await;
        served.context("serving MCP on stdio")?;
        Ok(Outcome::Success)
    })
}
